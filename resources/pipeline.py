"""Pipeline-wide knobs as Dagster resources: which source, windows, thresholds."""

import dataclasses
from typing import Any

import dagster as dg

from monitoring.data_quality import DataDocsSite
from reclake.feature_spec import FeatureSpec, load_feature_spec
from reclake.settings import Settings, SyntheticSettings
from sources.synthetic import SOURCE_NAME as SYNTHETIC_SOURCE


class PipelineResource(dg.ConfigurableResource):
    """Deployment-wide choices the assets share (defaults live in ``reclake.settings``).

    Attributes:
        source: the source ingested: ``synthetic`` or a real format of ``sources.formats``.
        source_path: a real source's file or folder (None for the synthetic source).
        source_options: keyword options of the real source's reader.
        feature_spec_path: the feature spec YAML; None: the source's packaged spec.
        state_dir: the source's local state folder (``Settings.source_state_dir``):
            what is kept on this machine, such as the working copy of an object-store
            lake's Evidently workspace.
        downloads_dir: where downloads of real sources are cached.
        data_docs_dir: local folder of the Great Expectations Data Docs site.
        data_docs_results_per_suite: results of each suite the site keeps in GX's store
            (``Settings.data_docs_results_per_suite``).
        ranker_config: the zoo model config of the ranker (a name in ``models/configs``
            or a YAML path), or ``auto``: the best of ``auto_candidates`` (``models.selection``).
        auto_candidates: the ranker configs ``auto`` tries, simplest first.
        auto_budget_s: seconds ``auto``'s candidates may take together.
        auto_sweep_trials: > 0: ``auto`` sweeps candidates with a ``search_space`` (``models.sweep``).
        training_window_days: newest days used per model; the newest is held out.
        drift_reference_days: days before a partition that form its drift reference.
        drift_days_per_run: how many of a run's newest days get a drift report (a
            backfill over a long history reports its newest days only).
        quarantine_max_share: the blocking check on ``raw_events`` fails above this share.
        campaigns_path: the ad campaigns YAML ``bidding_simulation`` simulates; None: none.
        engine: ``duckdb`` or ``spark``: what writes bronze and builds the marts.
        stream_training_rows: windows of more rows train streamed from Parquet
            (``Settings.stream_training_rows``).
        training_mixed_precision: ``auto``, ``on`` or ``off`` (``Settings.training_mixed_precision``).
    """

    source: str
    source_path: str | None = None
    source_options: dict[str, Any] = {}
    feature_spec_path: str | None = None
    state_dir: str
    downloads_dir: str
    data_docs_dir: str
    data_docs_results_per_suite: int = Settings.data_docs_results_per_suite
    ranker_config: str
    auto_candidates: list[str] = list(Settings.auto_candidates)
    auto_budget_s: float = Settings.auto_budget_s
    auto_sweep_trials: int = Settings.auto_sweep_trials
    training_window_days: int
    drift_reference_days: int
    drift_days_per_run: int
    quarantine_max_share: float
    campaigns_path: str | None = None
    engine: str = Settings.engine
    stream_training_rows: int = Settings.stream_training_rows
    training_mixed_precision: str = Settings.training_mixed_precision

    def mixed_precision(self) -> bool:
        """Whether the ranker trains in ``mixed_float16``: ``on``, or ``auto`` with a GPU visible."""
        if self.training_mixed_precision != "auto":
            return self.training_mixed_precision == "on"
        from models.training.distribution import gpus_visible

        return gpus_visible()

    def data_docs_site(self) -> DataDocsSite:
        """The Great Expectations Data Docs site the marts' checks record into."""
        return DataDocsSite(self.data_docs_dir, results_per_suite=self.data_docs_results_per_suite)

    def feature_spec(self) -> FeatureSpec:
        """The source's feature spec (what bronze keeps, what dbt computes, what models use)."""
        return load_feature_spec(self.feature_spec_path or self.source)

    @property
    def is_synthetic(self) -> bool:
        return self.source == SYNTHETIC_SOURCE


class SyntheticSourceResource(dg.ConfigurableResource):
    """The built-in generator's knobs; defaults live in ``reclake.settings.SyntheticSettings``."""

    start_date: str
    days: int
    events_per_day: int
    n_users: int
    n_items: int
    seed: int
    drift_from_day: int | None
    drift_kind: str

    @classmethod
    def from_settings(cls, settings: SyntheticSettings) -> "SyntheticSourceResource":
        return cls(**dataclasses.asdict(settings))

    def settings(self) -> SyntheticSettings:
        return SyntheticSettings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(SyntheticSettings)})
