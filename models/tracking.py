"""Experiment tracking: one training's record in MLflow, without Dagster.

``log_training`` writes what a training was and how it did to an MLflow tracking store
(a server, a SQLite file or a folder): the model config flattened into params (and the
whole config as ``model_config.json``), the data window, the per-epoch Keras history as
step-indexed metrics, the validation figures of the kept epoch (``validation_*``), the
held-out day's metrics, and tags such as the Dagster run id. MLflow is the experiment
record; the BentoML store and champion/challenger stay the serving registry.

What the training tried before it (the automatic choice's candidates, each sweep's
trials) is logged as child runs nested under it (``ChildRun``: MLflow's
``mlflow.parentRunId`` tag, so the UI folds them under the training), each with its
params, validation metric and seconds; a candidate's sweep trials nest under the
candidate.

Tracking never fails a training: an unreachable server or any MLflow error is logged
as a warning and ``log_training`` returns None.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

logger = logging.getLogger(__name__)

# A server that does not answer this fast is treated as unreachable (MLflow's own client
# would retry for minutes).
REACHABILITY_TIMEOUT_S = 3.0
# MLflow's per-call limits of ``log_batch``.
_MAX_PARAMS_PER_BATCH = 100
_MAX_METRICS_PER_BATCH = 1000
_MAX_PARAM_LENGTH = 6000
# What MLflow allows in a metric or param name; anything else becomes "_".
_NAME_UNSAFE = re.compile(r"[^0-9A-Za-z_\-. :/]")


PARENT_RUN_TAG = "mlflow.parentRunId"
"""The tag that nests a run under another in MLflow (what ``mlflow.start_run(nested=True)`` sets)."""
RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")


@dataclass(frozen=True)
class ChildRun:
    """A run nested under a training: one candidate of a choice, or one sweep trial.

    Attributes:
        name: the run's name, e.g. ``ranker:fm`` or ``trial 3``.
        params: logged as params (nested mappings flattened with dots).
        metrics: logged as metrics (None values left out), e.g. ``validation_auc``, ``seconds``.
        tags: run tags, e.g. ``reclake.status``.
        status: ``FINISHED``, ``FAILED`` (a candidate that failed) or ``KILLED`` (skipped
            or pruned).
        children: runs nested under this one (a candidate's sweep trials).
    """

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, float | None] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    status: str = "FINISHED"
    children: Sequence[ChildRun] = ()

    def __post_init__(self) -> None:
        if self.status not in RUN_STATUSES:
            raise ValueError(f"ChildRun.status must be one of {RUN_STATUSES}, got {self.status!r}")


@dataclass(frozen=True)
class TrackedRun:
    """Where a logged training lives in MLflow.

    Attributes:
        experiment_id: the MLflow experiment's id.
        run_id: the MLflow run's id.
        tracking_uri: the store it was written to.
    """

    experiment_id: str
    run_id: str
    tracking_uri: str

    def url(self, ui_url: str) -> str:
        """The run's page in the MLflow UI served at ``ui_url``."""
        return f"{ui_url.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"


def mlflow_name(name: str) -> str:
    """A metric or param name as MLflow accepts it: ``recall@10`` -> ``recall_at_10``."""
    return _NAME_UNSAFE.sub("_", name.replace("@", "_at_"))


def flatten_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config as MLflow params: ``{"model": {"embedding_dim": 8}}`` ->
    ``{"model.embedding_dim": "8"}`` (values as text, cut to MLflow's length limit)."""
    params: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            params.update(flatten_params(value, f"{name}."))
        else:
            params[name] = str(value)[:_MAX_PARAM_LENGTH]
    return params


def validation_metrics(history: Mapping[str, Sequence[float]], best_epoch: int | None) -> dict[str, float]:
    """The Keras history's ``val_*`` figures of the kept epoch (``best_epoch``, 1-based;
    None: the last), as ``validation_<name>``; empty without a validation day."""
    metrics = {}
    for name, values in history.items():
        if name.startswith("val_") and len(values):
            epoch = best_epoch if best_epoch and best_epoch <= len(values) else len(values)
            metrics[f"validation_{name[4:]}"] = float(values[epoch - 1])
    return metrics


def data_window(days: Sequence[Any], trained: Any) -> dict[str, Any]:
    """What a training saw, as ``log_training``'s ``data_window``: the window's days, the
    split's training span and held-out day, and the rows of each part.

    Args:
        days: the window's days, oldest first.
        trained: a ``models.recommender.TrainedRanker`` / ``TrainedRecommender`` or a
            ``models.training.retrievers.TrainedRetriever``: its ``trained_on``,
            ``evaluated_on`` and the parts it has (``train``, ``validation``,
            ``fitted_on``, ``test``) as ``<part>_rows``.
    """
    window = {
        "window": f"{days[0]} .. {days[-1]}",
        "trained_on": f"{trained.trained_on[0]} .. {trained.trained_on[1]}",
        "evaluated_on": trained.evaluated_on.isoformat(),
    }
    for part in ("train", "validation", "fitted_on", "test"):
        rows = getattr(trained, part, None)
        if rows is not None:
            window[f"{part}_rows"] = len(rows)
    return window


def is_remote(tracking_uri: str) -> bool:
    """Whether the tracking URI names a server (``http(s)://``) rather than a local store."""
    return urlparse(tracking_uri).scheme in ("http", "https")


def server_reachable(tracking_uri: str, timeout: float = REACHABILITY_TIMEOUT_S) -> bool:
    """Whether an MLflow server answers its ``/health`` route within ``timeout`` seconds
    (always True for a local store)."""
    if not is_remote(tracking_uri):
        return True
    import requests

    try:
        return requests.get(f"{tracking_uri.rstrip('/')}/health", timeout=timeout).ok
    except requests.RequestException:
        return False


def log_training(
    tracking_uri: str,
    experiment: str,
    run_name: str,
    *,
    model_config: Mapping[str, Any],
    history: Mapping[str, Sequence[float]],
    metrics: Mapping[str, float],
    data_window: Mapping[str, Any],
    tags: Mapping[str, str] | None = None,
    best_epoch: int | None = None,
    artifact_root: str | None = None,
    children: Sequence[ChildRun] = (),
) -> TrackedRun | None:
    """Log one training to MLflow, with what it tried as nested runs; never raises.

    Args:
        tracking_uri: the MLflow store (``http://...``, ``sqlite:///...``, a folder).
        experiment: the experiment's name (created when missing).
        run_name: the run's name, e.g. the model version.
        model_config: the trained model's config (``ModelSpec.to_dict()``): params
            ``config.*`` and the artifact ``model_config.json``.
        history: per-epoch Keras metrics (``loss``, ``val_loss``, ...): one step per epoch.
        metrics: the held-out day's metrics, logged as they are named.
        data_window: the days and row counts trained on (params ``data.*``).
        tags: more run tags, e.g. ``dagster.run_id``.
        best_epoch: the epoch whose weights were kept (``validation_*`` metrics, param).
        artifact_root: where a new experiment keeps its artifacts (a folder or URI);
            None: the store's default.
        children: runs nested under this one (``ChildRun``), e.g. the automatic
            choice's candidates with their sweep trials under them.

    Returns:
        The logged run, or None when MLflow was unreachable or failed (a warning says why).
    """
    started = time.perf_counter()
    if not server_reachable(tracking_uri):
        logger.warning("MLflow at %s does not answer: training %s is not tracked", tracking_uri, run_name)
        return None
    try:
        run = _log(
            tracking_uri,
            experiment,
            run_name,
            model_config,
            history,
            metrics,
            data_window,
            tags or {},
            best_epoch,
            artifact_root,
            children,
        )
    except Exception as error:  # tracking is a record, not a step: it must not fail the training
        logger.warning("could not log training %s to MLflow at %s: %s", run_name, tracking_uri, error)
        return None
    logger.info("tracked %s as MLflow run %s in %.1f s", run_name, run.run_id, time.perf_counter() - started)
    return run


def _experiment_id(client: Any, name: str, artifact_root: str | None) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if artifact_root:
        location = artifact_root if "://" in artifact_root else Path(artifact_root).resolve().as_uri()
    return client.create_experiment(name, artifact_location=location and f"{location.rstrip('/')}/{name}")


def _log(
    tracking_uri: str,
    experiment: str,
    run_name: str,
    model_config: Mapping[str, Any],
    history: Mapping[str, Sequence[float]],
    metrics: Mapping[str, float],
    data_window: Mapping[str, Any],
    tags: Mapping[str, str],
    best_epoch: int | None,
    artifact_root: str | None,
    children: Sequence[ChildRun] = (),
) -> TrackedRun:
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id = _experiment_id(client, experiment, artifact_root)
    run = client.create_run(experiment_id, run_name=run_name, tags={k: str(v) for k, v in tags.items()})
    run_id = run.info.run_id
    try:
        params = {
            **flatten_params(model_config, "config."),
            **flatten_params(data_window, "data."),
            **({"best_epoch": str(best_epoch)} if best_epoch else {}),
        }
        now = int(time.time() * 1000)
        points = [
            Metric(mlflow_name(name), float(value), now, step)
            for name, values in history.items()
            for step, value in enumerate(values, start=1)
        ]
        finals = {**validation_metrics(history, best_epoch), **metrics}
        points += [Metric(mlflow_name(n), float(value), now, 0) for n, value in finals.items() if value is not None]
        param_items = [Param(mlflow_name(k), v) for k, v in params.items()]
        for start in range(0, len(param_items), _MAX_PARAMS_PER_BATCH):
            client.log_batch(run_id, params=param_items[start : start + _MAX_PARAMS_PER_BATCH])
        for start in range(0, len(points), _MAX_METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=points[start : start + _MAX_METRICS_PER_BATCH])
        client.log_dict(run_id, dict(model_config), "model_config.json")
        _log_children(client, experiment_id, run_id, children, tags)
    except Exception:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    return TrackedRun(experiment_id=experiment_id, run_id=run_id, tracking_uri=tracking_uri)


def _log_children(
    client: Any, experiment_id: str, parent_id: str, children: Sequence[ChildRun], inherited: Mapping[str, str]
) -> None:
    """Each child as a run tagged with its parent's id (and the training's tags, e.g. the
    Dagster run id), its own children under it."""
    from mlflow.entities import Metric, Param

    for child in children:
        tags = {**{k: str(v) for k, v in {**inherited, **child.tags}.items()}, PARENT_RUN_TAG: parent_id}
        run_id = client.create_run(experiment_id, run_name=child.name, tags=tags).info.run_id
        now = int(time.time() * 1000)
        params = [Param(mlflow_name(k), v) for k, v in flatten_params(child.params).items()]
        metrics = [Metric(mlflow_name(k), float(v), now, 0) for k, v in child.metrics.items() if v is not None]
        for start in range(0, len(params), _MAX_PARAMS_PER_BATCH):
            client.log_batch(run_id, params=params[start : start + _MAX_PARAMS_PER_BATCH])
        for start in range(0, len(metrics), _MAX_METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=metrics[start : start + _MAX_METRICS_PER_BATCH])
        _log_children(client, experiment_id, run_id, child.children, inherited)
        client.set_terminated(run_id, status=child.status)
