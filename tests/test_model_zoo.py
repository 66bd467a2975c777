"""The model zoo: every bundled config builds and trains, the layers compute what their
papers say and survive a config round trip, distribution works across two CPU workers."""

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tf_keras as keras
from conftest import free_port

from models.inputs.features import FittedFeatures
from models.ranking.layers import (
    MLP,
    FactorizationMachine,
    HashedFeatureCrosses,
    MixtureOfExperts,
    NumericFieldEmbedding,
)
from models.ranking.multitask import ESMM, MMoE
from models.ranking.rankers import FM, BiasedMF, DCNv2, DeepFM, HashedLogisticRegression
from models.training.config import RANKER, bundled_configs, load_spec
from models.training.distribution import choose_strategy, mixed_precision_policy, parse_tf_config
from models.training.registry import (
    MODEL_CONFIG_FILE,
    MODEL_TYPES,
    build_model,
    evaluate_model,
    load_checkpoint,
    predict_tasks,
    predict_values,
    train_model,
    training_labels,
)
from reclake.feature_spec import load_feature_spec
from reclake.settings import SyntheticSettings
from sources.training_examples import synthetic_training_examples

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_NAMES = ("fm", "deepfm", "dcn_v2_stacked", "dcn_v2_parallel", "hashed_lr", "biased_mf", "esmm", "mmoe")
CONFIG_CLASSES = {
    "fm": FM,
    "deepfm": DeepFM,
    "dcn_v2_stacked": DCNv2,
    "dcn_v2_parallel": DCNv2,
    "hashed_lr": HashedLogisticRegression,
    "biased_mf": BiasedMF,
    "esmm": ESMM,
    "mmoe": MMoE,
}
DAYS = (dt.date(2024, 3, 1), dt.date(2024, 3, 2), dt.date(2024, 3, 3))
SETTINGS = SyntheticSettings(events_per_day=4000, n_users=300, n_items=100, seed=7)
SPEC = load_feature_spec("synthetic")


def feature_arrays(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Model inputs of the synthetic spec."""
    from models.inputs.features import feature_arrays as spec_arrays

    return spec_arrays(frame, SPEC)
# Tiny-data settings on top of the bundled configs. With ~100 steps, FM (whose logit
# starts near 0, far from the ~4% CTR) and the sparse FTRL model need larger steps.
TEST_TRAINING = {"epochs": 3, "batch_size": 256}
TEST_OVERRIDES = {
    "fm": ({}, {"learning_rate": 0.01}),
    "hashed_lr": ({"num_bins": 2**14}, {"learning_rate": 0.3}),
}


def tiny_spec(name: str, **training):
    """The bundled config ``name`` with the tiny-data training settings (and ``training``)."""
    spec = load_spec(name)
    model_overrides, training_overrides = TEST_OVERRIDES.get(name, ({}, {}))
    return dataclasses.replace(
        spec,
        model={**spec.model, **model_overrides},
        training=dataclasses.replace(spec.training, **{**TEST_TRAINING, **training_overrides, **training}),
    )


@pytest.fixture(scope="module")
def examples() -> pd.DataFrame:
    return synthetic_training_examples(SETTINGS, DAYS)


@pytest.fixture(scope="module")
def split(examples):
    is_test = examples["event_date"] == DAYS[-1]
    return examples[~is_test], examples[is_test]


@pytest.fixture(scope="module")
def fitted(split) -> FittedFeatures:
    return FittedFeatures.fit(SPEC, split[0])


@pytest.fixture(scope="module")
def batch(split) -> dict[str, tf.Tensor]:
    return {name: tf.constant(values) for name, values in feature_arrays(split[1].head(16)).items()}


EARLY_STOPPED = "dcn_v2_stacked"
"""Trained with the held-out day as validation frame, early stopping and checkpoints."""
EARLY_STOPPING = {"epochs": 4, "early_stopping_patience": 1}


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("checkpoints")


@pytest.fixture(scope="module")
def trained(split, checkpoint_dir):
    """``trained(name)``: the bundled config trained on the train days (once per module)."""
    train, test = split
    results = {}

    def get(name: str):
        if name not in results:
            if name == EARLY_STOPPED:
                spec = tiny_spec(name, **EARLY_STOPPING)
                results[name] = train_model(spec, train, test, feature_spec=SPEC, checkpoint_dir=checkpoint_dir)
            else:
                results[name] = train_model(tiny_spec(name), train, feature_spec=SPEC)
        return results[name]

    return get


@pytest.mark.parametrize("name", ["deepfm", "hashed_lr", "esmm"])
def test_fit_traces_its_train_step_once(trained, name):
    """Every variable exists before ``fit`` (``build_for_fit``): the layers, the optimizer's
    slots (FTRL's legacy ones too) and ESMM's per-task loss trackers. A variable created
    in the first step would make TensorFlow trace the step a second time."""
    assert trained(name).model.train_function.experimental_get_tracing_count() == 1


WORKER_CODE = textwrap.dedent(
    """
    import datetime as dt, json
    from models.training.registry import train_model
    from models.training.distribution import choose_strategy
    from sources.training_examples import synthetic_training_examples
    from reclake.feature_spec import load_feature_spec
    from reclake.settings import SyntheticSettings
    import tensorflow as tf

    frame = synthetic_training_examples(
        SyntheticSettings(events_per_day=1000, n_users=50, n_items=30), [dt.date(2024, 3, 1)]
    )
    config = {  # the lightest graph: the test is about the distribution, not the model
        "type": "hashed_lr",
        "model": {"num_bins": 4096, "features": ["user_id", "item_id"], "crosses": [["device", "category"]]},
        "training": {"optimizer": "ftrl", "learning_rate": 0.1, "batch_size": 64, "epochs": 2},
    }
    result = train_model(config, frame, feature_spec=load_feature_spec("synthetic"))
    strategy = choose_strategy()
    print(json.dumps({
        "multi_worker": isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy),
        "replicas": strategy.num_replicas_in_sync,
        "loss": result.history["loss"],
        "weight_sums": [float(w.sum()) for w in result.model.get_weights()],
    }))
    """
)


class WorkerCluster:
    """Two CPU worker processes on localhost, each running ``WORKER_CODE`` with a ``TF_CONFIG``."""

    def __init__(self) -> None:
        workers = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
        self.processes = []
        for index in range(2):
            tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
            env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "PYTHONPATH": str(REPO_ROOT)}
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-c", WORKER_CODE],
                    cwd=REPO_ROOT,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )

    def reports(self, timeout: float) -> list[dict]:
        """Wait for both workers; return the JSON each printed last (fails on a non-zero exit)."""
        reports = []
        for process in self.processes:
            stdout, stderr = process.communicate(timeout=timeout)
            assert process.returncode == 0, stderr[-3000:]
            reports.append(json.loads(stdout.strip().splitlines()[-1]))
        return reports

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.communicate()


@pytest.fixture(scope="module", autouse=True)
def worker_cluster(request):
    """Starts the two-worker run at module set-up when its test is selected: the workers
    (mostly importing TensorFlow) then use the second core while this process traces
    the in-process models, instead of adding their time at the end."""
    if not any(item.name == "test_two_cpu_workers_train_one_model_in_sync" for item in request.session.items):
        yield None
        return
    cluster = WorkerCluster()
    yield cluster
    cluster.stop()


class TestSyntheticExamples:
    def test_frame_has_the_spec_columns_and_the_truth(self, examples):
        assert set(SPEC.model_feature_names) | {"clicked", "converted", "label", "is_positive"} <= set(examples.columns)
        assert {"true_pctr", "true_pcvr"} <= set(examples.columns)
        assert examples["event_ts"].is_monotonic_increasing
        assert (examples["converted"] <= examples["clicked"]).all()

    @pytest.mark.parametrize("lookback_days", SPEC.aggregates.windows_days)
    def test_trailing_aggregates_count_earlier_events_in_the_window(self, lookback_days, examples):
        prior, weight = SPEC.aggregates.rate_prior, SPEC.aggregates.rate_prior_weight
        for _, row in examples.sample(25, random_state=0).iterrows():
            for key, prefix in (("user_id", "user"), ("item_id", "item")):
                same_key = examples[examples[key] == row[key]]
                before = same_key[
                    (same_key["event_ts"] < row["event_ts"])
                    & (same_key["event_ts"] >= row["event_ts"] - pd.Timedelta(days=lookback_days))
                ]
                clicks = before["clicked"].sum()
                assert row[f"{prefix}_events_{lookback_days}d"] == len(before)
                assert row[f"{prefix}_positives_{lookback_days}d"] == clicks
                rate = row[f"{prefix}_positive_rate_{lookback_days}d"]
                assert rate == pytest.approx((clicks + prior * weight) / (len(before) + weight))


class TestConfigs:
    def test_one_bundled_config_per_model(self):
        assert bundled_configs(RANKER) == sorted(CONFIG_NAMES)

    @pytest.mark.parametrize("name", CONFIG_NAMES)
    def test_every_config_builds_its_model_and_its_config_round_trips(self, name, fitted, batch):
        model = build_model(name, fitted)
        assert type(model) is CONFIG_CLASSES[name]
        outputs = model(batch)
        probabilities = outputs["pctcvr"] if model.multitask else outputs
        if model.multitask:
            assert sorted(outputs) == ["pctcvr", "pctr", "pcvr"]
        assert probabilities.shape == (16,)
        assert np.all((probabilities.numpy() > 0) & (probabilities.numpy() < 1))

        config = json.loads(json.dumps(model.get_config()))
        restored = type(model).from_config(config)
        assert restored.get_config() == model.get_config()
        restored(batch)
        restored.set_weights(model.get_weights())
        tf.nest.map_structure(
            lambda a, b: np.testing.assert_array_equal(a.numpy(), b.numpy()), restored(batch), outputs
        )

    def test_dcn_v2_structures(self, trained):
        stacked, parallel = trained("dcn_v2_stacked").model, trained("dcn_v2_parallel").model
        # Synthetic spec: 6 embedded columns + 1 cross, x embedding_dim 8; 13 normalized
        # columns (price, 12 aggregates) + 2 cyclical ones as (sin, cos).
        encoded_width = 7 * 8 + 13 + 2 * 2
        # Stacked: the logit reads the MLP's last layer; parallel: cross output ++ MLP output.
        assert stacked.logit.kernel.shape == (32, 1)
        assert parallel.logit.kernel.shape == (encoded_width + 32, 1)
        # Low rank: W = U V with U of shape [d, projection_dim].
        assert parallel.crosses[0]._dense_u.kernel.shape == (encoded_width, 16)
        assert not hasattr(stacked.crosses[0], "_dense_u")

    def test_deepfm_adds_no_embeddings_to_fm(self, trained):
        def embedding_tables(model):
            return sorted(v.name.split("/", 1)[1] for v in model.weights if "embedding" in v.name)

        assert embedding_tables(trained("deepfm").model) == embedding_tables(trained("fm").model)

    @pytest.mark.parametrize(
        ("config", "message"),
        [
            ({"type": "nope"}, r"unknown model type 'nope'; known: \['biased_mf', 'dcn_v2'"),
            ({"type": "fm", "model": {"embeding_dim": 4}}, r"'model' has unknown key\(s\) \['embeding_dim'\]"),
            ({"type": "fm", "training": {"epoch": 4}}, r"'training' has unknown key\(s\) \['epoch'\]"),
            ({"type": "fm", "extra": 1}, r"unknown key\(s\) \['extra'\]"),
            ({"type": "fm", "training": {"optimizer": "lbfgs"}}, r"training.optimizer must be one of"),
            ({"type": "esmm", "training": {"label": "converted"}}, r"label applies to single-task models"),
            ({"type": "fm", "training": {"loss_weights": {"pctr": 1.0}}}, r"loss_weights applies to multi-task"),
            ({"type": "mmoe", "training": {"loss_weights": {"pcvr": 1.0}}}, r"keys \['pcvr'\] are not outputs"),
            ({"type": "dcn_v2", "model": {"structure": "diagonal"}}, r"structure must be one of"),
            ({"type": "fm", "training": {"optimizer_options": {"momentum": 0.9}}}, r"do not fit the adam optimiser"),
        ],
    )
    def test_bad_configs_name_the_problem(self, config, message, fitted):
        with pytest.raises(ValueError, match=message):
            build_model(config, fitted)

    def test_unknown_config_name_lists_the_bundled_ones(self):
        with pytest.raises(FileNotFoundError, match=r"no model config named 'xgboost'.*'deepfm'"):
            load_spec("xgboost")

    def test_spec_round_trips_through_dict(self):
        spec = load_spec("hashed_lr")
        assert load_spec(spec.to_dict()) == dataclasses.replace(spec, source=None)


class TestTraining:
    @pytest.mark.parametrize("name", CONFIG_NAMES)
    def test_training_lowers_the_loss_and_ranks_held_out_rows(self, name, trained, split):
        result = trained(name)
        losses = result.history["loss"]
        assert len(losses) >= 2
        assert losses[-1] < losses[0]
        metrics = evaluate_model(result.model, split[1])
        if result.model.multitask:
            assert metrics["ctr_auc"] > 0.5
            assert metrics["ctcvr_auc"] > 0.5
        else:
            assert metrics["auc"] > 0.5

    def test_early_stopping_restores_the_best_epoch_and_checkpoints_every_epoch(self, trained, split, checkpoint_dir):
        result = trained(EARLY_STOPPED)
        epochs_run = len(result.history["loss"])
        assert result.best_epoch == int(np.argmin(result.history["val_loss"])) + 1
        # Stops `patience` epochs after the best one, or at the last epoch.
        patience = EARLY_STOPPING["early_stopping_patience"]
        assert epochs_run == min(EARLY_STOPPING["epochs"], result.best_epoch + patience)
        assert sorted(p.name for p in checkpoint_dir.glob("epoch-*.index")) == [
            f"epoch-{epoch:03d}.index" for epoch in range(1, epochs_run + 1)
        ]
        document = json.loads((checkpoint_dir / MODEL_CONFIG_FILE).read_text())
        assert load_spec(document["spec"]) == dataclasses.replace(result.spec, source=None)
        restored = load_checkpoint(checkpoint_dir, result.best_epoch)
        assert type(restored) is DCNv2
        features = feature_arrays(split[1].head(256))
        # Checkpoints hold the weights before the intercept recalibration on validation.
        restored.output_offset.assign_add(result.calibration_shift)
        np.testing.assert_allclose(restored(features).numpy(), result.model(features).numpy(), rtol=1e-5, atol=1e-7)
        with pytest.raises(FileNotFoundError, match=r"no checkpoint epoch-099 .*available: \['epoch-001'"):
            load_checkpoint(checkpoint_dir, 99)

    def test_recalibration_matches_the_mean_prediction_to_the_validation_rate(self, trained, split):
        result = trained(EARLY_STOPPED)
        validation = split[1]
        predictions = predict_values(result.model, feature_arrays(validation))
        assert result.calibration_shift is not None and result.calibration_shift != 0.0
        assert predictions.mean() == pytest.approx(validation["clicked"].mean(), rel=1e-3)
        # Without a validation frame there is nothing to recalibrate on.
        assert trained("fm").calibration_shift is None

    def test_conversion_without_click_is_rejected(self, split, fitted):
        bad = split[0].head(100).copy()
        bad.loc[bad.index[0], ["clicked", "converted"]] = [0, 1]
        with pytest.raises(ValueError, match="converted = 1 on impressions with clicked = 0"):
            training_labels(bad, load_spec("esmm"), fitted)

    def test_a_multitask_model_needs_click_and_conversion_labels(self):
        movielens = load_feature_spec("movielens")
        frame = pd.DataFrame({"user_id": ["1", "1"], "item_id": ["2", "2"], "rating": [4.0, 5.0], "age": [30, 40],
                              "gender": ["F", "M"], "occupation": ["x", "y"], "zip_code": ["1", "2"], "year": [1990, 1991],
                              "genres": ["Drama", "Drama"], "hour_of_day": [1, 2], "day_of_week": [0, 1]})  # fmt: skip
        for name in movielens.aggregate_features:
            frame[name.name] = 0.0
        with pytest.raises(ValueError, match="a multi-task model needs the labels \\['clicked', 'converted'\\]"):
            build_model("esmm", FittedFeatures.fit(movielens, frame))


class TestFactorizationMachine:
    def test_pairwise_term_on_a_hand_example(self):
        # v1 = (1, 2), v2 = (3, -1), v3 = (0.5, 4):
        # <v1,v2> = 3 - 2 = 1, <v1,v3> = 0.5 + 8 = 8.5, <v2,v3> = 1.5 - 4 = -2.5; sum = 7.
        fields = tf.constant([[[1.0, 2.0], [3.0, -1.0], [0.5, 4.0]]])
        assert FactorizationMachine()(fields).numpy().tolist() == [[7.0]]

    def test_pairwise_term_equals_the_double_sum(self):
        fields = np.random.default_rng(0).normal(size=(4, 6, 3)).astype(np.float32)
        brute_force = [
            sum(float(fields[b, i] @ fields[b, j]) for i in range(6) for j in range(i + 1, 6)) for b in range(4)
        ]
        np.testing.assert_allclose(FactorizationMachine()(fields).numpy()[:, 0], brute_force, rtol=1e-5)


class TestMultiTask:
    @pytest.mark.parametrize("name", ["esmm", "mmoe"])
    def test_pctcvr_is_exactly_pctr_times_pcvr(self, name, trained, split):
        predictions = predict_tasks(trained(name).model, feature_arrays(split[1]))
        assert predictions["pctcvr"].dtype == np.float32
        np.testing.assert_array_equal(predictions["pctcvr"], predictions["pctr"] * predictions["pcvr"])

    def test_cvr_tower_learns_from_impressions_without_a_click(self, trained, split):
        """The CTCVR loss reaches the CVR tower on unclicked rows: no clicked-only training."""
        model, spec = trained("esmm").model, trained("esmm").spec
        unclicked = split[0][split[0]["clicked"] == 0].head(64)
        features = {name: tf.constant(values) for name, values in feature_arrays(unclicked).items()}
        labels = tf.nest.map_structure(tf.constant, training_labels(unclicked, spec, trained("esmm").model.fitted))
        with tf.GradientTape() as tape:
            loss = model.compute_loss(features, labels, model(features, training=True))
        cvr_variables = model.cvr_tower.trainable_variables + model.cvr_logit.trainable_variables
        gradients = tape.gradient(loss, cvr_variables)
        assert sum(float(tf.norm(g)) for g in gradients) > 0

    def test_mmoe_gates_are_a_softmax_over_experts_per_task(self, trained, batch):
        model = trained("mmoe").model
        gates = model.experts.gate_weights(model.encoder(batch)).numpy()
        assert gates.shape == (16, 2, 4)
        np.testing.assert_allclose(gates.sum(axis=2), 1.0, rtol=1e-5)


class TestHashedLogisticRegression:
    def test_tokens_and_crosses_hash_like_their_strings(self):
        layer = HashedFeatureCrosses(["device", "category"], [["device", "category"]], num_bins=1024)
        buckets = layer({"device": tf.constant(["mobile"]), "category": tf.constant(["mobile"])}).numpy()[0]
        expected = keras.layers.Hashing(num_bins=1024)(
            tf.constant(["device=mobile", "category=mobile", "device=mobile&category=mobile"])
        ).numpy()
        assert buckets.tolist() == expected.tolist()

    def test_a_step_touches_only_its_batch_buckets(self, trained, split):
        model = trained("hashed_lr").model
        rows = split[0].head(64)
        features = {name: tf.constant(values) for name, values in feature_arrays(rows).items()}
        with tf.GradientTape() as tape:
            loss = keras.losses.binary_crossentropy(rows["clicked"].to_numpy(np.float32), model(features))
        gradient = tape.gradient(loss, model.bucket_weights.embeddings)
        assert isinstance(gradient, tf.IndexedSlices)  # sparse: one row per looked-up bucket
        assert set(gradient.indices.numpy()) == set(model.bucket_ids(features).numpy().ravel())

    def test_trained_weights_sit_only_in_buckets_the_training_rows_hash_to(self, trained, split):
        model = trained("hashed_lr").model
        features = {name: tf.constant(values) for name, values in feature_arrays(split[0]).items()}
        seen = set(model.bucket_ids(features).numpy().ravel())
        nonzero = set(np.flatnonzero(model.bucket_weights.embeddings.numpy()[:, 0]))
        assert nonzero and nonzero <= seen


CUSTOM_LAYERS = {
    "MLP": (lambda: MLP([4, 3], dropout=0.1), lambda: tf.random.stateless_normal([2, 5], seed=[1, 2])),
    "FactorizationMachine": (FactorizationMachine, lambda: tf.random.stateless_normal([2, 3, 4], seed=[1, 2])),
    "NumericFieldEmbedding": (
        lambda: NumericFieldEmbedding(3),
        lambda: tf.random.stateless_normal([2, 5], seed=[1, 2]),
    ),
    "MixtureOfExperts": (
        lambda: MixtureOfExperts(3, [4], num_tasks=2, dropout=0.2),
        lambda: tf.random.stateless_normal([2, 5], seed=[1, 2]),
    ),
    "HashedFeatureCrosses": (
        lambda: HashedFeatureCrosses(["device"], [["device", "category"]], num_bins=64, salt=7),
        lambda: {"device": tf.constant(["mobile", "tablet"]), "category": tf.constant(["cat_00", "cat_01"])},
    ),
}


class TestSerialisation:
    @pytest.mark.parametrize("name", sorted(CUSTOM_LAYERS))
    def test_custom_layer_config_round_trip(self, name):
        make_layer, make_inputs = CUSTOM_LAYERS[name]
        layer, inputs = make_layer(), make_inputs()
        original = layer(inputs)
        serialized = json.loads(json.dumps(keras.layers.serialize(layer)))
        assert serialized["registered_name"] == f"reclake>{name}"
        restored = keras.layers.deserialize(serialized)
        assert type(restored) is type(layer)
        assert restored.get_config() == layer.get_config()
        restored(inputs)
        restored.set_weights(layer.get_weights())
        tf.nest.map_structure(
            lambda a, b: np.testing.assert_array_equal(a.numpy(), b.numpy()), restored(inputs), original
        )

    def test_every_model_type_is_registered(self):
        for cls in MODEL_TYPES.values():
            assert keras.utils.get_registered_object(f"reclake>{cls.__name__}") is cls


class TestDistribution:
    def test_cpu_without_tf_config_uses_the_default_strategy(self):
        assert "TF_CONFIG" not in os.environ
        strategy = choose_strategy()
        assert strategy is tf.distribute.get_strategy()
        assert strategy.num_replicas_in_sync == 1

    def test_mixed_precision_needs_a_gpu(self):
        with pytest.raises(ValueError, match="mixed_precision: true needs a GPU"):
            with mixed_precision_policy(True):
                pass

    @pytest.mark.parametrize(
        ("tf_config", "message"),
        [
            ("not json", "TF_CONFIG must be JSON like"),
            ('{"cluster": {}, "task": {"type": "worker", "index": 0}}', "TF_CONFIG must be JSON like"),
            ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}', "outside its 1 worker"),
        ],
    )
    def test_bad_tf_config_is_a_clear_error(self, tf_config, message):
        with pytest.raises(ValueError, match=message):
            parse_tf_config(tf_config)

    def test_two_cpu_workers_train_one_model_in_sync(self, worker_cluster):
        reports = worker_cluster.reports(timeout=240)
        for report in reports:
            assert report["multi_worker"]
            assert report["replicas"] == 2
            assert report["loss"][-1] < report["loss"][0]
        # Synchronous all-reduce: both workers end with the same weights.
        np.testing.assert_allclose(reports[0]["weight_sums"], reports[1]["weight_sums"], rtol=0, atol=1e-6)
