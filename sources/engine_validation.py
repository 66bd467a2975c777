"""Bronze validation in DuckDB: a landing day's lines in, typed bronze rows and
quarantined rows out, with no Python per row.

The SQL is generated from the bronze contract (``sources.bronze_schema.bronze_contract``,
itself generated from the feature spec). One pass over the lines:

1. decode each line as UTF-8, drop blank lines, parse it as JSON (a line that is not
   UTF-8, not JSON or not a JSON object is rejected on ``<line>``);
2. extract every bronze column from the object and type it: strings must be JSON
   strings, numbers finite (integers whole and within 64 bits), timestamps ISO-8601;
   a missing value rejects the row only in a required column;
3. check each typed value against its column's rules (the first broken rule is the
   column's reason), and the implied labels;
4. among rows that pass, the first of each ``event_id`` is kept and later ones are
   ``duplicate event_id``; an id that bronze holds on a nearby day is ``duplicate of <day>``.

A rejected row names every failing field (``field``: ``a, b``) with a reason each
(``reason``: ``a: why; b: why``). Only the reasons of rejected lines that need Python
(the byte offset of invalid UTF-8, the parser's message for broken JSON) are filled in
Python, for those lines only.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from reclake.feature_spec import FeatureSpec
from sources.bronze_schema import (
    LINE_NUMBER,
    NULL_LIKE,
    QUARANTINE_COLUMNS,
    QUARANTINE_SCHEMA,
    QUOTE_CHARS,
    RAW,
    SOURCE_FILE,
    ColumnContract,
    ValidatedEvents,
    ValueRule,
    bronze_arrow_schema,
    bronze_contract,
    implied_labels,
)

LINES_SCHEMA = pa.schema(
    [("file_index", pa.int32()), ("source_file", pa.string()), ("line_number", pa.int64()), ("line", pa.large_binary())]
)
"""What the engine reads: each landing line as bytes (without its ``\\n``), its file
(``file_index`` orders files as read) and its 1-based line number."""

NEARBY_IDS_SCHEMA = pa.schema([("other_day", pa.string()), ("distance", pa.int32()), ("id_hash", pa.uint64())])
"""Event ids bronze holds on nearby days: DuckDB ``hash(event_id)``, the day holding
it and its rank (lower: nearer; the nearest day is named)."""

# Reasons whose detail is filled in Python, for the rejected lines only.
_INVALID_UTF8, _INVALID_JSON = "invalid UTF-8", "invalid JSON"
_WHITESPACE = "' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13)"
_JSON_KINDS = {"ARRAY": "an array", "VARCHAR": "a string", "BIGINT": "a number", "UBIGINT": "a number",
               "DOUBLE": "a number", "BOOLEAN": "a boolean", "NULL": "null"}  # fmt: skip
_INT64_LIMIT = 2.0**63
# Columns the engine's SQL keeps beside the bronze columns.
_INTERNAL_COLUMNS = frozenset(
    {
        "file_index",
        "source_file",
        "line_number",
        "text",
        "v",
        "problems",
        "nth",
        "order_key",
        "first_file",
        "first_line",
        "other_day",
    }
)


def connect(memory_limit: str | None = None, spill_dir: str | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection for validation: timestamps in UTC.

    Args:
        memory_limit: DuckDB's ``memory_limit`` (e.g. ``"1GB"``); None: DuckDB's default
            (80% of RAM).
        spill_dir: where DuckDB writes what does not fit under the limit.
    """
    connection = duckdb.connect()
    connection.execute("set TimeZone = 'UTC'")
    if memory_limit is not None:
        connection.execute(f"set memory_limit = {_literal(memory_limit)}")
        # Every result is ordered explicitly: DuckDB need not hold rows to keep their order.
        connection.execute("set preserve_insertion_order = false")
    if spill_dir is not None:
        connection.execute(f"set temp_directory = {_literal(spill_dir)}")
    connection.execute(
        f"create or replace temp macro quote_value(x) as "
        f"case when length(x) <= {QUOTE_CHARS} then x "
        f"else left(x, {QUOTE_CHARS}) || '... (' || length(x) || ' chars)' end"
    )
    return connection


@dataclass(frozen=True)
class EngineResult:
    """What validating a day's lines produced.

    Attributes:
        bronze: the good rows, typed (``bronze_arrow_schema(spec)``), in file and line order.
        quarantined: the rejected lines (``QUARANTINE_SCHEMA``), by file and line.
        input_rows: the non-blank lines read; ``== len(bronze) + len(quarantined)``.
    """

    bronze: pa.Table
    quarantined: pa.Table
    input_rows: int


def validate_lines(
    connection: duckdb.DuckDBPyConnection,
    lines: pa.Table,
    spec: FeatureSpec,
    day: dt.date,
    nearby_ids: pa.Table | None = None,
) -> EngineResult:
    """Validate one source's landing lines for one partition day.

    Args:
        connection: from ``connect()``.
        lines: ``LINES_SCHEMA``; JSON text, one record per line.
        spec: the source's feature spec: bronze columns and their rules.
        day: the partition day; every ``event_ts`` must fall inside it.
        nearby_ids: ``NEARBY_IDS_SCHEMA``; ids already in bronze on other days. None:
            not checked.

    Returns:
        ``EngineResult``: bronze rows and quarantined rows.
    """
    connection.execute("drop table if exists landing_lines")
    stage_lines(connection, lines)
    return validate_staged_lines(connection, spec, day, nearby_ids)


def stage_lines(connection: duckdb.DuckDBPyConnection, lines: pa.Table) -> None:
    """Append ``lines`` (``LINES_SCHEMA``) to the temporary table ``landing_lines`` that
    ``validate_staged_lines`` reads (created when absent). DuckDB then holds them, under
    its memory limit and spilled to disk above it."""
    connection.execute(
        "create temp table if not exists landing_lines "
        "(file_index integer, source_file varchar, line_number bigint, line blob)"
    )
    connection.register("staged_file", lines.cast(LINES_SCHEMA))
    try:
        connection.execute("insert into landing_lines select * from staged_file")
    finally:
        connection.unregister("staged_file")


def validate_staged_lines(
    connection: duckdb.DuckDBPyConnection,
    spec: FeatureSpec,
    day: dt.date,
    nearby_ids: pa.Table | None = None,
) -> EngineResult:
    """``validate_lines`` of the lines staged in ``connection`` by ``stage_lines`` (the
    table is dropped once decoded): ``check_staged_lines`` then ``finish_checked_lines``."""
    check_staged_lines(connection, spec, day)
    return finish_checked_lines(connection, spec, nearby_ids)


def check_staged_lines(connection: duckdb.DuckDBPyConnection, spec: FeatureSpec, day: dt.date) -> None:
    """The part of validation that reads only the day's own lines, the costly part:
    decode, parse and type-check the lines staged by ``stage_lines`` into the temporary
    tables ``decoded`` and ``checked`` (``landing_lines`` is dropped). Days need nothing
    from each other for it, so several can run it at once, each on its connection;
    ``finish_checked_lines`` then settles duplicates and returns the result."""
    try:
        connection.execute(_DECODE_SQL)
        connection.execute("drop table landing_lines")  # decoded holds what is still needed
        connection.execute(_checked_sql(bronze_contract(spec, day), implied_labels(spec)))
    except BaseException:
        _drop_validation_tables(connection)
        raise


def finish_checked_lines(
    connection: duckdb.DuckDBPyConnection, spec: FeatureSpec, nearby_ids: pa.Table | None = None
) -> EngineResult:
    """After ``check_staged_lines``: duplicate ids within the day and against the
    ``nearby_ids`` of other days (``NEARBY_IDS_SCHEMA``; None: not checked), then the
    bronze rows and the quarantine. Drops the temporary tables."""
    connection.register("nearby_ids", nearby_ids if nearby_ids is not None else NEARBY_IDS_SCHEMA.empty_table())
    try:
        connection.execute(_KEYS_SQL)
        columns = ", ".join(_ident(name) for name in bronze_arrow_schema(spec).names)
        bronze = connection.sql(
            f"select {columns} from checked anti join keyed using (file_index, line_number) "
            "where problems is null order by file_index, line_number"
        ).to_arrow_table()
        quarantined = connection.sql(_QUARANTINE_SQL).to_arrow_table()
        (input_rows,) = connection.execute("select count(*) from decoded").fetchone()
    finally:
        _drop_validation_tables(connection)
        connection.unregister("nearby_ids")
    return EngineResult(
        bronze=bronze.cast(bronze_arrow_schema(spec)),
        quarantined=_explain_unparsed(quarantined),
        input_rows=int(input_rows),
    )


def _drop_validation_tables(connection: duckdb.DuckDBPyConnection) -> None:
    for name in ("keyed", "checked", "decoded", "landing_lines"):
        connection.execute(f"drop table if exists {name}")


# 1. Decode, drop blank lines, parse.
_DECODE_SQL = f"""
create or replace temp table decoded as
with decoded as (select file_index, source_file, line_number, line, try(decode(line)) as text from landing_lines),
text as (
    select file_index, source_file, line_number, line,
           case when ends_with(text, chr(13)) then rtrim(text, chr(13)) else text end as text
    from decoded
),
parsed as (select *, case when text is not null then json_valid(text) end as is_json from text)
select file_index, source_file, line_number, text,
       case when text is null then line end as bad_bytes,
       is_json,
       case when is_json then case when starts_with(text, '{{') then 'OBJECT' else json_type(text) end end as json_kind
from parsed
where text is null or is_json or trim(text, {_WHITESPACE}) <> ''  -- JSON is never blank
"""


def _checked_sql(contract: tuple[ColumnContract, ...], implied: tuple[tuple[str, str, str], ...]) -> str:
    """2 and 3: every JSON object's columns typed, each with its reason (or null).

    Layers, each computing a thing once per value: ``fragments`` (column ``i``'s JSON
    fragment ``__j<i>``, its first character ``__t<i>``, which says its JSON type: ``"``
    a string, ``n`` null, ``t``/``f`` a boolean, ``[``/``{`` an array or object, else a
    number; and its text ``__s<i>``), ``parsed`` (``__p<i>``: the text as a number or
    timestamp), ``reasons`` (``__why<i>``: the type problem), ``typed`` (the bronze
    columns), then the value rules and the list of problems.
    """
    clashes = sorted({c.name for c in contract} & _INTERNAL_COLUMNS)
    if clashes:
        raise ValueError(f"bronze columns {clashes} clash with the validation engine's own columns")
    numbered = list(enumerate(contract, start=1))
    paths = ", ".join(_literal(f'$."{c.name}"') for c in contract)
    fragments = ", ".join(f"v[{i}] as __j{i}, left(v[{i}], 1) as __t{i}, v[{i}] ->> '$' as __s{i}" for i, _ in numbered)
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
        rules = f"case when {x} is not null then case {' '.join(broken)} end end" if broken else "null"
        problems.append(f"coalesce(__why{i}, {rules}) as __r{i}")
    keep = "file_index, source_file, line_number, text"
    whys = ", ".join(f"__why{i}" for i, _ in numbered)
    named = ", ".join(f"{{'f': {_literal(c.name)}, 'r': __r{i}}}" for i, c in numbered)
    any_problem = " or ".join(f"__r{i} is not null" for i, _ in numbered)
    return f"""
create or replace temp table checked as
with objects as (select {keep}, json_extract(text, [{paths}]) as v from decoded where json_kind = 'OBJECT'),
fragments as (select {keep}, {fragments} from objects),
parsed as (select *, {parsed} from fragments),
reasons as (select *, {reasons} from parsed),
typed as (select {keep}, {whys}, {typed} from reasons),
ruled as (select *, {", ".join(problems)} from typed)
select {keep}, {", ".join(_ident(c.name) for c in contract)},
       case when {any_problem} then list_filter([{named}], lambda p: p.r is not null) end as problems
from ruled
"""


def _parsed_sql(column: ColumnContract, i: int) -> str:
    """SQL of column ``i``'s text as its kind: a number (from a JSON number or a string
    holding one), a UTC timestamp (from an ISO-8601 string), or null for strings."""
    t, s = f"__t{i}", f"__s{i}"
    if column.kind == "timestamp":
        return f"case when {t} = '\"' then try_cast(try_cast({s} as timestamptz) as timestamp) end"
    if column.kind == "string":
        return "null"
    # a JSON number, or a string holding one
    return f"case when {t} not in ('t', 'f', '[', '{{') then try_cast({s} as double) end"


def _value_sql(column: ColumnContract, i: int) -> str:
    """SQL of column ``i``'s bronze value (when it has no type problem)."""
    if column.kind == "string":
        return f"__s{i}"
    if column.kind == "int":  # exact from its text when that is an integer, else the whole double
        return f"coalesce(try_cast(__s{i} as bigint), cast(__p{i} as bigint))"
    return f"__p{i}"


def _type_problem_sql(column: ColumnContract, i: int) -> str:
    """SQL of what is wrong with column ``i``'s value as its kind, or null."""
    j, t, s, p = f"__j{i}", f"__t{i}", f"__s{i}", f"__p{i}"
    missing = f"when {j} is null or {t} = 'n' then {_literal('missing or null') if column.required else 'null'}"
    shown = f"quote_value(coalesce({s}, {j}::varchar))"
    if column.kind == "string":
        checks = [
            f"when {t} <> '\"' then 'expected a string, got ' || {shown}",
            f"when length({s}) > {column.max_length} then "
            f"'longer than {column.max_length} characters: ' || quote_value({s})",
        ]
        if column.is_id:
            null_like = ", ".join(_literal(v) for v in NULL_LIKE)
            checks.append(
                f"when lower(trim({s}, {_WHITESPACE})) in ({null_like}) "
                f"then 'blank or null-like id: ' || quote_value('''' || {s} || '''')"
            )
    elif column.kind == "timestamp":
        checks = [f"when {p} is null then 'not an ISO-8601 timestamp: ' || {shown}"]
    else:
        noun = "an integer" if column.kind == "int" else "a number"
        checks = [
            f"when {p} is null then 'not {noun}: ' || {shown}",
            f"when not isfinite({p}) then 'not a finite number: ' || {shown}",
        ]
        if column.kind == "int":
            checks += [
                f"when {p} <> trunc({p}) then 'not an integer: ' || {shown}",
                f"when abs({p}) >= {_INT64_LIMIT!r} then 'outside the 64-bit integer range: ' || {shown}",
            ]
    return f"case {missing} {' '.join(checks)} end"


def _rule_sql(rule: ValueRule, x: str, kind: str) -> tuple[str, str]:
    """(fails, reason) SQL of one value rule on the typed column ``x`` of ``kind``."""
    shown = f"quote_value({x}::varchar)"
    if rule.check == "not_empty":
        return f"length({x}) = 0", "'empty string'"
    if rule.check == "zero_or_one":
        return f"{x} not in (0, 1)", f"'not 0 or 1: ' || {shown}"
    if rule.check == "min":
        return f"{x} < {float(rule.bound)!r}", f"'less than {rule.bound:g}: ' || {shown}"
    if rule.check == "max":
        return f"{x} > {float(rule.bound)!r}", f"'more than {rule.bound:g}: ' || {shown}"
    if rule.check == "one_of":
        allowed = ", ".join(_literal(str(v) if kind == "string" else v) for v in rule.bound)
        listed = _literal(f"not one of [{', '.join(str(v) for v in rule.bound)}]: ")
        return f"{x} not in ({allowed})", f"{listed} || {shown}"
    if rule.check == "in_day":
        start, end = rule.bound, rule.bound + dt.timedelta(days=1)
        fails = f"({x} < timestamp '{start.isoformat()}' or {x} >= timestamp '{end.isoformat()}')"
        return fails, f"'outside the day {start.isoformat()} (UTC): ' || {shown}"
    raise ValueError(f"unknown bronze rule {rule.check!r}")


# 4. Keys: the first of each event id among passing rows; ids bronze holds on nearby days.
# `keyed` holds only the passing rows that are duplicates (a later line of an id, or an id
# bronze holds on a nearby day), with their check columns: bronze is the passing rows
# without them. Only narrow rows (file, line, id) are grouped and joined, and the wide
# rows of the few duplicates joined back: no join, window or table copies the day's wide
# rows, so a day of any size runs under the memory limit.
_KEYS_SQL = """
create or replace temp table keyed as
with passing as (
    select file_index, source_file, line_number, event_id, (file_index::bigint << 40) + line_number as order_key
    from checked where problems is null
),
repeated as (
    -- ids on more than one line, with their first line
    select event_id, min(order_key) as first_key,
           arg_min(source_file, order_key) as first_file, arg_min(line_number, order_key) as first_line
    from passing group by event_id having count(*) > 1
),
seen as (
    select id_hash, arg_min(other_day, distance) as other_day from nearby_ids
    where id_hash in (select hash(event_id) from passing) group by id_hash
),
duplicates as (
    select passing.file_index, passing.line_number,
           case when repeated.first_key is null or passing.order_key = repeated.first_key then 1 else 2 end as nth,
           repeated.first_file, repeated.first_line, seen.other_day
    from passing
    left join repeated on repeated.event_id = passing.event_id
    left join seen on seen.id_hash = hash(passing.event_id)
    where passing.order_key <> repeated.first_key or seen.other_day is not null
)
select checked.*, duplicates.nth, duplicates.first_file, duplicates.first_line, duplicates.other_day
from duplicates join checked using (file_index, line_number)
"""
_QUARANTINE_SQL = f"""
select source_file, line_number, field, reason, raw, bad_bytes from (
    select source_file, line_number, '<line>' as field, '{_INVALID_UTF8}' as reason, null as raw, bad_bytes
    from decoded where text is null
    union all
    select source_file, line_number, '<line>', '{_INVALID_JSON}', text, null from decoded where not is_json
    union all
    select source_file, line_number, '<line>', 'expected a JSON object, got ' || case json_kind
        {" ".join(f"when '{k}' then '{v}'" for k, v in _JSON_KINDS.items())} else lower(json_kind) end, text, null
    from decoded where json_kind <> 'OBJECT'
    union all
    select source_file, line_number,
           array_to_string(list_transform(problems, lambda p: p.f), ', '),
           array_to_string(list_transform(problems, lambda p: p.f || ': ' || p.r), '; '), text, null
    from checked where problems is not null
    union all
    select source_file, line_number, 'event_id',
           'event_id: duplicate event_id ' || quote_value('''' || event_id || '''')
           || ' (first on line ' || first_line || ' of ' || first_file || ')', text, null
    from keyed where nth > 1
    union all
    select source_file, line_number, 'event_id', 'event_id: duplicate of ' || other_day, text, null
    from keyed where nth = 1 and other_day is not null
)
order by source_file, line_number
"""


def _explain_unparsed(quarantined: pa.Table) -> pa.Table:
    """The quarantine with the detail of invalid UTF-8 (the byte offset, raw text with
    ``\\x..`` escapes) and broken JSON (the parser's message) filled in, computed for
    those lines only; ``QUARANTINE_SCHEMA``."""
    reasons = quarantined.column("reason")
    unparsed = pc.is_in(reasons, pa.array([_INVALID_UTF8, _INVALID_JSON])).to_numpy(zero_copy_only=False)
    if not unparsed.any():
        return quarantined.drop_columns(["bad_bytes"]).cast(QUARANTINE_SCHEMA)
    reason_list, raw_list = reasons.to_pylist(), quarantined.column("raw").to_pylist()
    bad_bytes = quarantined.column("bad_bytes").to_pylist()
    for row in np.flatnonzero(unparsed):
        if reason_list[row] == _INVALID_UTF8:
            reason_list[row], raw_list[row] = _utf8_detail(bad_bytes[row])
        else:
            reason_list[row] = _json_detail(raw_list[row])
    return pa.table(
        {
            "source_file": quarantined.column("source_file"),
            "line_number": quarantined.column("line_number"),
            "field": quarantined.column("field"),
            "reason": pa.array(reason_list, pa.string()),
            "raw": pa.array(raw_list, pa.string()),
        }
    ).cast(QUARANTINE_SCHEMA)


def _utf8_detail(line: bytes) -> tuple[str, str]:
    line = line.rstrip(b"\r")
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as error:
        return f"invalid UTF-8 at byte {error.start}", line.decode("utf-8", errors="backslashreplace")
    return "invalid UTF-8", line.decode("utf-8", errors="backslashreplace")  # pragma: no cover - DuckDB disagreed


def _json_detail(text: str) -> str:
    try:
        json.loads(text)
    except json.JSONDecodeError as error:
        return f"invalid JSON: {error.msg} at column {error.colno}"
    except ValueError as error:  # e.g. recursion limits
        return f"invalid JSON: {error}"
    return "invalid JSON"


def _literal(value: object) -> str:
    """A SQL literal of a string or number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "'" + str(value).replace("'", "''") + "'"
    return repr(value)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def validate_records(records: pd.DataFrame, day: dt.date, spec: FeatureSpec) -> ValidatedEvents:
    """Validate already-parsed records (a frame, one row per record) with the engine.

    Args:
        records: bronze columns as parsed (any may be missing or mistyped) plus
            ``_source_file``, ``_line_number`` and ``_raw`` saying where each row came from.
        day: the partition day.
        spec: the source's feature spec.

    Returns:
        ``ValidatedEvents``: the typed good rows (pandas dtypes of the contract) and the
        rejected rows, named by their ``_source_file`` and ``_line_number``.
    """
    data = records.drop(columns=[c for c in (SOURCE_FILE, LINE_NUMBER, RAW) if c in records])
    text = data.to_json(orient="records", lines=True, date_format="iso", date_unit="us", double_precision=15)
    json_lines = pa.array(text.splitlines() if len(data) else [], pa.string())
    lines = pa.table(
        {
            "file_index": pa.array(np.zeros(len(json_lines), dtype=np.int32)),
            "source_file": pa.array(records[SOURCE_FILE].astype(str).to_numpy(), pa.string()),
            "line_number": pa.array(records[LINE_NUMBER].astype("int64").to_numpy()),
            "line": json_lines.cast(pa.large_binary()),
        }
    )
    with connect() as connection:
        result = validate_lines(connection, lines, spec, day)
    quarantined = result.quarantined.to_pandas()
    if RAW in records and len(quarantined):
        raw = records.drop_duplicates([SOURCE_FILE, LINE_NUMBER]).set_index([SOURCE_FILE, LINE_NUMBER])[RAW]
        where = pd.MultiIndex.from_arrays([quarantined["source_file"], quarantined["line_number"]])
        quarantined["raw"] = raw.reindex(where).astype(str).to_numpy()
    return ValidatedEvents(valid=result.bronze.to_pandas(), quarantined=quarantined[QUARANTINE_COLUMNS])
