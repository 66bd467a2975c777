"""The daily drift snapshots in an Evidently workspace on the lake, for its UI's dashboards over time.

The workspace lives on the lake root, ``<lake root>/evidently_workspace``, on a local lake
and on ``s3://`` alike; ``workspace_location`` is the one place that decides how.
Evidently 0.7's local workspace reads and writes through fsspec (``FSLocation``) but
builds its filesystem from the URL alone (``get_fs_token_paths(path)``, no storage
options), so it cannot reach a bucket on another endpoint (MinIO, moto, R2), and its UI
reads every snapshot of a project per request. So on a local lake the workspace is the
lake's folder itself; on any other lake Evidently works on a local copy under the state
dir, and each write is copied to the lake at once (``WorkspaceLocation.push``: the
project's files and the snapshot written), and ``python -m monitoring.evidently_ui``
copies the lake's workspace down before serving it (``WorkspaceLocation.pull``).

A workspace holds one project per source (``ensure_project``: created once, with a
dashboard of the share of drifted columns and each monitored column's drift score over
time, and a tab of the served model's calibration, prediction drift, quality,
personalisation and popularity bias) and one snapshot per daily partition and kind
(``add_drift_snapshot``: the partition's snapshot has an id derived from the project and
the day, so re-reporting a day replaces its snapshot instead of adding one).

Snapshots are dated at their partition's midnight, so the dashboards' time axis is the
data's calendar, not the time the reports ran.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import posixpath
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reclake.lake import Lake

if TYPE_CHECKING:
    from evidently.core.report import Snapshot
    from evidently.sdk.models import DashboardModel
    from evidently.ui.workspace import Workspace

WORKSPACE_DIR = "evidently_workspace"
"""The workspace's folder under the lake root."""
PARTITION_KEY = "partition"
"""Snapshot metadata key holding the partition's day (``YYYY-MM-DD``)."""
DRIFT_TAG = "drift"
"""Tag of the drift snapshots (the dashboards plot snapshots with it)."""
SERVED_MODEL_TAG = "served_model"
"""Tag of the served model's snapshots (``monitoring.served_model_report``)."""
# Namespace of the ids derived here (projects from the source, snapshots and panels from
# the project): the same inputs give the same ids in every process.
_NAMESPACE = uuid.UUID("6f0f3c1e-4b7a-5d2e-9c8b-2a1d0e7f5b39")


# Evidently's layout of a local workspace (evidently.ui.storage.local.base).
_PROJECT_FILES = ("metadata.json", "dashboard.json")
_SNAPSHOTS_DIR = "snapshots"


@dataclass(frozen=True)
class WorkspaceLocation:
    """Where a lake's Evidently workspace is (``workspace_location``).

    Attributes:
        folder: the local folder Evidently reads and writes.
        lake: the lake the folder is a copy of, or None when ``folder`` is the lake's own
            workspace (a local lake): then ``push`` and ``pull`` do nothing.
    """

    folder: str
    lake: Lake | None = None

    @property
    def remote(self) -> str | None:
        """The workspace on the lake (``<lake root>/evidently_workspace``) when ``folder`` is a copy."""
        return None if self.lake is None else self.lake.url(WORKSPACE_DIR)

    def push(self, *paths: str) -> None:
        """Copy the files ``paths`` (relative to the workspace) from ``folder`` to the lake,
        replacing them there; a path ``folder`` lacks is skipped."""
        if self.lake is None:
            return
        for path in paths:
            if os.path.exists(os.path.join(self.folder, path)):
                self.lake.upload_file(os.path.join(self.folder, path), posixpath.join(self.remote, path))

    def pull_files(self, *paths: str) -> None:
        """Make the files ``paths`` (relative to the workspace) of ``folder`` those of the lake:
        copied down when the lake has them, removed when it does not."""
        if self.lake is None:
            return
        for path in paths:
            local, remote = Path(self.folder, path), posixpath.join(self.remote, path)
            if self.lake.exists(remote):
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_bytes(self.lake.read_bytes(remote))
            else:
                local.unlink(missing_ok=True)

    def pull(self) -> None:
        """Make ``folder`` a copy of the lake's whole workspace (empty when the lake has none)."""
        if self.lake is None:
            return
        shutil.rmtree(self.folder, ignore_errors=True)
        Path(self.folder).mkdir(parents=True)
        fs = self.lake.fs
        fs.invalidate_cache(self.remote)
        if fs.exists(self.remote):
            fs.get(self.remote.rstrip("/") + "/", self.folder.rstrip("/") + "/", recursive=True)


def workspace_location(lake: Lake, state_dir: str | os.PathLike) -> WorkspaceLocation:
    """Where ``lake``'s Evidently workspace is read and written (see the module docstring).

    Args:
        lake: the lake; its workspace is ``<lake root>/evidently_workspace``.
        state_dir: a local folder for the copy of a lake that is not local:
            ``<state_dir>/evidently_workspace/<digest of the lake's workspace URL>``
            (one copy per lake, so two lakes never share one).

    Returns:
        The lake's own folder on a local lake; else the copy, synced with the lake.
    """
    if lake.is_local:
        return WorkspaceLocation(lake.url(WORKSPACE_DIR))
    digest = hashlib.sha256(lake.url(WORKSPACE_DIR).encode()).hexdigest()[:16]
    return WorkspaceLocation(str(Path(state_dir, WORKSPACE_DIR, digest)), lake)


def project_files(project: uuid.UUID) -> list[str]:
    """The paths (relative to the workspace) of ``project``'s own files: its metadata and dashboard."""
    return [posixpath.join(str(project), name) for name in _PROJECT_FILES]


def snapshot_file(project: uuid.UUID, snapshot: uuid.UUID) -> str:
    """The path (relative to the workspace) of ``snapshot``'s file in ``project``."""
    return posixpath.join(str(project), _SNAPSHOTS_DIR, f"{snapshot}.json")


def project_id(source: str) -> uuid.UUID:
    """The id of ``source``'s drift project: the same in every workspace and process."""
    return uuid.uuid5(_NAMESPACE, f"project:{source}")


def snapshot_id(project: uuid.UUID, day: dt.date, tag: str = DRIFT_TAG) -> uuid.UUID:
    """The id of the ``tag`` snapshot of ``day`` in ``project``: one per partition and kind."""
    key = day.isoformat() if tag == DRIFT_TAG else f"{tag}:{day.isoformat()}"
    return uuid.uuid5(_NAMESPACE, f"snapshot:{project}:{key}")


def project_url(ui_url: str, project: uuid.UUID) -> str:
    """The page of ``project`` in the Evidently UI served at ``ui_url``."""
    return f"{ui_url.rstrip('/')}/projects/{project}"


def open_workspace(path: str) -> Workspace:
    """The Evidently workspace at the local folder ``path`` (created when missing)."""
    from evidently.ui.workspace import Workspace

    return Workspace(path)


def ensure_project(
    workspace: Workspace, source: str, numerical: Sequence[str], categorical: Sequence[str]
) -> uuid.UUID:
    """``source``'s drift project, created with its dashboard when the workspace lacks it;
    an existing project (and any change made to its dashboard in the UI) is left as is.

    Args:
        workspace: the workspace (``open_workspace``).
        source: the source's name; the project is named after it.
        numerical: numerical columns to chart (all the source may monitor).
        categorical: categorical columns to chart.

    Returns:
        The project's id (``project_id(source)``).
    """
    from evidently.sdk.models import ProjectModel

    project = project_id(source)
    if workspace.get_project(project) is None:
        workspace.add_project(
            ProjectModel(
                id=project,
                name=f"{source} drift",
                description=f"Daily feature drift of the {source} source's training_examples against the days before",
            )
        )
        workspace.save_dashboard(project, drift_dashboard(project, numerical, categorical))
    return project


def drift_dashboard(project: uuid.UUID, numerical: Sequence[str], categorical: Sequence[str]) -> DashboardModel:
    """The dashboard of a drift project: the share of drifted columns over time, then the
    drift score of each numerical column (normed Wasserstein) and of each categorical one
    (Jensen-Shannon) over time, one line per column."""
    from evidently.metrics import DriftedColumnsCount, ValueDrift
    from evidently.sdk.models import DashboardModel, DashboardPanelPlot, DashboardTabModel, PanelMetric
    from evidently.sdk.panels import line_plot_panel

    drifted, value_drift = DriftedColumnsCount.__get_type__(), ValueDrift.__get_type__()

    def per_column(title: str, columns: Sequence[str]) -> DashboardPanelPlot:
        values = [
            PanelMetric(legend=column, tags=[DRIFT_TAG], metric=value_drift, metric_labels={"column": column})
            for column in columns
        ]
        return line_plot_panel(title=title, values=values, description="0: the day matches its reference")

    panels = [
        line_plot_panel(
            title="Share of drifted columns",
            values=[
                PanelMetric(legend="share", tags=[DRIFT_TAG], metric=drifted, metric_labels={"value_type": "share"})
            ],
            description="Columns whose distance reached the threshold, per day",
        )
    ]
    if numerical:
        panels.append(per_column("Drift score: numerical columns (normed Wasserstein distance)", numerical))
    if categorical:
        panels.append(per_column("Drift score: categorical columns (Jensen-Shannon distance)", categorical))
    # Ids derived from the project and the title, so that a dashboard is written identically every time.
    panels = [panel.copy(update={"id": uuid.uuid5(project, panel.title)}) for panel in panels]
    served = [panel.copy(update={"id": uuid.uuid5(project, panel.title)}) for panel in _served_model_panels()]
    tabs = [
        DashboardTabModel(id=uuid.uuid5(project, "tab:Drift"), title="Drift", panels=[panel.id for panel in panels]),
        DashboardTabModel(
            id=uuid.uuid5(project, "tab:Served model"), title="Served model", panels=[panel.id for panel in served]
        ),
    ]
    return DashboardModel(tabs=tabs, panels=panels + served)


def _served_model_panels() -> list:
    """The served model's panels over time (snapshots of ``monitoring.served_model_report``):
    predicted vs observed positive rate, prediction drift, AUC and logloss (RMSE and MAE
    for ratings), and for sources with user and item ids the personalisation and the
    popularity bias (ARP, coverage, Gini) of users' top 10."""
    from evidently.metrics import (
        MAE,
        RMSE,
        LogLoss,
        MeanValue,
        Personalization,
        PopularityBiasMetric,
        RocAuc,
        ValueDrift,
    )
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel

    def line(legend: str, metric_type, **labels) -> PanelMetric:
        return PanelMetric(
            legend=legend, tags=[SERVED_MODEL_TAG], metric=metric_type.__get_type__(), metric_labels=labels
        )

    return [
        line_plot_panel(
            title="Calibration: predicted vs observed positive rate",
            values=[
                line("predicted (mean score)", MeanValue, column="score"),
                line("observed (mean label)", MeanValue, column="label"),
            ],  # fmt: skip
            description="The served model's mean score and the day's observed rate (mean rating for ratings)",
        ),
        line_plot_panel(
            title="Prediction drift (normed Wasserstein distance of the scores)",
            values=[line("score", ValueDrift, column="score")],
            description="0: the day's scores match the reference window's",
        ),
        line_plot_panel(
            title="Quality on the day's outcomes",
            values=[line("AUC", RocAuc), line("logloss", LogLoss), line("RMSE", RMSE), line("MAE", MAE)],
            description="AUC and logloss for clicks, RMSE and MAE for ratings",
        ),
        line_plot_panel(
            title="Personalisation of each user's top 10 impressions",
            values=[line("personalisation", Personalization)],
            description="1: users' top items do not overlap (sources with user and item ids)",
        ),
        line_plot_panel(
            title="Popularity bias of each user's top 10 impressions",
            values=[
                line("ARP (normalised)", PopularityBiasMetric, metric="arp"),
                line("coverage of the clicked items", PopularityBiasMetric, metric="coverage"),
                line("Gini of the top items", PopularityBiasMetric, metric="gini"),
            ],
            description="Popularity among the reference window's clicks of the items users' top 10 hold: "
            "ARP 1 = only the most clicked item, Gini 1 = a few items fill every top 10",
        ),
    ]


def add_drift_snapshot(
    workspace: Workspace, project: uuid.UUID, day: dt.date, snapshot: Snapshot, tag: str = DRIFT_TAG
) -> uuid.UUID:
    """Store ``snapshot`` as the ``tag`` snapshot of ``day`` in ``project`` (the drift
    report's, or with ``SERVED_MODEL_TAG`` the served model's), replacing the day's earlier one.

    The snapshot is dated at ``day``'s midnight, named ``<tag> YYYY-MM-DD``, tagged
    ``tag`` and carries the day under ``PARTITION_KEY`` in its metadata.

    Returns:
        The snapshot's id (``snapshot_id(project, day, tag)``).
    """
    model = snapshot.to_snapshot_model()
    model = model.copy(
        update={
            "name": f"{tag.replace('_', ' ')} {day.isoformat()}",
            "timestamp": dt.datetime(day.year, day.month, day.day),
            "metadata": {**model.metadata, PARTITION_KEY: day.isoformat()},
            "tags": sorted({*model.tags, tag}),
        }
    )
    snapshot_key = snapshot_id(project, day, tag)
    # Workspace.add_run draws a new id for every call; writing under the day's own id (as
    # add_run does under its new one) makes a re-run of the day replace its snapshot.
    workspace.state.write_snapshot(project, snapshot_key, model)
    return snapshot_key


class DriftProject:
    """``source``'s drift project in the workspace at ``location``: the workspace is opened,
    and the project created, on the first ``add`` (opening imports Evidently's service).
    On a lake that is not local, the project's files are first copied down from the lake
    (so a project that exists there is kept as it is), and every write is copied back up.

    Args:
        location: where the workspace is (``workspace_location``).
        source: the source's name.
        numerical: numerical columns the dashboard charts.
        categorical: categorical columns the dashboard charts.
    """

    def __init__(self, location: WorkspaceLocation, source: str, numerical: Sequence[str], categorical: Sequence[str]):
        self.location = location
        self.source = source
        self.numerical = list(numerical)
        self.categorical = list(categorical)
        self._workspace: Workspace | None = None

    @property
    def id(self) -> uuid.UUID:
        return project_id(self.source)

    def add(self, day: dt.date, snapshot: Snapshot, tag: str = DRIFT_TAG) -> uuid.UUID:
        """Store ``snapshot`` as ``day``'s ``tag`` snapshot (``add_drift_snapshot``); returns its id."""
        if self._workspace is None:
            self.location.pull_files(*project_files(self.id))
            self._workspace = open_workspace(self.location.folder)
            ensure_project(self._workspace, self.source, self.numerical, self.categorical)
            self.location.push(*project_files(self.id))
        written = add_drift_snapshot(self._workspace, self.id, day, snapshot, tag)
        self.location.push(snapshot_file(self.id, written))
        return written


def partitions(workspace: Workspace, project: uuid.UUID, tag: str = DRIFT_TAG) -> list[str]:
    """The days (``YYYY-MM-DD``) of the ``tag`` snapshots in ``project``, one entry per
    snapshot, sorted."""
    days = []
    for run in workspace.list_runs(project):
        model = workspace.get_run(project, run)
        if model is not None and PARTITION_KEY in model.metadata and tag in model.tags:
            days.append(str(model.metadata[PARTITION_KEY]))
    return sorted(days)
