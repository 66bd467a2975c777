"""The ``served_model_quality`` asset judges a day on the scores the service logged for its
events (``predictions_from: service_logs``) and falls back to re-scoring the day with the
pinned model when the day has no such logs (``rescored``): a real exported model in a
real BentoML store, a DuckDB warehouse, prediction logs written by the real logger."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
import toy_examples
from serving_support import export_toy_recommender

from assets.model_monitoring import build_served_model_quality_asset
from reclake.lake import Lake
from resources.lake import LakeResource
from resources.model_store import ModelStoreResource
from resources.monitoring import MonitoringResource
from resources.warehouse import WarehouseResource
from serving.prediction_log import PredictionLogger, build_record

LOGGED, UNLOGGED = dt.date(2024, 3, 1), dt.date(2024, 2, 29)
DAYS = tuple((LOGGED - dt.timedelta(days=n)).isoformat() for n in range(4, -1, -1))
SERVED_SCORE = 0.9  # far from anything the toy model gives: the judged scores must be these


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Resources of a pinned toy model (evaluated on 2024-01-03) and five days of events."""
    root = tmp_path_factory.mktemp("served")
    export_toy_recommender(root / "savedmodel", "pinned-v1")
    store = ModelStoreResource(
        bentoml_home=str(root / "bentoml"), pinned_tag_file=str(root / "pinned"), model_name="reclake_synthetic"
    )
    store.pin(store.register(Lake(str(root)), str(root / "savedmodel"), {}, {"model_version": "pinned-v1"}))
    frame = toy_examples.make_training_examples(n_users=40, n_items=30, n_rows=2_500, days=DAYS, seed=3)
    with duckdb.connect(str(root / "warehouse.duckdb")) as connection:
        connection.register("frame", frame)
        connection.execute(
            "create table training_examples as select * replace (cast(event_date as date) as event_date) from frame"
        )
    resources = {
        "lake": LakeResource(root=str(root / "lake")),
        "warehouse": WarehouseResource(path=str(root / "warehouse.duckdb")),
        "pipeline": toy_examples.toy_pipeline(root),
        "model_store": store,
        "monitoring": MonitoringResource(),
    }
    return root, frame, resources


def _log_day(lake_root: str, events) -> None:
    """What the service logs when ``/predict`` rows carry event ids: 10 rows per request."""
    columns = list(toy_examples.SPEC.request_features)
    rows = [
        {**{c: (v.item() if hasattr(v, "item") else v) for c, v in row.items()}, "event_id": event_id}
        for row, event_id in zip(events[columns].to_dict("records"), events["event_id"], strict=True)
    ]
    noon = dt.datetime(LOGGED.year, LOGGED.month, LOGGED.day, 12, tzinfo=dt.UTC)
    with PredictionLogger(lake_root, "synthetic", flush_interval_s=0.05) as logger:
        for start in range(0, len(rows), 10):
            chunk = rows[start : start + 10]
            logger.log(build_record(endpoint="predict", model_version="served-v0", features={"rows": chunk},
                                    scores=[SERVED_SCORE] * len(chunk), latency_ms=2.0, logged_at=noon))  # fmt: skip


def test_a_logged_day_is_judged_on_the_served_scores_and_an_unlogged_one_is_rescored(world):
    root, frame, resources = world
    dates = pd.to_datetime(frame["event_date"]).dt.date
    day_events = frame[dates == LOGGED]
    logged = day_events.iloc[: len(day_events) // 2]
    _log_day(str(root / "lake"), logged)
    asset = build_served_model_quality_asset(dg.DailyPartitionsDefinition(start_date=DAYS[0]))
    instance = dg.DagsterInstance.ephemeral()

    judged = {}
    for day in (LOGGED, UNLOGGED):
        result = dg.materialize([asset], partition_key=day.isoformat(), resources=resources, instance=instance)
        assert result.success
        [materialization] = result.asset_materializations_for_node("served_model_quality")
        judged[day] = {key: getattr(value, "value", value) for key, value in materialization.metadata.items()}

    served, rescored = judged[LOGGED], judged[UNLOGGED]
    assert served["status"] == rescored["status"] == "judged"
    assert (served["predictions_from"], served["served_rows"], served["rows"]) == ("service_logs", len(logged),
                                                                                     len(logged))  # fmt: skip
    assert served["served_model_versions"] == ["served-v0"]
    assert served["predicted"] == pytest.approx(SERVED_SCORE)  # the scores served, not the pinned model's
    unlogged_rows = int((dates == UNLOGGED).sum())
    assert (rescored["predictions_from"], rescored["served_rows"], rescored["rows"]) == ("rescored", 0,
                                                                                        unlogged_rows)  # fmt: skip
    assert rescored["served_model_versions"] == [] and rescored["predicted"] < 0.5
    observed = logged[toy_examples.SPEC.label.column].mean()
    assert served["observed"] == pytest.approx(observed, abs=1e-6)  # the logged events' own labels (rounded)

    lake = Lake(str(root / "lake"))
    document = json.loads(
        lake.read_bytes(lake.url("reports", "served_model_quality", f"dt={LOGGED.isoformat()}", "quality.json"))
    )
    assert (document["predictions_from"], document["served_rows"]) == ("service_logs", len(logged))
    assert document["served_model_versions"] == ["served-v0"] and document["model_version"] == "pinned-v1"
    assert np.isclose(document["predicted"], SERVED_SCORE)
