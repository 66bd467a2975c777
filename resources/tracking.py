"""MLflow experiment tracking as a Dagster resource: where trainings are recorded."""

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg


class TrackingResource(dg.ConfigurableResource):
    """Logs every training to MLflow (``models.tracking``) and links the run in metadata.

    Attributes:
        tracking_uri: the MLflow store: ``sqlite:///<state_dir>/mlflow/mlflow.db`` by
            default, any tracking URI (an ``http://`` server) when configured.
        artifact_root: where new experiments keep their artifacts (a folder or URI);
            None: the store's default (a server's own artifact root).
        ui_url: where ``make mlflow`` serves the UI; None: runs are not linked.
        experiment_prefix: experiments are ``<prefix><source>`` (one per source).
    """

    tracking_uri: str
    artifact_root: str | None = None
    ui_url: str | None = None
    experiment_prefix: str = "reclake-"

    def log_training(
        self,
        context: dg.AssetExecutionContext,
        source: str,
        run_name: str,
        *,
        model_config: Mapping[str, Any],
        history: Mapping[str, Sequence[float]],
        metrics: Mapping[str, float],
        data_window: Mapping[str, Any],
        best_epoch: int | None = None,
        children: Sequence[Any] = (),
    ) -> dict[str, dg.MetadataValue]:
        """Record one training of the running asset, with what it tried (``children``:
        ``models.tracking.ChildRun``, e.g. the automatic choice's candidates and their
        sweep trials) as nested runs; returns the metadata that links it
        (``mlflow_run_url``, ``mlflow_run_id``, ``mlflow_child_runs``), empty when
        tracking failed (a warning says why: tracking never fails a training)."""
        from models.tracking import log_training

        run = log_training(
            self.tracking_uri,
            f"{self.experiment_prefix}{source}",
            run_name,
            model_config=model_config,
            history=history,
            metrics=metrics,
            data_window=data_window,
            tags={
                "dagster.run_id": context.run_id,
                "dagster.asset": context.asset_key.to_user_string(),
                **({"dagster.partition": context.partition_key} if context.has_partition_key else {}),
                "reclake.source": source,
            },
            best_epoch=best_epoch,
            artifact_root=self.artifact_root,
            children=children,
        )
        if run is None:
            context.log.warning(f"MLflow at {self.tracking_uri}: {run_name} was not tracked (see the log above)")
            return {}
        links: dict[str, dg.MetadataValue] = {"mlflow_run_id": dg.MetadataValue.text(run.run_id)}
        if children:
            links["mlflow_child_runs"] = dg.MetadataValue.int(_count(children))
        if self.ui_url:
            links["mlflow_run_url"] = dg.MetadataValue.url(run.url(self.ui_url))
        return links


def _count(children: Sequence[Any]) -> int:
    """How many runs ``children`` nest, at every depth."""
    return sum(1 + _count(child.children) for child in children)
