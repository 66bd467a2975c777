"""Reclake's configuration: one config file and environment variables, in one place.

Precedence, lowest first: built-in defaults, the YAML file named by ``RECLAKE_CONFIG``
(or ``reclake.yaml`` in the project root when it exists), then ``RECLAKE_*``
environment variables. Every knob is documented in README ("Configuration").
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STATE_DIR = PROJECT_ROOT / ".reclake"


@dataclass(frozen=True)
class SyntheticSettings:
    """Knobs of the built-in synthetic log generator (see ``sources.synthetic``)."""

    start_date: str = "2024-03-01"
    days: int = 7
    events_per_day: int = 50_000
    n_users: int = 2_000
    n_items: int = 500
    seed: int = 7
    # Day index (0 = start_date) from which the drift applies; None disables drift.
    drift_from_day: int | None = None
    # "user_mix" shifts traffic towards one user segment; "item_popularity" reverses
    # which items are popular.
    drift_kind: str = "user_mix"


@dataclass(frozen=True)
class Settings:
    """Everything a Reclake deployment can configure.

    Attributes:
        lake_root: fsspec URL of the lake (a local folder, or ``s3://bucket/prefix``).
        state_dir: local folder for the DuckDB warehouse, Dagster's home and the
            BentoML model store.
        warehouse_path: the DuckDB file that dbt builds into.
        s3_endpoint_url: endpoint of an S3-compatible store; None means AWS's default.
        source: which landing source the pipeline ingests (``synthetic`` for now).
        partitions_start: first day of the daily partitions (``YYYY-MM-DD``).
        training_window_days: how many newest days train a model (the newest of them is
            held out for evaluation).
        drift_reference_days: how many days before a partition form its drift reference.
        quarantine_max_share: largest share of quarantined rows a day may have before the
            blocking check on ``raw_events`` fails.
        synthetic: the synthetic generator's knobs.
    """

    lake_root: str = str(DEFAULT_STATE_DIR / "lake")
    state_dir: str = str(DEFAULT_STATE_DIR)
    warehouse_path: str = str(DEFAULT_STATE_DIR / "warehouse.duckdb")
    s3_endpoint_url: str | None = None
    source: str = "synthetic"
    partitions_start: str = "2024-03-01"
    training_window_days: int = 7
    drift_reference_days: int = 7
    quarantine_max_share: float = 0.01
    synthetic: SyntheticSettings = field(default_factory=SyntheticSettings)

    @property
    def dagster_home(self) -> Path:
        return Path(self.state_dir) / "dagster_home"

    @property
    def bentoml_home(self) -> Path:
        return Path(self.state_dir) / "bentoml"

    @property
    def synthetic_start(self) -> dt.date:
        return dt.date.fromisoformat(self.synthetic.start_date)

    @property
    def current_model_tag_file(self) -> Path:
        """Where the ``bento_model`` asset pins the tag that ``make serve`` serves."""
        return Path(self.state_dir) / "current_model_tag"

    def child_process_environment(self) -> dict[str, str]:
        """Variables that tools run as child processes (dbt, BentoML) read these settings from."""
        env = {
            "RECLAKE_LAKE_ROOT": self.lake_root,
            "RECLAKE_WAREHOUSE_PATH": str(Path(self.warehouse_path).resolve()),
            "BENTOML_HOME": str(self.bentoml_home.resolve()),
            "TF_USE_LEGACY_KERAS": "1",
        }
        if self.s3_endpoint_url:
            env["RECLAKE_S3_ENDPOINT_URL"] = self.s3_endpoint_url
        return env


# Environment variable -> (section or None, field name). One place for the mapping.
_ENV_FIELDS: dict[str, tuple[str | None, str]] = {
    "RECLAKE_LAKE_ROOT": (None, "lake_root"),
    "RECLAKE_STATE_DIR": (None, "state_dir"),
    "RECLAKE_WAREHOUSE_PATH": (None, "warehouse_path"),
    "RECLAKE_S3_ENDPOINT_URL": (None, "s3_endpoint_url"),
    "RECLAKE_SOURCE": (None, "source"),
    "RECLAKE_PARTITIONS_START": (None, "partitions_start"),
    "RECLAKE_TRAINING_WINDOW_DAYS": (None, "training_window_days"),
    "RECLAKE_DRIFT_REFERENCE_DAYS": (None, "drift_reference_days"),
    "RECLAKE_QUARANTINE_MAX_SHARE": (None, "quarantine_max_share"),
    "RECLAKE_SYNTHETIC_START_DATE": ("synthetic", "start_date"),
    "RECLAKE_SYNTHETIC_DAYS": ("synthetic", "days"),
    "RECLAKE_SYNTHETIC_EVENTS_PER_DAY": ("synthetic", "events_per_day"),
    "RECLAKE_SYNTHETIC_USERS": ("synthetic", "n_users"),
    "RECLAKE_SYNTHETIC_ITEMS": ("synthetic", "n_items"),
    "RECLAKE_SYNTHETIC_SEED": ("synthetic", "seed"),
    "RECLAKE_SYNTHETIC_DRIFT_FROM_DAY": ("synthetic", "drift_from_day"),
    "RECLAKE_SYNTHETIC_DRIFT_KIND": ("synthetic", "drift_kind"),
}


def _coerce(cls: type, name: str, raw: Any) -> Any:
    """Convert a raw (string or YAML) value to the type of ``cls.name``."""
    annotation = str({f.name: f.type for f in dataclasses.fields(cls)}[name])
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in {"", "none", "null"}):
        if "None" in annotation:
            return None
        raise ValueError(f"setting {name!r} may not be empty")
    if annotation.startswith("int"):
        return int(raw)
    if annotation.startswith("float"):
        return float(raw)
    return str(raw)


def _build(cls: type, values: Mapping[str, Any], where: str) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where}: unknown setting(s) {unknown}; known: {sorted(known)}")
    return cls(**{k: _coerce(cls, k, v) for k, v in values.items()})


def config_file_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """The YAML config file in force, or None when there is none."""
    environ = os.environ if environ is None else environ
    if environ.get("RECLAKE_CONFIG"):
        path = Path(environ["RECLAKE_CONFIG"])
        if not path.is_file():
            raise FileNotFoundError(f"RECLAKE_CONFIG points at {path}, which does not exist")
        return path
    default = PROJECT_ROOT / "reclake.yaml"
    return default if default.is_file() else None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings from defaults, the config file and ``RECLAKE_*`` variables.

    Args:
        environ: the environment to read (``os.environ`` when None).

    Returns:
        A frozen ``Settings``. A state_dir override also moves the default lake and
        warehouse under it, unless those are set explicitly.

    Raises:
        ValueError: on an unknown key in the config file or a value of the wrong type.
    """
    environ = os.environ if environ is None else environ
    top: dict[str, Any] = {}
    synthetic: dict[str, Any] = {}
    path = config_file_path(environ)
    if path is not None:
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        synthetic.update(loaded.pop("synthetic", None) or {})
        top.update(loaded)
    for var, (section, name) in _ENV_FIELDS.items():
        if var in environ:
            (synthetic if section == "synthetic" else top)[name] = environ[var]
    if "state_dir" in top:
        state = Path(str(top["state_dir"])).expanduser().resolve()
        top["state_dir"] = str(state)
        top.setdefault("lake_root", str(state / "lake"))
        top.setdefault("warehouse_path", str(state / "warehouse.duckdb"))
    where = str(path) if path else "settings"
    top["synthetic"] = _build(SyntheticSettings, synthetic, f"{where} [synthetic]")
    nested = top.pop("synthetic")
    settings = _build(Settings, top, where)
    return dataclasses.replace(settings, synthetic=nested)
