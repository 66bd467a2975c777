"""Bronze validation on Spark: the same bronze contract as ``sources.engine_validation``,
as Spark SQL, with bronze Parquet written by Spark.

The rules are not restated here: the contract (``sources.bronze_schema.bronze_contract``,
generated from the feature spec) and the implied labels are turned into Spark SQL the way
``engine_validation`` turns them into DuckDB SQL, layer for layer:

1. decode each line (``is_valid_utf8``), drop blank lines, parse it as JSON
   (``try_parse_json`` into a VARIANT; ``schema_of_variant`` gives its JSON type);
2. extract every bronze column (``try_variant_get``), type it and name its type problem;
3. check each typed value against its column's rules (the first broken rule is the
   column's reason), and the implied labels;
4. keep the first of each ``event_id``; later ones are ``duplicate event_id``; an id that
   bronze holds on a nearby day (read by Spark from those days' bronze) is
   ``duplicate of <day>``.

The quarantine rows (file, line, field, reason, raw) come back to the driver (they are
few) and get the same Python detail for invalid UTF-8 and broken JSON as on DuckDB; the
bronze rows never do: Spark writes them as one Parquet file, which is moved to the
day's ``bronze/<source>/dt=<day>/part-0.parquet`` so that every reader of bronze (dbt,
the event id index, the monitors) finds it where it finds DuckDB's.

Landing files are read into lines by ``sources.landing.read_landing_day`` (gzip, cut
files, Parquet landing files, marker files: one reader for both engines) in the driver.

Run as a module (``python -m sources.spark_validation <request.json>``), it ingests a
run's days in one Spark session and writes the results as JSON: ``ingest_days_in_child``
starts it, so the JVM ends with the step and never stays in the Dagster run worker.

Known differences from DuckDB's JSON parser (both reject the line, for another reason or
not at all): Spark's parser accepts trailing text after a JSON value (``{"a": 1} x``) and
rejects duplicate keys, which DuckDB accepts (first key wins).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from reclake.feature_spec import FeatureSpec, load_feature_spec
from reclake.lake import Lake
from sources.bronze_schema import (
    NULL_LIKE,
    QUARANTINE_SCHEMA,
    QUOTE_CHARS,
    ColumnContract,
    ValueRule,
    bronze_contract,
    implied_labels,
)
from sources.engine_validation import (
    _INT64_LIMIT,
    _INTERNAL_COLUMNS,
    _INVALID_JSON,
    _INVALID_UTF8,
    _explain_unparsed,
)
from sources.event_ids import DUPLICATE_WINDOW_DAYS
from sources.ingest import IngestedDay, write_quarantine
from sources.landing import NoLandingDataError, read_landing_day

PROJECT_ROOT = Path(__file__).resolve().parents[1]
_WHITESPACE_CLASS = r"[ \\t\\n\\x0B\\f\\r]"
# Spark's VARIANT type name (schema_of_variant) -> the JSON type DuckDB names.
_KIND_NOUNS = {"ARRAY": "an array", "STRING": "a string", "NUMBER": "a number", "BOOLEAN": "a boolean", "VOID": "null"}
_SPARK_TYPES = {"string": "string", "timestamp": "timestamp_ntz", "int": "bigint", "float": "double"}


# The driver's heap. On a local master the driver runs the tasks too, and Spark's 1g
# default ran out validating 150,000 events a day (each JSON field a VARIANT in the
# cached layers); 4g validates 300,000 a day. The JVM takes it as it needs it.
DRIVER_MEMORY = "4g"


# The master of the bronze child and of dbt's ``spark`` target (dbt_project/profiles.yml):
# Spark in the process, on two task threads.
LOCAL_MASTER = "local[2]"

# A local master needs no network: its driver and its tasks share one JVM. Without these,
# Spark resolves the machine's hostname and binds to the address it finds: an offline
# laptop whose name does not resolve fails before the session starts
# (``UnknownHostException`` in spark-submit), and a name resolving to an unreachable
# address leaves the driver listening there.
LOOPBACK_ENVIRONMENT = {"SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOCAL_HOSTNAME": "localhost"}


def local_spark_environment(master: str, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The variables a Spark JVM of ``master`` should start with so that a local master
    stays on the loopback interface: ``LOOPBACK_ENVIRONMENT`` less any the user set in
    ``environ``; nothing for a cluster master."""
    if not master.startswith("local"):
        return {}
    return {name: value for name, value in LOOPBACK_ENVIRONMENT.items() if name not in environ}


def spark_master() -> str:
    """The bronze child's master: ``RECLAKE_SPARK_MASTER``, else ``LOCAL_MASTER``."""
    return os.environ.get("RECLAKE_SPARK_MASTER", LOCAL_MASTER)


def spark_driver_memory() -> str:
    """The bronze child's driver heap: ``RECLAKE_SPARK_DRIVER_MEMORY``, else ``DRIVER_MEMORY``."""
    return os.environ.get("RECLAKE_SPARK_DRIVER_MEMORY", DRIVER_MEMORY)


def spark_session(app_name: str = "reclake-bronze"):  # pragma: no cover - imported lazily by the child
    """A local Spark session configured like the dbt ``spark`` target: UTC wall-clock
    times, microsecond Parquet timestamps, few shuffle partitions; ``RECLAKE_SPARK_MASTER``
    and ``RECLAKE_SPARK_DRIVER_MEMORY`` override the master (``LOCAL_MASTER``) and the
    driver's heap (``DRIVER_MEMORY``). A local master runs on loopback only
    (``local_spark_environment``)."""
    from pyspark.sql import SparkSession

    os.environ.update(local_spark_environment(spark_master()))  # read when the JVM starts
    return (
        SparkSession.builder.appName(app_name)
        .master(spark_master())
        .config("spark.driver.memory", spark_driver_memory())
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )


# ---- SQL generation ------------------------------------------------------------------
def _literal(value: object) -> str:
    """A Spark SQL literal of a string or number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"
    return repr(float(value)) if isinstance(value, float) else repr(value)


def _ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _quote(x: str) -> str:
    """SQL of ``bronze_schema.quote``: the value cut to ``QUOTE_CHARS`` characters."""
    return (
        f"(case when char_length({x}) <= {QUOTE_CHARS} then {x} "
        f"else concat(left({x}, {QUOTE_CHARS}), '... (', cast(char_length({x}) as string), ' chars)') end)"
    )


DECODE_SQL = f"""
with raw as (
    select file_index, source_file, line_number, line, cast(line as string) as raw_text from landing_lines
),
text as (
    select file_index, source_file, line_number, line,
           case when is_valid_utf8(raw_text) then
               case when endswith(raw_text, char(13)) then rtrim(char(13), raw_text) else raw_text end
           end as text
    from raw
),
parsed as (select *, try_parse_json(text) as v from text)
select file_index, source_file, line_number, text, v,
       case when text is null then line end as bad_bytes,
       case when text is not null then v is not null end as is_json,
       case when v is null then null
            when schema_of_variant(v) like 'OBJECT%' then 'OBJECT'
            when schema_of_variant(v) like 'ARRAY%' then 'ARRAY'
            when schema_of_variant(v) in ('STRING', 'BOOLEAN', 'VOID') then schema_of_variant(v)
            else 'NUMBER' end as json_kind
from parsed
where text is null or v is not null or regexp_replace(text, '{_WHITESPACE_CLASS}', '') <> ''
"""


def _kind_sql(i: int) -> str:
    """SQL of column ``i``'s JSON type as the first character of its JSON text (as
    DuckDB's SQL reads it): ``"`` string, ``n`` null, ``t`` boolean, ``[`` / ``{``, else a number."""
    k = f"schema_of_variant(__j{i})"
    return (
        f"case when __j{i} is null then null when {k} = 'STRING' then '\"' when {k} = 'VOID' then 'n' "
        f"when {k} = 'BOOLEAN' then 't' when {k} like 'ARRAY%' then '[' when {k} like 'OBJECT%' then '{{' "
        f"else '0' end"
    )


def checked_sql(
    contract: tuple[ColumnContract, ...], implied: tuple[tuple[str, str, str], ...]
) -> list[tuple[str, str]]:
    """Steps 2 and 3 over the view ``decoded``: every JSON object's columns typed, with the
    list of problems (``field``, ``reason``), as ``engine_validation._checked_sql``."""
    clashes = sorted({c.name for c in contract} & _INTERNAL_COLUMNS)
    if clashes:
        raise ValueError(f"bronze columns {clashes} clash with the validation engine's own columns")
    numbered = list(enumerate(contract, start=1))
    keep = "file_index, source_file, line_number, text"
    fragments = ", ".join(
        f"try_variant_get(v, {_literal(chr(36) + '[' + _literal(c.name) + ']')}) as __j{i}" for i, c in numbered
    )
    kinds = ", ".join(
        f"{_kind_sql(i)} as __t{i}, try_variant_get(__j{i}, '$', 'string') as __s{i}" for i, _ in numbered
    )
    parsed = ", ".join(f"{_parsed_sql(c, i)} as __p{i}" for i, c in numbered)
    reasons = ", ".join(f"{_type_problem_sql(c, i)} as __why{i}" for i, c in numbered)
    typed = ", ".join(
        f"case when __why{i} is null then {_value_sql(c, i)} end as {_ident(c.name)}" for i, c in numbered
    )
    position = {c.name: i for i, c in numbered}
    problems = []
    for i, column in numbered:
        x = _ident(column.name)
        broken = [f"when {f} then {m}" for f, m in (_rule_sql(r, x, column.kind) for r in column.rules)]
        for label, needed, message in implied:
            if label == column.name and needed in position:
                y = _ident(needed)
                broken.append(
                    f"when __why{position[needed]} is null and coalesce({x}, 0) > coalesce({y}, 0) "
                    f"then {_literal(message)}"
                )
        rules = f"case when {x} is not null then case {' '.join(broken)} end end" if broken else "cast(null as string)"
        problems.append(f"coalesce(__why{i}, {rules}) as __r{i}")
    whys = ", ".join(f"__why{i}" for i, _ in numbered)
    named = ", ".join(f"named_struct('f', {_literal(c.name)}, 'r', __r{i})" for i, c in numbered)
    any_problem = " or ".join(f"__r{i} is not null" for i, _ in numbered)
    # One cached view per layer: Spark would otherwise inline every layer into the next
    # and repeat each expression wherever a later one uses it.
    return [
        ("fragments", f"select {keep}, {fragments} from decoded where json_kind = 'OBJECT'"),
        ("kinds", f"select *, {kinds} from fragments"),
        ("reasons", f"select *, {reasons} from (select *, {parsed} from kinds)"),
        ("typed", f"select {keep}, {whys}, {typed} from reasons"),
        (
            "checked",
            f"""select {keep}, {", ".join(_ident(c.name) for c in contract)},
       case when {any_problem} then filter(array({named}), p -> p.r is not null) end as problems
from (select *, {", ".join(problems)} from typed)""",
        ),
    ]


def _parsed_sql(column: ColumnContract, i: int) -> str:
    t, s = f"__t{i}", f"__s{i}"
    if column.kind == "timestamp":
        return f"case when {t} = '\"' then try_cast(try_cast({s} as timestamp) as timestamp_ntz) end"
    if column.kind == "string":
        return "cast(null as double)"
    return f"case when {t} not in ('t', '[', '{{') then try_cast({s} as double) end"


def _value_sql(column: ColumnContract, i: int) -> str:
    if column.kind == "string":
        return f"__s{i}"
    if column.kind == "int":
        return f"coalesce(try_cast(__s{i} as bigint), try_cast(__p{i} as bigint))"
    return f"__p{i}"


def _type_problem_sql(column: ColumnContract, i: int) -> str:
    j, t, s, p = f"__j{i}", f"__t{i}", f"__s{i}", f"__p{i}"
    missing = f"when {j} is null or {t} = 'n' then {_literal('missing or null') if column.required else 'null'}"
    shown = _quote(f"coalesce({s}, to_json({j}))")
    if column.kind == "string":
        checks = [
            f"when {t} <> '\"' then concat('expected a string, got ', {shown})",
            f"when char_length({s}) > {column.max_length} then "
            f"concat('longer than {column.max_length} characters: ', {_quote(s)})",
        ]
        if column.is_id:
            null_like = ", ".join(_literal(v) for v in NULL_LIKE)
            checks.append(
                f"when lower(regexp_replace({s}, '^{_WHITESPACE_CLASS}+|{_WHITESPACE_CLASS}+$', '')) in ({null_like}) "
                f"then concat('blank or null-like id: ', {_quote(f'concat(chr(39), {s}, chr(39))')})"
            )
    elif column.kind == "timestamp":
        checks = [f"when {p} is null then concat('not an ISO-8601 timestamp: ', {shown})"]
    else:
        noun = "an integer" if column.kind == "int" else "a number"
        checks = [
            f"when {p} is null then concat('not {noun}: ', {shown})",
            f"when isnan({p}) or abs({p}) = double('infinity') then concat('not a finite number: ', {shown})",
        ]
        if column.kind == "int":
            checks += [
                f"when {p} <> round({p}, 0) then concat('not an integer: ', {shown})",
                f"when abs({p}) >= {_INT64_LIMIT!r} then concat('outside the 64-bit integer range: ', {shown})",
            ]
    return f"case {missing} {' '.join(checks)} end"


def _rule_sql(rule: ValueRule, x: str, kind: str) -> tuple[str, str]:
    shown = _quote(f"cast({x} as string)")
    if rule.check == "not_empty":
        return f"char_length({x}) = 0", "'empty string'"
    if rule.check == "zero_or_one":
        return f"{x} not in (0, 1)", f"concat('not 0 or 1: ', {shown})"
    if rule.check == "min":
        return f"{x} < {float(rule.bound)!r}", f"concat('less than {rule.bound:g}: ', {shown})"
    if rule.check == "max":
        return f"{x} > {float(rule.bound)!r}", f"concat('more than {rule.bound:g}: ', {shown})"
    if rule.check == "one_of":
        allowed = ", ".join(_literal(str(v) if kind == "string" else v) for v in rule.bound)
        listed = _literal(f"not one of [{', '.join(str(v) for v in rule.bound)}]: ")
        return f"{x} not in ({allowed})", f"concat({listed}, {shown})"
    if rule.check == "in_day":
        start, end = rule.bound, rule.bound + dt.timedelta(days=1)
        fails = f"({x} < timestamp_ntz '{start.isoformat()}' or {x} >= timestamp_ntz '{end.isoformat()}')"
        return fails, f"concat('outside the day {start.isoformat()} (UTC): ', {shown})"
    raise ValueError(f"unknown bronze rule {rule.check!r}")


KEYS_SQL = """
with passing as (
    select *, row_number() over same_id as nth,
           first_value(source_file) over same_id as first_file,
           first_value(line_number) over same_id as first_line
    from checked where problems is null
    window same_id as (partition by event_id order by file_index, line_number)
),
nearby as (select event_id as nearby_id, min_by(other_day, distance) as other_day from nearby_ids group by event_id)
select passing.*, nearby.other_day
from passing left join nearby on nearby.nearby_id = passing.event_id
"""

QUARANTINE_SQL = f"""
select source_file, line_number, field, reason, raw, bad_bytes from (
    select source_file, line_number, '<line>' as field, '{_INVALID_UTF8}' as reason,
           cast(null as string) as raw, bad_bytes
    from decoded where text is null
    union all
    select source_file, line_number, '<line>', '{_INVALID_JSON}', text, null from decoded where not is_json
    union all
    select source_file, line_number, '<line>', concat('expected a JSON object, got ', case json_kind
        {" ".join(f"when '{k}' then '{v}'" for k, v in _KIND_NOUNS.items())} else lower(json_kind) end), text, null
    from decoded where json_kind <> 'OBJECT'
    union all
    select source_file, line_number,
           array_join(transform(problems, p -> p.f), ', '),
           array_join(transform(problems, p -> concat(p.f, ': ', p.r)), '; '), text, null
    from checked where problems is not null
    union all
    select source_file, line_number, 'event_id',
           concat('event_id: duplicate event_id ', {_quote("concat(chr(39), event_id, chr(39))")},
                  ' (first on line ', cast(first_line as string), ' of ', first_file, ')'), text, null
    from keyed where nth > 1
    union all
    select source_file, line_number, 'event_id', concat('event_id: duplicate of ', other_day), text, null
    from keyed where nth = 1 and other_day is not null
)
order by source_file, line_number
"""


# ---- running it ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SparkResult:
    """One day validated on Spark: ``bronze`` is a Spark DataFrame (not collected), the
    quarantine an Arrow table (``QUARANTINE_SCHEMA``), ``input_rows`` the non-blank lines."""

    bronze: Any
    quarantined: pa.Table
    input_rows: int


def validate_lines(spark, lines: pa.Table, spec: FeatureSpec, day: dt.date, nearby_ids=None) -> SparkResult:
    """Validate one day's landing lines (``engine_validation.LINES_SCHEMA``) on Spark.

    Args:
        spark: a Spark session (``spark_session()``).
        lines: the day's lines, as ``read_landing_day`` returns them.
        spec: the source's feature spec.
        day: the partition day.
        nearby_ids: a Spark DataFrame of ``(event_id, other_day, distance)`` held in
            bronze on nearby days; None: not checked.
    """
    contract = bronze_contract(spec, day)
    table = lines.cast(pa.schema([(f.name, pa.binary() if f.name == "line" else f.type) for f in lines.schema]))
    spark.createDataFrame(table).createOrReplaceTempView("landing_lines")
    if nearby_ids is None:
        nearby_ids = spark.createDataFrame([], "event_id string, other_day string, distance int")
    nearby_ids.createOrReplaceTempView("nearby_ids")
    decoded = spark.sql(DECODE_SQL).cache()
    input_rows = decoded.count()
    decoded.createOrReplaceTempView("decoded")
    layers = []
    for view, sql in checked_sql(contract, implied_labels(spec)):
        layer = spark.sql(sql).cache()
        layer.count()
        layer.createOrReplaceTempView(view)
        if layers:  # cached now, this layer no longer reads the one before: free it
            layers[-1].unpersist()
        layers.append(layer)
    keyed = spark.sql(KEYS_SQL).cache()
    keyed.createOrReplaceTempView("keyed")
    columns = ", ".join(f"cast({_ident(c.name)} as {_SPARK_TYPES[c.kind]}) as {_ident(c.name)}" for c in contract)
    bronze = spark.sql(
        f"select {columns} from keyed where nth = 1 and other_day is null order by file_index, line_number"
    )
    quarantined = spark.sql(QUARANTINE_SQL).toArrow()
    quarantined = quarantined.cast(
        pa.schema([(f.name, pa.binary() if f.name == "bad_bytes" else pa.string()) if f.name != "line_number"
                   else (f.name, pa.int64()) for f in quarantined.schema])
    )  # fmt: skip
    return SparkResult(bronze=bronze, quarantined=_explain_unparsed(quarantined), input_rows=int(input_rows))


def _nearby_ids(spark, lake: Lake, source: str, day: dt.date, window_days: int = DUPLICATE_WINDOW_DAYS):
    """The event ids bronze holds on the other days of ``day``'s window, read by Spark,
    each with its day and rank (nearest first, the earlier of two equally near), as
    ``sources.event_ids.EventIdIndex.nearby``."""
    from pyspark.sql import functions as F

    offsets = sorted(range(-window_days, window_days + 1), key=lambda o: (abs(o), o))
    frames = []
    for rank, offset in enumerate(o for o in offsets if o):
        other = day + dt.timedelta(days=offset)
        url = lake.bronze_file(source, other)
        if lake.exists(url):
            frames.append(
                spark.read.parquet(_spark_path(url))
                .select("event_id")
                .withColumn("other_day", F.lit(other.isoformat()))
                .withColumn("distance", F.lit(rank))
            )
    if not frames:
        return None
    union = frames[0]
    for frame in frames[1:]:
        union = union.unionByName(frame)
    return union


def _spark_path(url: str) -> str:
    return url.replace("s3://", "s3a://", 1)


def ingest_day(spark, lake: Lake, spec: FeatureSpec, day: dt.date, allow_empty: bool = False) -> IngestedDay:
    """``sources.ingest.ingest_landing_day`` on Spark: validate a landing day, write bronze
    (by Spark) and the quarantine, replacing earlier versions."""
    source = spec.source
    bronze_url, quarantine_url = lake.bronze_file(source, day), lake.quarantine_file(source, day)
    try:
        landing = read_landing_day(lake, source, day)
    except NoLandingDataError:
        if not allow_empty:
            raise
        lake.remove(bronze_url)
        return IngestedDay(day, [], 0, 0, 0, bronze_url, None, {})
    staging = Path(tempfile.mkdtemp(prefix=f"reclake-bronze-{day.isoformat()}-"))
    try:
        result = validate_lines(spark, landing.lines, spec, day, _nearby_ids(spark, lake, source, day))
        result.bronze.coalesce(1).write.mode("overwrite").option("compression", "zstd").parquet(str(staging / "out"))
        parts = sorted((staging / "out").glob("part-*.parquet"))
        import pyarrow.parquet as pq

        bronze_rows = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
        lake.remove(bronze_url)
        if bronze_rows:
            (part,) = parts
            lake.write_bytes(bronze_url, part.read_bytes())
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        spark.catalog.clearCache()  # the day's cached layers: a long history would otherwise pile them up
    quarantined = pa.concat_tables([landing.rejects.cast(QUARANTINE_SCHEMA), result.quarantined]).sort_by(
        [("source_file", "ascending"), ("line_number", "ascending")]
    )
    reasons = write_quarantine(lake, quarantined, quarantine_url)
    return IngestedDay(
        day=day,
        files=landing.files,
        input_rows=result.input_rows + landing.rejects.num_rows,
        bronze_rows=bronze_rows,
        quarantined_rows=quarantined.num_rows,
        bronze_url=bronze_url,
        quarantine_url=quarantine_url if quarantined.num_rows else None,
        reasons=reasons,
    )


def ingest_days_in_child(
    lake_root: str,
    s3_endpoint_url: str | None,
    feature_spec: str,
    days: Sequence[dt.date],
    allow_empty: bool,
    log: Callable[[str], None] = print,
) -> list[IngestedDay]:
    """Ingest ``days`` (in order) on Spark in a fresh Python process, so the JVM and its
    memory end with it.

    Args:
        lake_root: the lake root.
        s3_endpoint_url: the lake's S3 endpoint, if any.
        feature_spec: a feature spec YAML path or a packaged spec's name.
        days: the partition days.
        allow_empty: a day without landing files is empty instead of an error.
        log: called, while the child runs, with each line of its progress (the session's
            start, then each day's rows and seconds); Spark's own output is kept for
            the error.

    Raises:
        RuntimeError: the child failed; carries the end of its output.
    """
    with tempfile.TemporaryDirectory(prefix="reclake-spark-") as folder:
        request = Path(folder) / "request.json"
        result = Path(folder) / "result.json"
        request.write_text(
            json.dumps(
                {
                    "lake_root": lake_root,
                    "s3_endpoint_url": s3_endpoint_url,
                    "feature_spec": feature_spec,
                    "days": [d.isoformat() for d in days],
                    "allow_empty": allow_empty,
                    "result": str(result),
                }
            )
        )
        spark_output = Path(folder) / "spark.log"
        with spark_output.open("w") as errors:
            child = subprocess.Popen(
                [sys.executable, "-m", "sources.spark_validation", str(request)],
                cwd=PROJECT_ROOT,
                env={
                    **os.environ,
                    "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]),
                },
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
            )
            try:
                for line in child.stdout:
                    log(line.rstrip())
                returncode = child.wait()
            finally:
                if child.poll() is None:  # interrupted: the JVM must not outlive the step
                    child.kill()
                    child.wait()
        if returncode != 0 or not result.is_file():
            raise RuntimeError(f"bronze on Spark failed (exit {returncode}):\n{spark_output.read_text()[-8000:]}")
        return [
            IngestedDay(**{**row, "day": dt.date.fromisoformat(row["day"])}) for row in json.loads(result.read_text())
        ]


def _main(request_file: str) -> None:  # pragma: no cover - runs in the child
    request = json.loads(Path(request_file).read_text())
    lake = Lake.open(request["lake_root"], request["s3_endpoint_url"])
    spec = load_feature_spec(request["feature_spec"])
    started = time.perf_counter()
    spark = spark_session()
    spark.sparkContext.setLogLevel("ERROR")
    print(f"Spark session ({spark_master()}) started in {time.perf_counter() - started:.1f} s", flush=True)
    results = []
    try:
        for day in request["days"]:
            started = time.perf_counter()
            results.append(ingest_day(spark, lake, spec, dt.date.fromisoformat(day), request["allow_empty"]))
            done = results[-1]
            print(
                f"{day} on Spark: {done.input_rows} lines, {done.bronze_rows} to bronze, "
                f"{done.quarantined_rows} quarantined in {time.perf_counter() - started:.1f} s",
                flush=True,
            )
    finally:
        spark.stop()
    rows = [{**dataclasses.asdict(r), "day": r.day.isoformat()} for r in results]
    Path(request["result"]).write_text(json.dumps(rows))


if __name__ == "__main__":  # pragma: no cover
    _main(sys.argv[1])
