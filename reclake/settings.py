"""Reclake's configuration: one config file and environment variables, in one place.

Precedence, lowest first: built-in defaults, the YAML file named by ``RECLAKE_CONFIG``
(or ``reclake.yaml`` in the project root when it exists), then ``RECLAKE_*``
environment variables. Every knob is documented in README ("Configuration").
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reclake.feature_spec import FeatureSpec, load_feature_spec

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STATE_DIR = PROJECT_ROOT / ".reclake"


RETRAIN_POLICIES = ("daily", "on_drift")
ENGINES = ("duckdb", "spark")
"""Engines that write bronze and build the marts (``engine``): DuckDB in the run worker,
or Spark (local pyspark in child processes: bronze by ``sources.spark_validation``, the
marts by dbt-spark, read back through DuckDB views over their Parquet)."""


@dataclass(frozen=True)
class SyntheticSettings:
    """Knobs of the built-in synthetic log generator (see ``sources.synthetic``)."""

    # Day 0 of the generator. ``load_settings`` fills it, when unset, with the demo
    # window's start (``demo_start``): the ``days`` days that end yesterday.
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
        lake_root: fsspec URL of the lake (a local folder, or ``s3://bucket/prefix``);
            default ``<state_dir>/<source>/lake``.
        state_dir: local folder for Dagster's home, the BentoML store and, per source
            (``<state_dir>/<source>/``), the lake, the DuckDB warehouse, the served
            model's tag and downloads; several sources share one state dir.
            BentoML model store.
        warehouse_path: the DuckDB file that dbt builds into; default
            ``<state_dir>/<source>/warehouse.duckdb``.
        s3_endpoint_url: endpoint of an S3-compatible store; None means AWS's default.
        source: which source the pipeline ingests: ``synthetic`` (the built-in
            generator) or a real format of ``sources.formats`` (``movielens``,
            ``criteo``, ``avazu``, ``amazon_reviews``, ``ipinyou``, ``multitask``).
        source_path: the real source's file or folder (local path or fsspec URL);
            MovieLens also takes ``download:100k`` / ``download:1m`` (official zip,
            checksum-verified, cached under ``state_dir``).
        source_options: keyword options of the source's reader (``sources.formats``),
            e.g. Criteo's ``start_date`` and ``rows_per_day``.
        feature_spec: path of the feature spec YAML; None: the packaged spec of the
            source (``reclake/feature_specs/<source>.yaml``).
        ranker_config: the zoo model config of the pipeline's ranker: a name in
            ``models/configs`` (``dcn_v2_stacked``, ``deepfm``, ``fm``, ``hashed_lr``, ...),
            a YAML path, or ``auto``: the best of ``auto_candidates`` on the validation
            day (``models.selection``).
        auto_candidates: the ranker configs ``auto`` tries, simplest first (a list in
            YAML, comma-separated in ``RECLAKE_AUTO_CANDIDATES``); those that do not fit
            the source (multi-task models without two labels) are reported, not trained.
        auto_budget_s: seconds ``auto``'s candidates may take together; a candidate that
            would not fit in what is left is skipped and reported as skipped.
        auto_sweep_trials: > 0: ``auto`` sweeps each candidate whose config has a
            ``search_space`` with at most this many Optuna trials (``models.sweep``).
        partitions_start: first day of the daily partitions (``YYYY-MM-DD``); for the
            synthetic source it defaults to the generator's first day.
        partitions_end: last day with data, for historical sources (``make run``
            materializes ``partitions_start .. partitions_end``); None: open-ended.
        training_window_days: how many newest days train a model (the newest of them is
            held out for evaluation).
        stream_training_rows: a training window of more rows than this is not loaded into
            memory: its training days are exported to Parquet and streamed
            (``models.inputs.stream.ParquetWindow``); the validation and test days stay in
            memory. 0 streams always.
        training_mixed_precision: ``auto`` (``mixed_float16`` when TensorFlow sees a GPU),
            ``on`` or ``off``: the precision the pipeline's ranker trains in.
        drift_reference_days: how many days before a partition form its drift reference.
        drift_days_per_run: how many of a run's newest days get a drift report (a
            backfill over a long history reports its newest days only).
        quarantine_max_share: largest share of quarantined rows a day may have before the
            blocking check on ``raw_events`` fails.
        data_docs_results_per_suite: validation results of each Great Expectations suite
            the Data Docs site keeps in GX's store and shows; older ones are archived
            (``monitoring.data_quality.DataDocsSite``), so a check costs the same after
            years of daily runs.
        reports_url: where ``make ui`` serves the lake's reports over HTTP
            (``monitoring.report_server``); the assets link their reports there.
        evidently_ui_url: where ``make reports`` serves Evidently's UI over the lake's
            drift workspace (``monitoring.evidently_ui``); ``drift_report`` links its
            project there.
        online_store_url: the online feature store ``online_features`` publishes to and
            the service reads (``serving.online_store``): ``redis://host:port/db`` for a
            Redis server, ``sqlite:///abs/path.sqlite`` or a path for the embedded store;
            None: the embedded ``<state_dir>/<source>/online_store.sqlite`` (the
            resolved value is ``online_store``).
        campaigns: the ad campaigns YAML the ``bidding_simulation`` asset simulates
            (``serving.bidding.load_campaigns``); None: ``configs/campaigns/<source>.yaml``
            when it exists (the resolved value is ``campaigns_file``).
        retrain_policy: when a new model is trained: ``daily`` (every landed day's run
            retrains, ``ingest_to_serve_job``) or ``on_drift`` (a landed day's run ingests
            and monitors, ``ingest_to_monitor_job``; ``drift_retrain_sensor`` retrains
            when a day crosses an alert threshold below). In both, a day that crosses one
            retrains if the newest model has not seen it.
        landing_sensor_interval_s: seconds between two evaluations of the landing sensor
            (how soon after a day lands its run is requested).
        drift_alert_share: share of monitored feature columns drifted from which a day's
            feature drift is an alert.
        calibration_alert_ece: the served model's expected calibration error (over
            score deciles) from which a day's calibration is an alert.
        calibration_alert_ratio: the largest ``|predicted / observed - 1|`` of a day's
            positive rate before it is an alert.
        prediction_drift_alert: normed Wasserstein distance of a day's served scores from
            the reference window's from which prediction drift is an alert.
        mlflow_tracking_uri: the MLflow tracking URI every training is logged to
            (``models.tracking``): a server (``http://host:port``), ``sqlite:///...`` or
            a folder; None: ``sqlite:///<state_dir>/mlflow/mlflow.db`` with artifacts in
            ``<state_dir>/mlflow/artifacts`` (the resolved value is ``mlflow_tracking``).
        mlflow_ui_url: where ``make mlflow`` serves MLflow's UI over that store; the
            training assets link their MLflow run there.
        engine: ``duckdb`` (default) or ``spark``: what writes bronze and builds the marts.
        spark_warehouse_dir: the Spark warehouse (marts as Parquet, Derby metastore) of
            ``engine: spark``; default ``<state_dir>/<source>/spark-warehouse``.
        synthetic: the synthetic generator's knobs.
    """

    lake_root: str = str(DEFAULT_STATE_DIR / "synthetic" / "lake")
    state_dir: str = str(DEFAULT_STATE_DIR)
    warehouse_path: str = str(DEFAULT_STATE_DIR / "synthetic" / "warehouse.duckdb")
    s3_endpoint_url: str | None = None
    source: str = "synthetic"
    source_path: str | None = None
    source_options: dict[str, Any] = field(default_factory=dict)
    feature_spec: str | None = None
    ranker_config: str = "dcn_v2_stacked"
    auto_candidates: tuple[str, ...] = ("hashed_lr", "fm", "deepfm", "dcn_v2_stacked", "esmm", "mmoe")
    auto_budget_s: float = 600.0
    auto_sweep_trials: int = 0
    partitions_start: str = "2024-03-01"
    partitions_end: str | None = None
    training_window_days: int = 7
    stream_training_rows: int = 2_000_000
    training_mixed_precision: str = "auto"
    drift_reference_days: int = 7
    drift_days_per_run: int = 14
    quarantine_max_share: float = 0.01
    data_docs_results_per_suite: int = 90
    reports_url: str = "http://127.0.0.1:3002"
    evidently_ui_url: str = "http://127.0.0.1:8002"
    online_store_url: str | None = None
    campaigns: str | None = None
    retrain_policy: str = "daily"
    landing_sensor_interval_s: int = 30
    drift_alert_share: float = 0.3
    calibration_alert_ece: float = 0.01
    calibration_alert_ratio: float = 0.15
    prediction_drift_alert: float = 0.1
    mlflow_tracking_uri: str | None = None
    mlflow_ui_url: str = "http://127.0.0.1:5001"
    engine: str = "duckdb"
    spark_warehouse_dir: str = str(DEFAULT_STATE_DIR / "synthetic" / "spark-warehouse")
    synthetic: SyntheticSettings = field(default_factory=SyntheticSettings)

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if self.retrain_policy not in RETRAIN_POLICIES:
            raise ValueError(f"retrain_policy must be one of {RETRAIN_POLICIES}, got {self.retrain_policy!r}")
        if self.landing_sensor_interval_s < 1:
            raise ValueError(f"landing_sensor_interval_s must be at least 1, got {self.landing_sensor_interval_s}")
        if self.auto_budget_s < 0 or self.auto_sweep_trials < 0:
            raise ValueError(
                f"auto_budget_s and auto_sweep_trials must be >= 0, got {self.auto_budget_s}, {self.auto_sweep_trials}"
            )
        if self.data_docs_results_per_suite < 1:
            raise ValueError(f"data_docs_results_per_suite must be at least 1, got {self.data_docs_results_per_suite}")
        if self.stream_training_rows < 0:
            raise ValueError(f"stream_training_rows must be >= 0, got {self.stream_training_rows}")
        if self.training_mixed_precision not in ("auto", "on", "off"):
            raise ValueError(f"training_mixed_precision must be auto, on or off, got {self.training_mixed_precision!r}")
        if not self.auto_candidates:
            raise ValueError("auto_candidates must name at least one ranker config")

    @property
    def dagster_home(self) -> Path:
        return Path(self.state_dir) / "dagster_home"

    @property
    def bentoml_home(self) -> Path:
        return Path(self.state_dir) / "bentoml"

    @property
    def mlflow_dir(self) -> Path:
        """The default MLflow store's folder: ``mlflow.db`` and ``artifacts/``."""
        return Path(self.state_dir).resolve() / "mlflow"

    @property
    def mlflow_tracking(self) -> str:
        """The MLflow tracking URI: ``mlflow_tracking_uri``, else the SQLite store in ``mlflow_dir``."""
        # SQLAlchemy's absolute-path form: four slashes.
        return self.mlflow_tracking_uri or "sqlite:///" + str(self.mlflow_dir / "mlflow.db")

    @property
    def mlflow_tracking_is_server(self) -> bool:
        """Whether the tracking URI names an MLflow server (which keeps its own artifacts)."""
        return self.mlflow_tracking.startswith(("http://", "https://", "databricks"))

    def run_days(self) -> list[dt.date]:
        """The days ``make run`` materializes: the generator's days for the synthetic
        source, ``partitions_start .. partitions_end`` for a real one.

        Raises:
            ValueError: a real source without ``partitions_end``.
        """
        if self.source == "synthetic":
            return [self.synthetic_start + dt.timedelta(days=i) for i in range(self.synthetic.days)]
        if self.partitions_end is None:
            raise ValueError(
                f"source {self.source!r}: set partitions_end (the last day with data) to run it; "
                "see configs/ for one config per source"
            )
        start, end = dt.date.fromisoformat(self.partitions_start), dt.date.fromisoformat(self.partitions_end)
        return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]

    @property
    def synthetic_start(self) -> dt.date:
        return dt.date.fromisoformat(self.synthetic.start_date)

    @property
    def bento_model_name(self) -> str:
        """The BentoML model name the source's versions are registered under (one
        champion/challenger history per source)."""
        return f"reclake_{self.source}"

    @property
    def source_state_dir(self) -> Path:
        """The source's own folder in the state dir."""
        return Path(self.state_dir) / self.source

    @property
    def online_store(self) -> str:
        """The online store's URL: ``online_store_url``, else the source's embedded store
        ``sqlite:///<state_dir>/<source>/online_store.sqlite``."""
        if self.online_store_url:
            return self.online_store_url
        return "sqlite:///" + str((self.source_state_dir / "online_store.sqlite").resolve()).lstrip("/")

    @property
    def data_docs_dir(self) -> Path:
        """The source's Great Expectations project and Data Docs site (a local folder)."""
        return self.source_state_dir / "data_docs"

    @property
    def current_model_tag_file(self) -> Path:
        """Where the ``bento_model`` asset pins the tag that ``make serve`` serves."""
        return self.source_state_dir / "current_model_tag"

    @property
    def campaigns_file(self) -> str | None:
        """The campaigns YAML: ``campaigns``, else the packaged
        ``configs/campaigns/<source>.yaml`` when there is one, else None."""
        if self.campaigns:
            return self.campaigns
        packaged = PROJECT_ROOT / "configs" / "campaigns" / f"{self.source}.yaml"
        return str(packaged) if packaged.is_file() else None

    def load_feature_spec(self) -> FeatureSpec:
        """The source's feature spec: ``feature_spec`` when set, else the packaged one."""
        return load_feature_spec(self.feature_spec or self.source)


# Settings holding local paths (or URLs); relative paths in a config file are relative to it.
_PATH_SETTINGS = (
    "state_dir",
    "lake_root",
    "warehouse_path",
    "spark_warehouse_dir",
    "source_path",
    "feature_spec",
    "online_store_url",
    "campaigns",
)

# Environment variable -> (section or None, field name). One place for the mapping.
_ENV_FIELDS: dict[str, tuple[str | None, str]] = {
    "RECLAKE_LAKE_ROOT": (None, "lake_root"),
    "RECLAKE_STATE_DIR": (None, "state_dir"),
    "RECLAKE_WAREHOUSE_PATH": (None, "warehouse_path"),
    "RECLAKE_ENGINE": (None, "engine"),
    "RECLAKE_SPARK_WAREHOUSE_DIR": (None, "spark_warehouse_dir"),
    "RECLAKE_S3_ENDPOINT_URL": (None, "s3_endpoint_url"),
    "RECLAKE_SOURCE": (None, "source"),
    "RECLAKE_SOURCE_PATH": (None, "source_path"),
    "RECLAKE_SOURCE_OPTIONS": (None, "source_options"),
    "RECLAKE_FEATURE_SPEC": (None, "feature_spec"),
    "RECLAKE_RANKER_CONFIG": (None, "ranker_config"),
    "RECLAKE_AUTO_CANDIDATES": (None, "auto_candidates"),
    "RECLAKE_AUTO_BUDGET_S": (None, "auto_budget_s"),
    "RECLAKE_AUTO_SWEEP_TRIALS": (None, "auto_sweep_trials"),
    "RECLAKE_PARTITIONS_START": (None, "partitions_start"),
    "RECLAKE_PARTITIONS_END": (None, "partitions_end"),
    "RECLAKE_TRAINING_WINDOW_DAYS": (None, "training_window_days"),
    "RECLAKE_STREAM_TRAINING_ROWS": (None, "stream_training_rows"),
    "RECLAKE_TRAINING_MIXED_PRECISION": (None, "training_mixed_precision"),
    "RECLAKE_DRIFT_REFERENCE_DAYS": (None, "drift_reference_days"),
    "RECLAKE_DRIFT_DAYS_PER_RUN": (None, "drift_days_per_run"),
    "RECLAKE_DATA_DOCS_RESULTS_PER_SUITE": (None, "data_docs_results_per_suite"),
    "RECLAKE_QUARANTINE_MAX_SHARE": (None, "quarantine_max_share"),
    "RECLAKE_REPORTS_URL": (None, "reports_url"),
    "RECLAKE_EVIDENTLY_UI_URL": (None, "evidently_ui_url"),
    "RECLAKE_ONLINE_STORE_URL": (None, "online_store_url"),
    "RECLAKE_CAMPAIGNS": (None, "campaigns"),
    "RECLAKE_MLFLOW_TRACKING_URI": (None, "mlflow_tracking_uri"),
    "RECLAKE_MLFLOW_UI_URL": (None, "mlflow_ui_url"),
    "RECLAKE_RETRAIN_POLICY": (None, "retrain_policy"),
    "RECLAKE_LANDING_SENSOR_INTERVAL_S": (None, "landing_sensor_interval_s"),
    "RECLAKE_DRIFT_ALERT_SHARE": (None, "drift_alert_share"),
    "RECLAKE_CALIBRATION_ALERT_ECE": (None, "calibration_alert_ece"),
    "RECLAKE_CALIBRATION_ALERT_RATIO": (None, "calibration_alert_ratio"),
    "RECLAKE_PREDICTION_DRIFT_ALERT": (None, "prediction_drift_alert"),
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
    if annotation.startswith("dict"):
        value = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(value, dict):
            raise ValueError(f"setting {name!r} must be a mapping (JSON in an environment variable), got {raw!r}")
        return value
    if annotation.startswith("tuple"):
        values = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(values, list | tuple) or not all(str(v).strip() for v in values):
            raise ValueError(f"setting {name!r} must be a list of names (comma-separated in a variable), got {raw!r}")
        return tuple(str(v).strip() for v in values)
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


# Where the synthetic demo's first day is recorded (in the source's state folder), so
# that its days keep their data and its partitions their start as the calendar moves on.
DEMO_START_FILE = "demo_start"


def demo_start(source_dir: Path, days: int, today: dt.date | None = None) -> str:
    """First day of the synthetic demo: the recorded one (``record_demo_start``), else
    the first of the ``days`` days that end yesterday (UTC), so that a new demo's daily
    partitions are all materialized by ``make run`` and tomorrow's day is the next one."""
    recorded = source_dir / DEMO_START_FILE
    if recorded.is_file():
        return recorded.read_text().strip()
    today = today or dt.datetime.now(dt.UTC).date()
    return (today - dt.timedelta(days=days)).isoformat()


def record_demo_start(settings: Settings) -> Path | None:
    """Record the synthetic source's first day in its state folder unless one is already
    recorded (``make run`` and ``make ui`` do, before the first run). Returns the file,
    or None for a real source."""
    if settings.source != "synthetic":
        return None
    recorded = settings.source_state_dir / DEMO_START_FILE
    if not recorded.is_file():
        recorded.parent.mkdir(parents=True, exist_ok=True)
        recorded.write_text(settings.synthetic.start_date + "\n")
    return recorded


def load_settings(environ: Mapping[str, str] | None = None, today: dt.date | None = None) -> Settings:
    """Read settings from defaults, the config file and ``RECLAKE_*`` variables.

    Args:
        environ: the environment to read (``os.environ`` when None).
        today: the calendar day the synthetic demo's window ends before (UTC today when
            None); only read when no start day is set or recorded (``demo_start``).

    Returns:
        A frozen ``Settings``. The lake and the warehouse default to the source's folder
        in the state dir (``<state_dir>/<source>/``) unless set explicitly; the synthetic
        source's ``start_date`` to ``demo_start`` and ``partitions_start`` to it.

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
        if isinstance(loaded.get("source_options"), dict):
            # YAML reads an unquoted 2014-01-01 as a date; options travel as config (JSON).
            loaded["source_options"] = {
                key: value.isoformat() if isinstance(value, dt.date) else value
                for key, value in loaded["source_options"].items()
            }
        for key in _PATH_SETTINGS:
            value = loaded.get(key)
            if isinstance(value, str) and "://" not in value:
                # A relative path in a config file is relative to that file.
                loaded[key] = str((path.parent / Path(value).expanduser()).resolve())
        top.update(loaded)
    for var, (section, name) in _ENV_FIELDS.items():
        if var in environ:
            (synthetic if section == "synthetic" else top)[name] = environ[var]
    state = Path(str(top.get("state_dir", DEFAULT_STATE_DIR))).expanduser().resolve()
    top["state_dir"] = str(state)
    source_dir = state / str(top.get("source", Settings.source))
    top.setdefault("lake_root", str(source_dir / "lake"))
    top.setdefault("warehouse_path", str(source_dir / "warehouse.duckdb"))
    top.setdefault("spark_warehouse_dir", str(source_dir / "spark-warehouse"))
    if str(top.get("source", Settings.source)) == "synthetic":
        if "start_date" not in synthetic:
            days = _coerce(SyntheticSettings, "days", synthetic.get("days", SyntheticSettings.days))
            synthetic["start_date"] = demo_start(source_dir, days, today)
        top.setdefault("partitions_start", synthetic["start_date"])

    where = str(path) if path else "settings"
    top["synthetic"] = _build(SyntheticSettings, synthetic, f"{where} [synthetic]")
    nested = top.pop("synthetic")
    settings = _build(Settings, top, where)
    return dataclasses.replace(settings, synthetic=nested)
