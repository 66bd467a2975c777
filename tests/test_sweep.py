"""Bounded Optuna sweeps of a ranker's ``search_space`` (``models.sweep``) on toy data."""

import datetime as dt

import pytest
import toy_examples

from models.inputs.features import FittedFeatures
from models.inputs.splits import split_training_window
from models.sweep import apply_params, parse_search_space, sweep
from models.training.config import RANKER, bundled_configs, load_spec
from models.training.registry import build_model

DAYS = ("2024-01-01", "2024-01-02", "2024-01-03")
SPEC = toy_examples.SPEC
SWEPT_FM = {
    "type": "fm",
    "model": {"embedding_dim": 4},
    "training": {"batch_size": 256, "epochs": 2, "early_stopping_patience": 1},
    "search_space": {
        "model.embedding_dim": {"type": "int", "low": 2, "high": 8, "step": 2},
        "training.learning_rate": {"type": "float", "low": 0.001, "high": 0.03, "log": True},
    },
}


@pytest.fixture(scope="module")
def split():
    examples = toy_examples.make_training_examples(n_users=60, n_items=40, n_rows=6000, days=DAYS)
    return split_training_window(examples, [dt.date.fromisoformat(day) for day in DAYS])


class TestSearchSpace:
    def test_a_config_carries_its_search_space(self):
        spec = load_spec(SWEPT_FM)
        assert spec.search_space == SWEPT_FM["search_space"]
        assert load_spec(spec.to_dict()) == spec

    def test_a_retriever_takes_none(self):
        with pytest.raises(ValueError, match="applies to rankers only"):
            load_spec(
                {"type": "two_tower", "search_space": {"model.embedding_dim": {"type": "int", "low": 1, "high": 2}}}
            )

    @pytest.mark.parametrize(
        ("space", "message"),
        [
            ({"embedding_dim": {"type": "int", "low": 2, "high": 8}}, "must start with one of"),
            ({"model.embedding_dim": {"type": "int", "low": 8, "high": 2}}, "low < high"),
            ({"model.embedding_dim": {"type": "normal"}}, "'type' one of"),
            ({"model.dropout": {"type": "float", "low": 0.0, "high": 0.5, "log": True}}, "needs low > 0"),
            ({"model.deep_units": {"type": "categorical", "choices": []}}, "non-empty list"),
            ({"model.embedding_dim": {"type": "int", "low": 2, "high": 8, "choices": [1]}}, "unknown key"),
        ],
    )
    def test_bad_dimensions_are_named(self, space, message):
        with pytest.raises(ValueError, match=message):
            parse_search_space(space)

    def test_params_go_to_their_dotted_paths(self):
        document = {"type": "hashed_lr", "model": {"num_bins": 16}, "training": {"optimizer_options": {"l1": 1}},
                    "search_space": {"model.num_bins": {}}}  # fmt: skip
        updated = apply_params(document, {"model.num_bins": 32, "training.optimizer_options.l2": 0.5})
        assert updated == {"type": "hashed_lr", "model": {"num_bins": 32},
                           "training": {"optimizer_options": {"l1": 1, "l2": 0.5}}}  # fmt: skip
        assert document["model"]["num_bins"] == 16

    def test_every_bundled_search_space_builds_its_model(self, split):
        """Each dimension's bounds and choices name real settings of the model."""
        fitted = FittedFeatures.fit(SPEC, split[0])
        swept = [name for name in bundled_configs(RANKER) if load_spec(name).search_space]
        assert {"hashed_lr", "fm", "deepfm", "dcn_v2_stacked"} <= set(swept)
        for name in swept:
            spec = load_spec(name)
            for pick in (0, -1):
                params = {d.path: d.choices[pick] if d.choices else (d.low, d.high)[pick]
                          for d in parse_search_space(spec.search_space)}  # fmt: skip
                build_model(apply_params(spec.to_dict(), params), fitted)

    def test_a_config_without_a_search_space_is_an_error(self, split):
        train, validation, _ = split
        with pytest.raises(ValueError, match="no search_space"):
            sweep({"type": "fm"}, train, validation, feature_spec=SPEC, trials=1)


class TestSweep:
    def test_three_trials_are_reproducible_with_a_seed(self, split):
        train, validation, _ = split
        first = sweep(SWEPT_FM, train, validation, feature_spec=SPEC, trials=3, seconds=300, seed=7)
        second = sweep(SWEPT_FM, train, validation, feature_spec=SPEC, trials=3, seconds=300, seed=7)
        assert len(first.trials) == 3
        assert [t["params"] for t in first.trials] == [t["params"] for t in second.trials]
        assert first.best_params == second.best_params
        assert first.best_value == pytest.approx(second.best_value, abs=1e-3)
        assert set(first.best_params) == {"model.embedding_dim", "training.learning_rate"}
        assert first.best_params["model.embedding_dim"] in (2, 4, 6, 8)
        complete = [t["value"] for t in first.trials if t["state"] == "COMPLETE"]
        assert first.best_value == max(complete) and 0.5 < first.best_value <= 1.0
        # The winner's model is kept, and its config is a plain, trainable config.
        assert first.best_result.spec.model["embedding_dim"] == first.best_params["model.embedding_dim"]
        assert "search_space" not in first.best_config
        assert load_spec(first.best_config).training.learning_rate == first.best_params["training.learning_rate"]

    def test_seconds_bound_the_sweep(self, split):
        train, validation, _ = split
        result = sweep(SWEPT_FM, train, validation, feature_spec=SPEC, trials=50, seconds=1, seed=7)
        assert 1 <= len(result.trials) < 50
