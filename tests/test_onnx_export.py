"""ONNX export of the zoo rankers: ONNX Runtime matches TensorFlow on the same rows for
every ranker type, including unseen values, hashed columns and crosses; a model without
hashing runs from raw rows in ONNX Runtime alone."""

import json

import numpy as np
import onnx
import onnxruntime
import pandas as pd
import pytest

from models.export.onnx import METADATA_HASHED_INPUTS, METADATA_RAW_INPUTS, OUTPUT_NAME, export_onnx
from models.inputs.features import FittedFeatures, feature_arrays, label_array
from models.training.registry import build_model
from reclake.feature_spec import feature_spec_from_dict

# Every transform of the feature spec: string and int vocabularies, hashing, quantile
# buckets, log-normalised and plain numbers, a cyclical hour, and a hashed cross.
COLUMNS = {
    "segment": {"role": "user", "dtype": "string", "transform": "embedding", "dim": 4},
    "zip_code": {"role": "user", "dtype": "string", "transform": "hashing", "hash_buckets": 32, "dim": 4},
    "slot": {"role": "context", "dtype": "int", "transform": "embedding", "dim": 4},
    "age": {"role": "user", "dtype": "int", "transform": "bucketize", "quantiles": 4, "dim": 4},
    "price": {"role": "item", "dtype": "float", "transform": "normalize", "log": True},
    "hour_of_day": {"role": "context", "dtype": "int", "transform": "cyclical", "period": 24, "derived": True},
}
HASHED_SPEC = {
    "source": "onnx_test",
    "label": {"column": "clicked", "kind": "binary"},
    "id_embedding_dim": 4,
    "id_min_count": 2,
    "aggregates": {"windows_days": [7]},
    "columns": COLUMNS,
    "crosses": [{"columns": ["segment", "slot"], "hash_buckets": 16, "dim": 4}],
}
UNHASHED_SPEC = {
    **HASHED_SPEC,
    "source": "onnx_test_unhashed",
    "columns": {name: entry for name, entry in COLUMNS.items() if entry["transform"] != "hashing"},
    "crosses": [],
}
RANKERS = {
    "fm": {"type": "fm", "model": {"embedding_dim": 4}},
    "deepfm": {"type": "deepfm", "model": {"embedding_dim": 4, "deep_units": [16]}},
    "dcn_v2_stacked": {"type": "dcn_v2", "model": {"structure": "stacked", "deep_units": [16]}},
    "dcn_v2_parallel": {"type": "dcn_v2", "model": {"structure": "parallel", "projection_dim": 4, "deep_units": [16]}},
    "hashed_lr": {
        "type": "hashed_lr",
        "model": {"num_bins": 2048, "crosses": [["segment", "item_id"]]},
        "training": {"optimizer": "ftrl", "learning_rate": 0.1},
    },
    "biased_mf": {"type": "biased_mf", "model": {"factors": 4}},
}


def impressions(rows: int, seed: int) -> pd.DataFrame:
    """Random impressions whose click odds depend on segment x slot, price and hour."""
    rng = np.random.default_rng(seed)
    segment, slot = rng.integers(0, 4, rows), rng.integers(1, 6, rows)
    price, hour = rng.lognormal(2.0, 1.0, rows), rng.integers(0, 24, rows)
    logit = -1.0 + 1.5 * (segment == slot % 4) - 0.2 * np.log1p(price) + 0.5 * np.sin(2 * np.pi * hour / 24)
    return pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in rng.integers(0, 40, rows)],
            "item_id": [f"i{i}" for i in rng.integers(0, 30, rows)],
            "segment": [f"s{s}" for s in segment],
            "zip_code": [f"z{z}" for z in rng.integers(0, 100, rows)],
            "slot": slot,
            "age": rng.integers(18, 70, rows),
            "price": price,
            "hour_of_day": hour,
            "user_events_7d": rng.poisson(5, rows).astype(float),
            "user_positive_rate_7d": rng.random(rows),
            "item_events_7d": rng.poisson(5, rows).astype(float),
            "item_positive_rate_7d": rng.random(rows),
            "clicked": (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int),
        }
    )


def held_out_rows(spec) -> dict[str, np.ndarray]:
    """200 fresh rows, three of them with values no vocabulary has seen."""
    rows = impressions(200, seed=1)
    rows.loc[0, "user_id"], rows.loc[1, "slot"], rows.loc[2, "segment"] = "new_user", 99, "new_segment"
    return feature_arrays(rows, spec)


def trained(spec_dict: dict, ranker: dict, epochs: int = 1):
    """A ranker fitted on 1,000 impressions (``epochs=0``: built, not trained)."""
    spec = feature_spec_from_dict(spec_dict)
    train = impressions(1000, seed=0)
    fitted = FittedFeatures.fit(spec, train)
    model = build_model({"training": {"learning_rate": 0.01}, **ranker}, fitted)
    if epochs:
        model.fit(feature_arrays(train, spec), label_array(train, spec), batch_size=64, epochs=epochs, verbose=0)
    return model, spec


@pytest.mark.parametrize("name", RANKERS)
def test_onnx_runtime_matches_tensorflow(name):
    model, spec = trained(HASHED_SPEC, RANKERS[name])
    rows = held_out_rows(spec)
    exported = export_onnx(model, rows)
    expected = model(rows, training=False).numpy()
    predicted = exported.predict(rows)
    assert predicted.shape == expected.shape == (200,)
    assert np.max(np.abs(predicted - expected)) < 1e-5
    assert expected.std() > 1e-3  # the rows get different scores: parity is not trivially met
    # Only FarmHash runs in TensorFlow: hashed columns and crosses are ONNX inputs.
    if name == "hashed_lr":
        assert exported.raw_inputs == ()
        assert len(exported.hashed_inputs) == 1
    elif name == "biased_mf":  # reads the ids only
        assert set(exported.raw_inputs) == {"user_id", "item_id"} and exported.hashed_inputs == ()
    else:
        assert set(exported.raw_inputs) == set(spec.model_feature_names) - {"zip_code"}
        assert {"zip_code_hashing", "segment_x_slot_hashing"} == {
            part for name in exported.hashed_inputs for part in name.split("/") if part.endswith("_hashing")
        }


def test_a_model_without_hashing_runs_in_onnx_runtime_alone(tmp_path):
    model, spec = trained(UNHASHED_SPEC, RANKERS["dcn_v2_parallel"])
    rows = held_out_rows(spec)
    exported = export_onnx(model, rows)
    assert exported.hashed_inputs == ()
    path = exported.save(tmp_path / "ranker.onnx")

    # A fresh session on the file, fed the raw columns: no TensorFlow involved.
    loaded = onnx.load(path)
    metadata = {prop.key: json.loads(prop.value) for prop in loaded.metadata_props}
    assert metadata[METADATA_HASHED_INPUTS] == []
    assert sorted(metadata[METADATA_RAW_INPUTS]) == sorted(spec.model_feature_names)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    feed = {
        name: rows[name].astype(str) if rows[name].dtype == object else rows[name]
        for name in metadata[METADATA_RAW_INPUTS]
    }
    predicted = session.run([OUTPUT_NAME], feed)[0]
    assert np.max(np.abs(predicted - model(rows, training=False).numpy())) < 1e-5
    assert {opset.domain for opset in loaded.opset_import} <= {"", "ai.onnx.ml"}


def test_multitask_models_are_refused():
    spec = feature_spec_from_dict({**UNHASHED_SPEC, "extra_labels": ["converted"]})
    frame = impressions(300, seed=2).assign(converted=0)
    model = build_model("esmm", FittedFeatures.fit(spec, frame))
    with pytest.raises(ValueError, match="ESMM is multi-task; export_onnx handles single-output rankers"):
        export_onnx(model, feature_arrays(frame.head(5), spec))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda rows: {name: values[:0] for name, values in rows.items()}, "needs at least one row"),
        (lambda rows: {**rows, "price": rows["price"].reshape(-1, 1)}, r"'price' must be a 1-D array"),
    ],
)
def test_bad_feature_rows_are_named(change, message):
    model, spec = trained(UNHASHED_SPEC, RANKERS["fm"], epochs=0)
    with pytest.raises(ValueError, match=message):
        export_onnx(model, change(held_out_rows(spec)))
