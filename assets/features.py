"""Feature tables: the dbt project (staging, facts, dimensions, training mart) as assets."""

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtProject, dbt_assets

from assets.partitions import day_range_backfill, describe_days, partition_days
from reclake.settings import PROJECT_ROOT
from resources.dbt import DBT_EXECUTABLE, DbtCliResource
from resources.lake import LakeResource
from resources.pipeline import PipelineResource
from resources.warehouse import WarehouseResource
from sources.spark_validation import LOCAL_MASTER, local_spark_environment

dbt_project = DbtProject(project_dir=PROJECT_ROOT / "dbt_project")

DBT_LAYERS = ("staging", "intermediate", "marts")
"""The dbt project's layers (folders under ``dbt_project/models``): one asset group each."""


def _manifest_is_stale() -> bool:
    """Whether the parsed manifest is missing or older than a file of the dbt project."""
    manifest = dbt_project.manifest_path
    if not manifest.exists():
        return True
    project = Path(dbt_project.project_dir)
    sources = [
        project / "dbt_project.yml",
        *(p for d in ("models", "macros", "tests") for p in (project / d).rglob("*")),
    ]
    return max(p.stat().st_mtime for p in sources if p.is_file()) > manifest.stat().st_mtime


def _parse_manifest() -> None:
    """``dbt parse`` into a private folder, then move the manifest into place atomically,
    so processes importing this module at the same time never read a half-written one."""
    dbt_project.manifest_path.parent.mkdir(parents=True, exist_ok=True)
    private = Path(tempfile.mkdtemp(prefix="parse-", dir=dbt_project.manifest_path.parent))
    DbtCliResource(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE).cli(
        ["parse", "--quiet"], target_path=private
    ).wait()
    os.replace(private / "manifest.json", dbt_project.manifest_path)
    shutil.rmtree(private, ignore_errors=True)


def prepare_dbt_manifest() -> bool:
    """Parse the dbt project when its manifest is missing or older than a project file.

    ``make run`` and ``make ui`` call this before Dagster starts, so the processes that
    import the code location (the webserver, the daemon, every run worker) find a fresh
    manifest and start without running dbt. Returns whether it parsed.
    """
    if not _manifest_is_stale():
        return False
    _parse_manifest()
    return True


# A prepared manifest is used as it is: no process pays a `dbt parse` unless the project
# changed since the last one (then the first importer parses, atomically).
prepare_dbt_manifest()


def describe_dbt_test(test: Mapping[str, Any]) -> str:
    """A sentence for a dbt data test's manifest node: what it asserts and what a failure does."""
    if test.get("description"):
        return test["description"]
    metadata = test.get("test_metadata") or {}
    kwargs = {k: v for k, v in (metadata.get("kwargs") or {}).items() if k not in ("model", "column_name")}
    if not metadata:
        what = f"dbt test `{test['name']}` ({test.get('original_file_path', 'singular test')})"
    else:
        what = f"dbt test `{metadata['name']}`"
        if test.get("column_name"):
            what += f" on column `{test['column_name']}`"
        if kwargs:
            what += ": " + "; ".join(f"{key} {value}" for key, value in kwargs.items())
    blocking = (test.get("config", {}).get("severity") or "error").lower() == "error"
    return what + (". Blocking: a failure stops the assets downstream." if blocking else ". A warning only.")


class ReclakeDbtTranslator(DagsterDbtTranslator):
    """Groups dbt models by their layer (``staging``, ``intermediate``, ``marts``: the
    folder under ``dbt_project/models``) and maps the bronze source to ``raw_events``."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source" and dbt_resource_props["name"] == "events":
            return dg.AssetKey("raw_events")
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn") or []
        return fqn[1] if len(fqn) > 2 and fqn[1] in DBT_LAYERS else super().get_group_name(dbt_resource_props)

    def get_asset_check_spec(
        self, asset_spec: dg.AssetSpec, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None
    ) -> dg.AssetCheckSpec | None:
        """dbt's own check spec, described from the test's definition when its YAML gives
        no ``description`` (``not_null`` on ``user_id``, ``expression_is_true``: ...)."""
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        if spec is None or spec.description:
            return spec
        return spec._replace(description=describe_dbt_test(manifest["nodes"][unique_id]))


def feature_tables(
    context: dg.AssetExecutionContext,
    dbt: DbtCliResource,
    lake: LakeResource,
    warehouse: WarehouseResource,
    pipeline: PipelineResource,
):
    """``dbt build`` over the run's partition window (data tests run as asset checks; the
    unit tests are CI's, see ``PRODUCTION_BUILD_FLAGS``).

    The source's feature spec goes to dbt as vars (its columns, ids, label and
    aggregate windows), so the same models serve every source. The run's partition
    window goes as environment variables, which the models read only when they run: the
    vars stay the same from one run to the next, so dbt parses the project in full only
    once per deployment (see ``_partial_parse_file``). Incremental models rebuild only the
    window (plus their lookback), so re-running a day replaces it without duplicates. With
    ``engine: spark`` dbt builds on Spark (target ``spark``) and the Spark tables become
    views of the DuckDB warehouse, which the later assets read.
    """
    warehouse.prepare()
    window = context.partition_time_window
    dbt_vars = {
        **pipeline.feature_spec().dbt_vars(),
        "lake_root": lake.root,
        # Locations go to dbt as vars (profiles.yml reads them): they are the same on every
        # run of a deployment, unlike the window, which goes as env vars (below).
        "warehouse_path": str(Path(warehouse.path).resolve()),
    }
    if lake.s3_endpoint_url:
        dbt_vars["s3_endpoint_url"] = lake.s3_endpoint_url
    if pipeline.engine == "spark":
        # dbt-spark's session runs in the dbt process dagster-dbt starts: the JVM ends with it.
        dbt_vars["spark_warehouse_dir"] = str(Path(warehouse.spark_warehouse_dir or "spark-warehouse").resolve())
        Path(dbt_vars["spark_warehouse_dir"]).mkdir(parents=True, exist_ok=True)
    started, built, tests, failed = time.perf_counter(), 0, 0, 0
    parsed = _partial_parse_file(warehouse, dbt, dbt_vars)
    target = build_folder(Path(dbt_project.project_dir, "target"), context.run_id)
    if parsed.exists():
        target.mkdir(parents=True)
        shutil.copy(parsed, target / PARTIAL_PARSE_FILE)
    dbt_environment = {
        "RECLAKE_DBT_MIN_DATE": window.start.date().isoformat(),
        "RECLAKE_DBT_MAX_DATE": window.end.date().isoformat(),
    }
    if pipeline.engine == "spark":  # dbt-spark's session starts its JVM in the dbt process
        dbt_environment.update(local_spark_environment(LOCAL_MASTER))
    with _environment(dbt_environment):  # dagster-dbt copies this process's environment when it starts dbt
        invocation = dbt.cli(
            ["build", *PRODUCTION_BUILD_FLAGS, "--vars", json.dumps(dbt_vars)], context=context, target_path=target
        )
    for event in invocation.stream():
        if isinstance(event, dg.Output | dg.AssetMaterialization):
            built += 1
        elif isinstance(event, dg.AssetCheckResult):
            tests, failed = tests + 1, failed + (not event.passed)
        yield event
    parse = _describe_parse(target, seeded=parsed.exists())
    _keep_partial_parse(target / PARTIAL_PARSE_FILE, parsed)
    prune_build_folders(target.parent)
    if pipeline.engine == "spark":
        # The later assets read the DuckDB file: its views read the Parquet Spark wrote.
        published = warehouse.publish_spark_tables()
        context.log.info(f"Spark tables readable through {warehouse.path}: {', '.join(published)}")
    # One line instead of dbt's command line (its vars are the whole feature spec).
    context.log.info(
        f"dbt build of {describe_days(partition_days(context))}: {built} models, "
        f"{tests} tests ({failed} failed) in {time.perf_counter() - started:.1f} s; {parse}"
    )


KEPT_BUILD_FOLDERS = 30
"""Each build writes its artifacts (manifest, run results, ``dbt.log``: about 4 MB) to a
folder of its own under ``dbt_project/target``; the newest this many are kept."""

BUILD_FOLDER = re.compile(r"[0-9a-f]{8}-[0-9a-f]{8}")
"""A build folder's name (``build_folder``): the run id's first 8 hex digits, then 8 random ones."""


def build_folder(targets: Path, run_id: str) -> Path:
    """A new folder under ``targets`` for one build's artifacts, named like ``BUILD_FOLDER``
    (random, so two builds of one run never share it); not created."""
    return targets / f"{run_id[:8]}-{uuid.uuid4().hex[:8]}"


PRODUCTION_BUILD_FLAGS = ("--exclude-resource-type", "unit_test")
"""The pipeline's builds leave out dbt's unit tests: their inputs are static fixtures, so
they test the SQL, which no run changes, and dbt advises running them in development and
CI only. ``make test`` runs them on DuckDB and on Spark (``tests/test_dbt_project.py``,
``tests/test_dbt_spark.py``); the data tests run on every build, as asset checks."""

PARTIAL_PARSE_FILE = "partial_parse.msgpack"
"""What dbt writes after parsing, and reads to parse again only the files that changed."""


def _partial_parse_file(warehouse: WarehouseResource, dbt: DbtCliResource, dbt_vars: Mapping[str, Any]) -> Path:
    """Where the feature build keeps dbt's parsed project for these vars and target: beside
    the warehouse, named by their digest. dbt itself checks the file against the project's
    files, the profile and its own version; any change of vars makes it parse in full, so
    deployments that share a folder keep one file each."""
    key = json.dumps({"vars": dbt_vars, "target": dbt.target}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(warehouse.path).resolve().parent / "dbt_partial_parse" / f"{digest}.msgpack"


def _keep_partial_parse(written: Path, kept: Path) -> None:
    """Replace ``kept`` by the parse dbt just ``written`` (atomically: runs of other
    deployments may read the folder meanwhile)."""
    if not written.exists():
        return
    kept.parent.mkdir(parents=True, exist_ok=True)
    private = kept.with_name(f".{kept.name}.{uuid.uuid4().hex[:8]}")
    shutil.copy(written, private)
    os.replace(private, kept)


def prune_build_folders(targets: Path, keep: int = KEPT_BUILD_FOLDERS, min_age_s: float = 86_400) -> list[Path]:
    """Delete the build folders in ``targets`` beyond the newest ``keep``, sparing any
    younger than ``min_age_s`` (a build of another run may still be writing there).

    Only folders named like ``BUILD_FOLDER`` are considered, never what a manual ``dbt
    build`` writes; a folder's time is its ``dbt.log``'s, else its own. Without this, a
    daily deployment piles up a folder per run, over a gigabyte a year.

    Returns:
        The deleted folders.
    """

    def written(folder: Path) -> float:
        log = folder / "dbt.log"
        return (log if log.exists() else folder).stat().st_mtime

    try:
        folders = [f for f in targets.iterdir() if f.is_dir() and BUILD_FOLDER.fullmatch(f.name)]
        folders.sort(key=written, reverse=True)
    except FileNotFoundError:
        return []
    cutoff = time.time() - min_age_s
    deleted = []
    for folder in folders[keep:]:
        try:
            if written(folder) < cutoff:
                shutil.rmtree(folder)
                deleted.append(folder)
        except FileNotFoundError:
            continue  # pruned by a run of another process meanwhile
    return deleted


def _describe_parse(target: Path, *, seeded: bool) -> str:
    """How dbt parsed the project for the build whose artifacts are in ``target``
    (from its ``dbt.log``): only the changed files of the parse it was ``seeded`` with,
    or in full, and why."""
    log = target / "dbt.log"
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    reason = re.search(r"Unable to do partial parsing because ([^\"\n]+)", text)
    if reason:
        return f"parsed the project in full: {reason.group(1).rstrip('. ')}"
    return "parsed only the files that changed" if seeded else "parsed the project in full: first build with these vars"


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set ``values`` in this process's environment for the block, then restore it."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def build_feature_tables_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """The dbt project's models as ``feature_tables`` assets on the source's daily ``partitions``."""
    return dbt_assets(
        manifest=dbt_project.manifest_path,
        project=dbt_project,
        dagster_dbt_translator=ReclakeDbtTranslator(),
        partitions_def=partitions,
        backfill_policy=day_range_backfill,
        # DuckDB allows a single writer: every run that writes the warehouse shares this pool.
        pool="duckdb_warehouse",
    )(feature_tables)
