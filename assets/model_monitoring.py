"""Monitoring the served model: each day, once its outcomes are in the warehouse, how the
model that was serving scored it (calibration, quality, prediction drift), with WARN
checks on it and on the day's feature drift."""

import datetime as dt
import json
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from assets.checks import DayOutcome, evaluations_per_day, newest_metadata
from assets.partitions import day_range_backfill, partition_days
from monitoring.drift import monitored_columns
from monitoring.served_model_report import served_model_snapshot
from monitoring.workspace import SERVED_MODEL_TAG, DriftProject, project_url, workspace_location
from reclake.lake import Lake
from resources.lake import LakeResource
from resources.model_store import ModelStoreResource
from resources.monitoring import MonitoringResource
from resources.pipeline import PipelineResource
from resources.warehouse import WarehouseResource

REFERENCE_SAMPLE_ROWS = 20_000  # reference-window rows scored for prediction drift (seeded sample)
MAX_SEGMENT_VALUES = 30  # a spec column with more values on a day is not a segment


def evidently_project(store: Lake, pipeline: PipelineResource, spec) -> DriftProject:
    """The source's project in the lake's Evidently workspace (``monitoring.workspace``); a
    lake that is not local is worked on in a copy under ``pipeline.state_dir``."""
    location = workspace_location(store, Path(pipeline.state_dir))
    return DriftProject(location, pipeline.source, *monitored_columns(spec))


def _served_scores(store: Lake, source: str, day: dt.date) -> pd.DataFrame:
    """The scores ``/predict`` served on ``day`` for rows with an event id, from the day's
    prediction logs in the lake (``serving.prediction_log_reader.served_event_scores``);
    empty when the service logged none."""
    from serving.prediction_log_reader import read_prediction_logs, served_event_scores

    return served_event_scores(read_prediction_logs(store.root, source, day, store.storage_options).rows)


def _segments(spec, frame: pd.DataFrame) -> dict[str, pd.Series]:
    """The day's key segments: the spec's categorical role columns (not ids) with few values."""
    names = [
        c.name
        for role in ("user", "item", "context")
        for c in spec.role_columns(role)
        if c.dtype == "string" and c.name not in spec.id_columns and c.name in frame
    ]
    return {name: frame[name] for name in names if frame[name].nunique() <= MAX_SEGMENT_VALUES}


def _table(rows: list[dict], columns: list[str]) -> str:
    def cell(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    return "\n".join(lines + ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows])


def build_served_model_quality_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """The ``served_model_quality`` asset on the source's daily ``partitions``."""

    @dg.asset(
        name="served_model_quality",
        group_name="monitoring",
        deps=[dg.AssetKey("training_examples")],
        partitions_def=partitions,
        backfill_policy=day_range_backfill,
        kinds={"tensorflow", "json"},
        pool="duckdb_warehouse",
    )
    def served_model_quality(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        lake: LakeResource,
        pipeline: PipelineResource,
        model_store: ModelStoreResource,
        monitoring: MonitoringResource,
    ):
        """How the model being served did on each day once the day's outcomes are known.

        The day is judged on the scores the service served, from the day's prediction
        logs: ``/predict`` rows that carried an ``event_id`` matched to the day's
        ``training_examples`` events and their observed labels (``predictions_from:
        service_logs``, ``served_rows`` events, ``served_model_versions``). Without enough
        of them the pinned model scores every event of the day (``rescored``: the
        point-in-time features it would have been served). The pinned model also scores
        a seeded sample of the ``drift_reference_days`` before the day. Per day:
        predicted vs observed positive rate overall, by score decile and by the spec's categorical segments, the expected
        calibration error over score deciles, AUC and logloss (RMSE and MAE for a
        rating label), and the prediction drift of the scores from the reference
        window's (``models.served_quality``). A day the model trained, validated or was
        tested on is not judged (``status``: ``in the model's window``): only days after
        its window say how it does in production. The figures go to metadata (flat, so
        the UI plots them over partitions), to
        ``reports/served_model_quality/dt=YYYY-MM-DD/quality.json`` in the lake and as a
        snapshot to the source's Evidently project on the lake (its "Served model"
        tab; ``evidently_url``); the WARN
        checks ``served_model_calibrated`` and ``served_predictions_stable`` judge them,
        and ``drift_retrain_sensor`` retrains on an alert.
        """
        from models.export.savedmodel import load_recommender
        from models.inputs.features import label_array
        from models.served_quality import day_predictions
        from models.served_quality import served_model_quality as judge

        spec = pipeline.feature_spec()
        store = lake.get_lake()
        project = evidently_project(store, pipeline, spec)
        tag = model_store.pinned()
        model = load_recommender(model_store.savedmodel_dir(tag)) if tag else None
        evaluated_on = dt.date.fromisoformat(model.metadata["evaluated_on"]) if model else None
        kind = "binary" if spec.label.kind == "binary" else "regression"
        statuses: list[dict[str, Any]] = []
        for day in partition_days(context):
            metadata: dict[str, Any] = {"served_model": tag or "none"}
            if model is None:
                metadata["status"] = "no served model yet"
            elif day <= evaluated_on:
                metadata.update(status="in the model's window", model_evaluated_on=evaluated_on.isoformat())
            else:
                first_reference = day - dt.timedelta(days=pipeline.drift_reference_days)
                frame = warehouse.read_days("training_examples", first_reference, day)
                dates = pd.to_datetime(frame["event_date"]).dt.date
                current, reference = frame[dates == day], frame[dates < day]
                if current.empty:
                    metadata["status"] = "no rows"
                else:
                    if len(reference) > REFERENCE_SAMPLE_ROWS:
                        reference = reference.sample(REFERENCE_SAMPLE_ROWS, random_state=0)
                    predictions = day_predictions(current, _served_scores(store, pipeline.source, day), model.rank)
                    current = predictions.rows
                    labels, scores = label_array(current, spec), predictions.scores
                    reference_scores = model.rank(reference) if len(reference) else []
                    quality = judge(labels, scores, reference_scores, kind, _segments(spec, current))
                    provenance = {
                        "predictions_from": predictions.predictions_from,
                        "served_rows": predictions.served_rows,
                        "served_model_versions": predictions.model_versions,
                    }
                    if len(reference):
                        with_ids = spec.user_id and spec.item_id
                        snapshot = served_model_snapshot(
                            labels, scores, label_array(reference, spec), reference_scores, kind,
                            current[["user_id", "item_id"]] if with_ids else None,
                            reference[["user_id", "item_id"]] if with_ids else None,
                        )  # fmt: skip
                        project.add(day, snapshot, SERVED_MODEL_TAG)
                        if lake.evidently_ui_url:
                            metadata["evidently_url"] = dg.MetadataValue.url(
                                project_url(lake.evidently_ui_url, project.id)
                            )
                    url = store.url("reports", "served_model_quality", f"dt={day.isoformat()}", "quality.json")
                    document = {"day": day.isoformat(), "model_version": model.model_version, **provenance,
                                **quality.to_dict()}  # fmt: skip
                    store.write_bytes(url, json.dumps(document, indent=2).encode())
                    alerts = monitoring.served_model_alerts(quality.figures())
                    metadata.update(
                        status="judged",
                        model_version=model.model_version,
                        predictions_from=provenance["predictions_from"],
                        served_rows=provenance["served_rows"],
                        served_model_versions=dg.MetadataValue.json(provenance["served_model_versions"]),
                        rows=quality.rows,
                        reference_rows=quality.reference_rows,
                        **quality.figures(),
                        alerts=dg.MetadataValue.json(alerts),
                        **lake.report_links("quality", url),
                    )
                    if quality.deciles:
                        metadata["deciles"] = dg.MetadataValue.md(
                            _table(quality.deciles, ["decile", "rows", "predicted", "observed"])
                        )
                    for name, rows in quality.segments.items():
                        metadata[f"segment_{name}"] = dg.MetadataValue.md(
                            _table(rows, ["value", "rows", "predicted", "observed"])
                        )
                    context.log.info(
                        f"{day}: served {model.model_version}: "
                        + ", ".join(f"{k} {v:.4f}" for k, v in quality.figures().items())
                        + (f"; ALERT: {'; '.join(alerts)}" if alerts else "")
                    )
            context.add_asset_metadata(metadata, partition_key=day.isoformat())  # each day its own figures
            statuses.append({"day": day.isoformat(), "status": metadata["status"], **{
                k: metadata[k] for k in ("ece", "ratio", "auc", "prediction_drift") if k in metadata}})  # fmt: skip
        columns = ["day", "status", *(k for k in ("ece", "ratio", "auc", "prediction_drift") if k in statuses[-1])]
        yield dg.MaterializeResult(
            metadata={"run_days": dg.MetadataValue.md(_table([{c: row.get(c, "") for c in columns} for row in statuses], columns))}
        )  # fmt: skip

    return served_model_quality


def _warn_check(asset: str, name: str, description: str, partitions: dg.PartitionsDefinition, judge):
    """A non-blocking WARN check with a result per day of the run, judging the metadata the
    asset recorded for the day with ``judge(metadata, monitoring) -> DayOutcome``."""

    @dg.asset_check(
        asset=asset,
        name=name,
        description=description,
        partitions_def=partitions,
        blocking=False,
    )
    def _check(context: dg.AssetCheckExecutionContext, monitoring: MonitoringResource):
        outcomes = {}
        for day in partition_days(context):
            metadata = newest_metadata(context.instance, asset, day.isoformat())
            outcomes[day.isoformat()] = (
                DayOutcome(True, {}, "not materialized: nothing to judge")
                if metadata is None
                else judge(metadata, monitoring)
            )
        check_key = dg.AssetCheckKey(dg.AssetKey(asset), name)
        yield from evaluations_per_day(
            context, check_key, outcomes, blocking=False, severity=dg.AssetCheckSeverity.WARN
        )

    return _check


def _judge_feature_drift(metadata: dict[str, Any], monitoring: MonitoringResource) -> DayOutcome:
    if metadata.get("status") != "reported":
        return DayOutcome(True, {"status": metadata.get("status")}, f"not judged: {metadata.get('status')}")
    share = metadata.get("drifted_share")
    alerts = monitoring.feature_drift_alerts(share)
    return DayOutcome(
        not alerts,
        {"drifted_share": share, "alert_share": monitoring.drift_alert_share},
        "; ".join(alerts) or f"{share:.0%} of the monitored features drifted",
    )


def _judge_served_model(keys: tuple[str, ...]):
    def judge(metadata: dict[str, Any], monitoring: MonitoringResource) -> DayOutcome:
        if metadata.get("status") != "judged":
            return DayOutcome(True, {"status": metadata.get("status")}, f"not judged: {metadata.get('status')}")
        figures = {key: metadata[key] for key in keys if metadata.get(key) is not None}
        alerts = monitoring.served_model_alerts(figures)
        summary = ", ".join(f"{key} {value:.4f}" for key, value in figures.items())
        return DayOutcome(not alerts, figures, "; ".join(alerts) or summary)

    return judge


def build_monitoring_checks(partitions: dg.PartitionsDefinition) -> list[dg.AssetChecksDefinition]:
    """The WARN checks of the monitoring loop on the source's daily ``partitions``."""
    return [
        _warn_check(
            "drift_report",
            "features_within_drift_alert",
            "WARN when the share of monitored feature columns that drifted from the reference window "
            "reaches drift_alert_share.",
            partitions,
            _judge_feature_drift,
        ),
        _warn_check(
            "served_model_quality",
            "served_model_calibrated",
            "WARN when the served model's expected calibration error over score deciles reaches "
            "calibration_alert_ece, or its predicted/observed positive rate leaves 1 ± calibration_alert_ratio "
            "(each on top of twice the day's sampling noise).",
            partitions,
            _judge_served_model(MonitoringResource.CALIBRATION_FIGURES),
        ),
        _warn_check(
            "served_model_quality",
            "served_predictions_stable",
            "WARN when the served model's scores drift from the reference window's by prediction_drift_alert "
            "(normed Wasserstein distance) or more.",
            partitions,
            _judge_served_model(MonitoringResource.PREDICTION_FIGURES),
        ),
    ]
