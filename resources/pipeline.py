"""Pipeline-wide knobs as Dagster resources: which source, windows, thresholds."""

import dataclasses

import dagster as dg

from reclake.settings import SyntheticSettings


class PipelineResource(dg.ConfigurableResource):
    """Deployment-wide choices the assets share (defaults live in ``reclake.settings``).

    Attributes:
        source: the landing source ingested (``synthetic``; real sources come next).
        training_window_days: newest days used per model; the newest is held out.
        drift_reference_days: days before a partition that form its drift reference.
        quarantine_max_share: the blocking check on ``raw_events`` fails above this share.
    """

    source: str
    training_window_days: int
    drift_reference_days: int
    quarantine_max_share: float


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
