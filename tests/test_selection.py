"""The automatic ranker choice (``models.selection``) on toy data: real training, small configs."""

import datetime as dt

import pytest
import toy_examples
import yaml

from models.recommender import train_recommender
from models.selection import (
    FAILED,
    NOT_APPLICABLE,
    SKIPPED,
    TRAINED,
    Candidate,
    Selection,
    not_applicable,
    select_ranker,
    selection_frames,
)
from reclake.feature_spec import load_feature_spec

DAYS = ("2024-01-01", "2024-01-02", "2024-01-03")
WINDOW = [dt.date.fromisoformat(day) for day in DAYS]
SPEC = toy_examples.SPEC
SMALL = {"batch_size": 256, "epochs": 2, "early_stopping_patience": 1}
CONFIGS = {
    "small_lr": {"type": "hashed_lr", "model": {"num_bins": 4096}, "training": {**SMALL, "optimizer": "ftrl", "learning_rate": 0.05}},
    "small_fm": {"type": "fm", "model": {"embedding_dim": 4}, "training": SMALL},
    "small_esmm": {"type": "esmm", "model": {"embedding_dim": 4, "ctr_units": [16], "cvr_units": [16]}, "training": SMALL},
}  # fmt: skip


@pytest.fixture(scope="module")
def examples():
    return toy_examples.make_training_examples(n_users=60, n_items=40, n_rows=6000, days=DAYS)


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    """Small candidate configs as YAML files (candidates are names or paths)."""
    folder = tmp_path_factory.mktemp("configs")
    paths = {}
    for name, document in CONFIGS.items():
        paths[name] = str(folder / f"{name}.yaml")
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(document))
    return paths


@pytest.fixture(scope="module")
def selection(examples, configs):
    lines = []
    chosen = select_ranker(
        examples, SPEC, WINDOW, [configs["small_lr"], configs["small_fm"], configs["small_esmm"], "two_tower"],
        budget_s=600, log=lines.append,
    )  # fmt: skip
    chosen.log_lines = lines
    return chosen


class TestApplicability:
    def test_multitask_needs_two_labels(self):
        criteo = load_feature_spec("criteo")
        assert "click and conversion" in not_applicable("esmm", criteo)
        assert not_applicable("esmm", SPEC) is None

    def test_id_models_need_ids(self):
        assert "user and item ids" in not_applicable("biased_mf", load_feature_spec("criteo"))

    def test_a_retriever_is_no_ranker(self):
        assert "retriever" in not_applicable("two_tower", SPEC)

    def test_a_typo_fails_fast(self, examples):
        with pytest.raises(FileNotFoundError, match="no model config named 'fmm'"):
            select_ranker(examples, SPEC, WINDOW, ["fmm"])


class TestSelectRanker:
    def test_every_candidate_is_reported(self, selection, configs):
        statuses = {c.config: c.status for c in selection.candidates}
        assert statuses == {configs["small_lr"]: TRAINED, configs["small_fm"]: TRAINED,
                            configs["small_esmm"]: TRAINED, "two_tower": NOT_APPLICABLE}  # fmt: skip
        for candidate in selection.candidates[:3]:
            assert 0.5 < candidate.validation["auc"] <= 1.0
            assert {"auc", "logloss"} <= set(candidate.test)
            assert candidate.seconds > 0
        assert len(selection.log_lines) == 3

    def test_the_best_on_the_validation_day_is_chosen(self, selection):
        trained = [c for c in selection.candidates if c.status == TRAINED]
        best = max(trained, key=lambda c: c.validation["auc"])
        assert selection.chosen_config == best.config
        assert selection.metric == "auc" and selection.higher_is_better
        assert selection.selected_on == "the validation day (2024-01-02)"
        second = sorted(c.validation["auc"] for c in trained)[-2]
        assert selection.margin == pytest.approx(best.validation["auc"] - second)

    def test_the_chosen_ranker_is_scored_on_the_held_out_day(self, selection):
        chosen = selection.chosen
        best = next(c for c in selection.candidates if c.config == selection.chosen_config)
        assert chosen.metrics == best.test
        assert chosen.evaluated_on == WINDOW[-1] and chosen.trained_on == (WINDOW[0], WINDOW[1])
        assert set(chosen.test["event_date"].astype(str)) == {DAYS[-1]}
        assert set(chosen.validation["event_date"].astype(str)) == {DAYS[-2]}

    def test_the_report_names_every_candidate_and_the_margin(self, selection, configs):
        table = selection.markdown()
        assert table.splitlines()[0].startswith("| candidate | status | validation auc | test auc | test logloss")
        assert f"**{selection.chosen_config}** (chosen)" in table
        assert "two_tower | not applicable" in table
        assert f"above {selection.runner_up.config}." in table
        assert selection.selecting_rows == len(selection.chosen.validation)
        assert selection.selecting_positives == int(selection.chosen.validation["clicked"].sum())
        assert ("Caution: only" in table) == (selection.selecting_positives < 100)
        summary = selection.summary()
        assert summary["chosen"] == selection.chosen_config
        assert summary["margin"] == round(selection.margin, 5)
        assert summary["candidates"]["two_tower"]["status"] == NOT_APPLICABLE
        assert set(summary["candidates"][configs["small_fm"]]) >= {"validation_auc", "test_auc", "test_logloss"}

    def test_every_candidate_is_a_tracked_child_run(self, selection, configs):
        children = {child.name: child for child in selection.tracked_children()}
        assert set(children) == {f"ranker:{c.config}" for c in selection.candidates}
        chosen = children[f"ranker:{selection.chosen_config}"]
        assert chosen.status == "FINISHED" and chosen.tags["reclake.chosen"] == "true"
        fm = next(c for c in selection.candidates if c.config == configs["small_fm"])
        assert children[f"ranker:{fm.config}"].metrics == {
            "validation_auc": fm.validation["auc"], **{f"test_{k}": v for k, v in fm.test.items()},
            "seconds": fm.seconds,
        }  # fmt: skip
        skipped = children["ranker:two_tower"]
        assert skipped.status == "KILLED" and skipped.tags["reclake.status"] == NOT_APPLICABLE
        assert all(not child.children for child in children.values())  # nothing was swept

    def test_the_choice_feeds_the_recommender(self, examples, selection):
        _, items = toy_examples.feature_tables(examples)
        trained = train_recommender(examples, SPEC, WINDOW, items, ranker_run=selection.chosen)
        assert trained.ranking is selection.chosen.result
        assert trained.metrics["ranking_auc"] == selection.chosen.metrics["auc"]


class TestMultiTask:
    def test_a_multi_task_candidate_is_chosen_by_its_click_auc(self, examples, configs):
        """The validation day is judged on the served pCTR only: a day without conversions
        (too few for a conversion AUC) still ranks the multi-task candidates."""
        no_conversions = examples.assign(
            converted=examples["converted"].where(examples["event_date"].astype(str) != DAYS[1], 0)
        )
        chosen = select_ranker(no_conversions, SPEC, WINDOW, [configs["small_esmm"]])
        (esmm,) = chosen.candidates
        assert esmm.status == TRAINED and set(esmm.validation) == {"auc"}
        assert {"ctr_auc", "ctcvr_auc", "auc"} <= set(esmm.test) and esmm.test["auc"] == esmm.test["ctr_auc"]


class TestBudget:
    def test_out_of_budget_candidates_are_skipped(self, examples, configs):
        chosen = select_ranker(examples, SPEC, WINDOW, [configs["small_lr"], configs["small_fm"]], budget_s=0)
        assert [c.status for c in chosen.candidates] == [TRAINED, SKIPPED]
        assert "budget" in chosen.candidates[1].reason
        assert chosen.chosen_config == configs["small_lr"] and chosen.margin is None


class TestSweepsInTheChoice:
    def test_a_candidate_with_a_search_space_is_swept_when_asked(self, examples, configs, tmp_path):
        swept = tmp_path / "swept_fm.yaml"
        space = {"model.embedding_dim": {"type": "categorical", "choices": [2, 4]}}
        swept.write_text(yaml.safe_dump({**CONFIGS["small_fm"], "search_space": space}))
        chosen = select_ranker(examples, SPEC, WINDOW, [configs["small_lr"], str(swept)], sweep_trials=2)
        lr, fm = chosen.candidates
        assert lr.sweep is None and fm.sweep is not None and len(fm.sweep.trials) == 2
        assert fm.validation["auc"] == pytest.approx(fm.sweep.best_value)
        assert "swept 2 trials" in chosen.markdown()
        assert chosen.summary()["candidates"][str(swept)]["sweep_params"] == fm.sweep.best_params
        # Each trial is a child run of the swept candidate's run, with its params and seconds.
        tracked = {child.name: child for child in chosen.tracked_children()}[f"ranker:{swept}"]
        assert [t.params["trial"] for t in tracked.children] == [t["number"] for t in fm.sweep.trials]
        for trial, run in zip(fm.sweep.trials, tracked.children, strict=True):
            assert run.params["model.embedding_dim"] == trial["params"]["model.embedding_dim"]
            assert run.metrics == {"validation_auc": trial["value"], "seconds": trial["seconds"]}


class TestWithoutValidationDay:
    def test_the_newest_training_rows_choose_and_the_winner_is_refit(self, examples, configs):
        two_days = examples[examples["event_date"].astype(str) != DAYS[0]]
        window = WINDOW[1:]
        fit, select, test, refit = selection_frames(two_days, window)
        assert refit and len(select) == pytest.approx(0.1 * (len(fit) + len(select)), abs=1)
        assert select["event_ts"].min() >= fit["event_ts"].max()
        chosen = select_ranker(two_days, SPEC, window, [configs["small_lr"], configs["small_fm"]])
        assert chosen.selected_on == "the newest training rows"
        # Refit as train_ranker does today: every training row, no validation day.
        assert chosen.chosen.validation is None and len(chosen.chosen.train) == len(fit) + len(select)


class TestOneDay:
    def test_a_single_day_chooses_on_its_validation_slice(self, examples, configs):
        one_day = examples[examples["event_date"].astype(str) == DAYS[0]]
        chosen = select_ranker(one_day, SPEC, WINDOW[:1], [configs["small_lr"]])
        assert chosen.selected_on == f"the validation slice of {DAYS[0]}"
        assert chosen.chosen.validation is not None and chosen.chosen.evaluated_on == WINDOW[0]


class TestFailures:
    def test_no_applicable_candidate_is_an_error(self, examples):
        with pytest.raises(ValueError, match="no candidate ranker trained"):
            select_ranker(examples, SPEC, WINDOW, ["two_tower"])

    def test_a_failed_candidate_is_reported_not_chosen(self, examples, configs, tmp_path):
        broken = tmp_path / "broken.yaml"
        broken.write_text(yaml.safe_dump({"type": "fm", "model": {"embedding_dims": 4}}))
        chosen = select_ranker(examples, SPEC, WINDOW, [str(broken), configs["small_lr"]])
        assert chosen.candidates[0].status == FAILED and "embedding_dims" in chosen.candidates[0].reason
        assert chosen.chosen_config == configs["small_lr"]


class TestRegressionChoice:
    def test_lower_rmse_wins_and_the_margin_is_positive(self):
        candidates = [
            Candidate("a", TRAINED, validation={"rmse": 0.95}, test={"rmse": 0.96, "mae": 0.7}),
            Candidate("b", TRAINED, validation={"rmse": 0.90}, test={"rmse": 0.91, "mae": 0.7}),
            Candidate("c", SKIPPED, "0 s of the 10 s budget left"),
        ]
        selection = Selection(None, "b", "rmse", False, candidates, "the validation day", 10.0, 3.0)
        assert selection.runner_up.config == "a"
        assert selection.margin == pytest.approx(0.05)
        table = selection.markdown()
        assert table.splitlines()[2].startswith("| **b** (chosen) | trained | 0.9000 | 0.9100 | 0.7000")
        assert "0.0500 below a." in table and "Caution" not in table  # no selecting rows recorded
        selection.selecting_rows = 120
        assert "Caution: only 120 rated rows chose" in selection.markdown()

    def test_few_positive_selecting_rows_are_flagged_as_noise(self):
        candidates = [Candidate("a", TRAINED, validation={"auc": 0.7}, test={"auc": 0.6, "logloss": 0.5}),
                      Candidate("b", TRAINED, validation={"auc": 0.6}, test={"auc": 0.7, "logloss": 0.5})]  # fmt: skip
        few = Selection(None, "a", "auc", True, candidates, "the validation day", 10.0, 3.0, 50, 5)
        assert few.markdown().endswith(
            "Caution: only 5 positive(s) among 50 rows chose; AUC differences this small are within noise."
        )
        many = Selection(None, "a", "auc", True, candidates, "the validation day", 10.0, 3.0, 5000, 500)
        assert "Caution" not in many.markdown() and many.summary()["selecting_positives"] == 500
