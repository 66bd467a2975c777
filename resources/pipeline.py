"""Pipeline-wide knobs as Dagster resources: which source, windows, thresholds."""


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

    def settings(self) -> SyntheticSettings:
        return SyntheticSettings(
            start_date=self.start_date,
            days=self.days,
            events_per_day=self.events_per_day,
            n_users=self.n_users,
            n_items=self.n_items,
            seed=self.seed,
            drift_from_day=self.drift_from_day,
            drift_kind=self.drift_kind,
        )
