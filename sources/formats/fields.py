"""Vectorised field parsers that record, per row, which field was wrong and why.

Every parser takes a batch's raw cells (an object Series of ``str`` or ``None``,
``None`` meaning the field was absent), returns the typed column, and flags the rows
it could not parse in a ``RowProblems``. Rows are never dropped here: the caller keeps
``~problems.bad`` and turns the rest into reject records with ``problems.rejects``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sources.bronze_schema import QUARANTINE_COLUMNS
from sources.formats.canonical import empty_rejects
from sources.formats.textfiles import LineBatch

LINE = "<line>"  # the field named when the row as a whole is broken

_INTEGER = r"[+-]?\d{1,18}"
_INTEGRAL_FLOAT = r"[+-]?\d{1,18}(?:\.0*)?"
_DECIMAL = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_TRUE, _FALSE = frozenset({"true", "1"}), frozenset({"false", "0"})
_EARLIEST_US, _LATEST_US = 0, 4_102_444_800_000_000  # 1970-01-01 .. 2100-01-01


class RowProblems:
    """The problems found in each row of one batch.

    A row flagged with ``flag_line`` (wrong field count, undecodable bytes, not a JSON
    object) is broken as a whole: later per-field flags on it are ignored, so its
    reject names only the structural problem.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._by_row: dict[int, list[tuple[str, str]]] = {}
        self._structural = np.zeros(size, dtype=bool)

    @property
    def bad(self) -> np.ndarray:
        """Boolean mask of the rows with at least one problem."""
        mask = np.zeros(self._size, dtype=bool)
        mask[list(self._by_row)] = True
        return mask

    def flag_line(self, mask: np.ndarray, reason: str | Sequence[str] | Mapping[int, str]) -> None:
        """Mark rows as broken as a whole; ``reason`` is one text, or one per (masked) batch row."""
        rows = np.flatnonzero(np.asarray(mask, dtype=bool) & ~self._structural)
        for row in rows:
            self._by_row[int(row)] = [(LINE, reason if isinstance(reason, str) else reason[int(row)])]
        self._structural[rows] = True

    def flag(
        self,
        mask: np.ndarray,
        field: str,
        reason: str | Sequence[str] | Mapping[int, str],
        values: pd.Series | None = None,
    ) -> None:
        """Record ``field: reason`` for the masked rows (structurally broken rows excepted).

        Args:
            mask: boolean mask over the batch rows.
            field: the source field to blame.
            reason: why: one text, or one per (masked) batch row. When ``values`` is given, each
                row's offending value is appended.
            values: the raw values, to quote in the reason.
        """
        for row in np.flatnonzero(np.asarray(mask, dtype=bool) & ~self._structural):
            why = reason if isinstance(reason, str) else reason[int(row)]
            if values is not None:
                why = f"{why}: {_quote(values.iloc[row])}"
            self._by_row.setdefault(int(row), []).append((field, why))

    def rejects(self, source_file: str, line_numbers: np.ndarray, raws: list[str]) -> pd.DataFrame:
        """The flagged rows as reject records (``QUARANTINE_COLUMNS``), in row order."""
        if not self._by_row:
            return empty_rejects()
        rows = sorted(self._by_row)
        return pd.DataFrame(
            {
                "source_file": [source_file] * len(rows),
                "line_number": np.asarray(line_numbers, dtype="int64")[rows],
                "field": [", ".join(dict.fromkeys(f for f, _ in self._by_row[r])) for r in rows],
                "reason": ["; ".join(f"{f}: {why}" for f, why in self._by_row[r]) for r in rows],
                "raw": [raws[r] for r in rows],
            },
            columns=QUARANTINE_COLUMNS,
        )


def _quote(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def cell_columns(batch: LineBatch, names: Sequence[str], null_tokens: Collection[str] = ("",)) -> dict[str, pd.Series]:
    """The batch's cells, column by column: name -> object Series, ``null_tokens`` as ``None``."""
    transposed = list(zip(*batch.cells, strict=True)) if len(batch) else [()] * len(names)
    columns: dict[str, pd.Series] = {}
    for name, cells in zip(names, transposed, strict=True):
        values = np.array(cells, dtype=object)
        for token in null_tokens:
            values[values == token] = None
        columns[name] = pd.Series(values, dtype="object")
    return columns


def structural_problems(batch: LineBatch, n_fields: int, encoding: str) -> RowProblems:
    """A ``RowProblems`` with the rows that did not decode or have the wrong field count flagged."""
    problems = RowProblems(len(batch))
    problems.flag_line(~batch.decoded, f"not valid {encoding}")
    wrong = batch.field_counts != n_fields
    problems.flag_line(
        wrong, {int(row): f"expected {n_fields} fields, got {batch.field_counts[row]}" for row in np.flatnonzero(wrong)}
    )
    return problems


def parse_string(cells: pd.Series, field: str, problems: RowProblems, *, required: bool = False) -> pd.Series:
    """Strings as they are; ``None`` when absent (flagged when ``required``)."""
    if required:
        problems.flag(cells.isna().to_numpy(), field, "missing")
    return cells.astype("object")


def _arrow_strings(cells: pd.Series) -> pa.Array:
    return pa.array(cells.to_numpy(dtype=object), type=pa.string(), from_pandas=True)


def _matches(strings: pa.Array, pattern: str) -> np.ndarray:
    """Whether each string fully matches ``pattern`` (False for nulls)."""
    return pc.match_substring_regex(strings, f"^(?:{pattern})$").fill_null(False).to_numpy(zero_copy_only=False)


def _where(strings: pa.Array, ok: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(ok), strings, pa.scalar(None, pa.string()))


def parse_int(
    cells: pd.Series,
    field: str,
    problems: RowProblems,
    *,
    required: bool = False,
    float_notation: bool = False,
    minimum: int | None = None,
    maximum: int | None = None,
) -> pd.Series:
    """Integers (Int64); ``float_notation`` also accepts integral floats such as ``260.0``.

    Flags: absent when ``required``; not an integer (fractions, text, more than 18
    digits); outside ``[minimum, maximum]``.
    """
    missing = cells.isna().to_numpy()
    strings = _arrow_strings(cells)
    ok = _matches(strings, _INTEGRAL_FLOAT if float_notation else _INTEGER)
    digits = pc.replace_substring_regex(_where(strings, ok), r"^\+|\.0*$", "")
    ints = pc.cast(digits, pa.int64())
    values = pd.Series(
        pd.arrays.IntegerArray(ints.fill_null(0).to_numpy(), ints.is_null().to_numpy(zero_copy_only=False)),
        index=cells.index,
    )
    problems.flag(~missing & ~ok, field, "not an integer", cells)
    if required:
        problems.flag(missing, field, "missing")
    _flag_range(values, cells, ok, field, problems, minimum, maximum)
    return values


def _flag_range(
    values: pd.Series,
    cells: pd.Series,
    parsed: np.ndarray,
    field: str,
    problems: RowProblems,
    minimum: float | None,
    maximum: float | None,
) -> None:
    """Flag parsed values outside ``[minimum, maximum]`` (either bound optional), quoting their cells."""
    if minimum is None and maximum is None:
        return
    numbers = values.to_numpy(dtype="float64", na_value=np.nan)
    outside = np.zeros(len(values), dtype=bool)
    if minimum is not None:
        outside |= numbers < minimum
    if maximum is not None:
        outside |= numbers > maximum
    low = "" if minimum is None else f"{minimum:g}"
    high = "" if maximum is None else f"{maximum:g}"
    problems.flag(parsed & outside, field, f"outside [{low}, {high}]", cells)


def int_keys(values: pd.Series) -> pd.Series:
    """Int64 ids as canonical id strings (``"196"``), ``None`` where null."""
    strings = pc.cast(pa.array(values, type=pa.int64(), from_pandas=True), pa.string())
    return pd.Series(strings.to_numpy(zero_copy_only=False), index=values.index, dtype="object")


def parse_float(
    cells: pd.Series,
    field: str,
    problems: RowProblems,
    *,
    required: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
) -> pd.Series:
    """Finite decimal numbers (float64, NaN when absent).

    Flags absent values when ``required``, anything but a decimal number (``nan``,
    ``inf``, text), values that overflow to infinity, and values outside the bounds.
    """
    missing = cells.isna().to_numpy()
    strings = _arrow_strings(cells)
    shaped = _matches(strings, _DECIMAL)
    numbers = pc.cast(_where(strings, shaped), pa.float64()).to_numpy(zero_copy_only=False)
    ok = shaped & np.isfinite(numbers)
    values = pd.Series(np.where(ok, numbers, np.nan), index=cells.index, dtype="float64")
    problems.flag(~missing & ~ok, field, "not a finite number", cells)
    if required:
        problems.flag(missing, field, "missing")
    _flag_range(values, cells, ok, field, problems, minimum, maximum)
    return values


def parse_flag(
    cells: pd.Series, field: str, problems: RowProblems, *, required: bool = True, float_notation: bool = False
) -> pd.Series:
    """A 0/1 label or flag (Int64)."""
    return parse_int(cells, field, problems, required=required, float_notation=float_notation, minimum=0, maximum=1)


def parse_bool(cells: pd.Series, field: str, problems: RowProblems) -> pd.Series:
    """``true``/``false`` (any case) or ``1``/``0`` as Int64 1/0; null when absent."""
    lowered = cells.str.lower()
    values = pd.Series(pd.NA, index=cells.index, dtype="Int64")
    values[lowered.isin(_TRUE).to_numpy()] = 1
    values[lowered.isin(_FALSE).to_numpy()] = 0
    problems.flag((cells.notna() & values.isna()).to_numpy(), field, "not a boolean", cells)
    return values


def parse_epoch(cells: pd.Series, field: str, problems: RowProblems, *, micros_per_unit: int | np.ndarray) -> pd.Series:
    """Unix times (integers in some unit) as naive UTC timestamps, NaT where not parsed.

    Args:
        micros_per_unit: microseconds per unit (1,000,000 for seconds, 1,000 for
            milliseconds), or one value per row when units differ by row.

    Flags absent values, non-integers and times outside 1970-01-01..2100-01-01.
    """
    units = parse_int(cells, field, problems, required=True)
    parsed = units.notna().to_numpy()
    factor = np.broadcast_to(np.asarray(micros_per_unit, dtype="int64"), parsed.shape)
    counts = units.to_numpy(dtype="int64", na_value=0)
    inside = (counts >= _EARLIEST_US // factor) & (
        counts < _LATEST_US // factor
    )  # compared before scaling: no overflow
    problems.flag(parsed & ~inside, field, "outside 1970..2100", cells)
    good = parsed & inside
    stamps = (np.where(good, counts, 0) * factor).astype("datetime64[us]")
    stamps[~good] = np.datetime64("NaT")
    return pd.Series(stamps, index=cells.index, dtype="datetime64[us]")


def parse_compact_time(cells: pd.Series, field: str, problems: RowProblems, *, layout: str, digits: int) -> pd.Series:
    """Timestamps written as fixed-width digits (e.g. ``%y%m%d%H``) as naive timestamps.

    Args:
        layout: the ``strptime`` layout of the leading digits.
        digits: the exact number of digits a value must have; digits beyond those the
            layout reads are milliseconds (iPinYou's ``yyyyMMddHHmmssSSS``).

    Flags absent values, values of the wrong shape and impossible dates.
    """
    width = len(pd.Timestamp(2000, 1, 1).strftime(layout))
    if digits not in (width, width + 3):
        raise ValueError(f"{layout} reads {width} digits: digits must be {width} or {width + 3}, got {digits}")
    missing = cells.isna().to_numpy()
    text = cells.fillna("").astype(str)
    shaped = _matches(_arrow_strings(cells), rf"\d{{{digits}}}")
    stamps = pd.to_datetime(text.str[:width].where(shaped), format=layout, errors="coerce")
    if digits > width:
        millis = pd.to_numeric(text.str[width:].where(shaped), errors="coerce")
        stamps = stamps + pd.to_timedelta(millis, unit="ms")
    ok = shaped & stamps.notna().to_numpy()
    problems.flag(~missing & ~ok, field, f"not a {digits}-digit {layout} time", cells)
    problems.flag(missing, field, "missing")
    return stamps.where(ok).astype("datetime64[us]")
