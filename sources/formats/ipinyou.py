"""iPinYou real-time-bidding logs (2013 competition, seasons 2 and 3) as impressions.

Layout of the impression (``imp.<yyyymmdd>.txt``), click (``clk.``) and conversion
(``conv.``) logs: tab-separated, no header, 24 fields, ``null`` or empty for a missing
value; plain, ``.gz`` or ``.bz2`` (the release ships ``.bz2``). Column order as in the
data set's format description (Liao et al., "iPinYou Global RTB Bidding Algorithm
Competition Dataset", ADKDD 2014) and in the ``schema.txt`` of the widely used
converter github.com/wnzhang/make-ipinyou-data: see ``LOG_COLUMNS``. Log type is 1 for
impressions, 2 for clicks, 3 for conversions.

Output, one row per impression: ``user_id`` = iPinYou ID (null when ``null``),
``item_id`` = creative ID, ``bid_price`` = bidding price, ``market_price`` = paying
price (both as logged, in the data set's CPM price units); ``bid_id`` as an id column;
features ``user_agent``, ``ip`` (last octet masked in the release), ``region``,
``city``, ``ad_exchange``, ``domain``, ``url``, ``anonymous_url_id``, ``ad_slot_id``,
``ad_slot_width``, ``ad_slot_height``, ``ad_slot_visibility``, ``ad_slot_format``,
``ad_slot_floor_price``, ``key_page_url``, ``advertiser_id``, ``user_tags`` (comma-joined
tag ids). ``log_type`` is checked and dropped.

Labels come from a join on BidID: ``clicked`` is 1 when the impression's BidID occurs
in the day's click log, else 0; ``converted`` likewise from the conversion log, null
when there is none. The click log is required (an impression log without it has no
labels), the conversion log optional. Clicks and conversions whose BidID has no
impression in this file are not reported (they may belong to another day's file).
The click and conversion logs are held in memory as sets of BidIDs (clicks are well
under 0.1% of impressions).

Timestamps (``yyyyMMddHHmmssSSS``) are local clock times; the documentation names no
zone, and the logs are Chinese traffic of a Beijing-based DSP, so they are read as
``Asia/Shanghai`` by default and converted to UTC (``timezone="UTC"`` keeps them as
logged). A day's file therefore spans two UTC days; partition by ``day_of(event_ts)``.

Rejected: wrong field count, an empty BidID, a bad timestamp, a log type other than
the file's, an empty creative ID, a bidding or paying price that is not a non-negative
integer, a slot width, height or floor price that is not a non-negative integer,
bytes that are not UTF-8. Click and conversion log lines are checked the same way
(field count, BidID, log type); their rejects come with the first chunk.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pandas as pd

from sources.formats.canonical import DEFAULT_CHUNK_ROWS, ParsedChunk, SourceSpec, assemble, event_ids
from sources.formats.fields import (
    RowProblems,
    cell_columns,
    parse_compact_time,
    parse_int,
    parse_string,
    structural_problems,
)
from sources.formats.textfiles import LineBatch, PathLike, file_name, file_stem, iter_line_batches, path_exists

NAME = "ipinyou"
LOG_COLUMNS: tuple[str, ...] = (
    "bid_id", "timestamp", "log_type", "ipinyou_id", "user_agent", "ip", "region", "city",
    "ad_exchange", "domain", "url", "anonymous_url_id", "ad_slot_id", "ad_slot_width",
    "ad_slot_height", "ad_slot_visibility", "ad_slot_format", "ad_slot_floor_price",
    "creative_id", "bidding_price", "paying_price", "key_page_url", "advertiser_id", "user_tags",
)  # fmt: skip
IMPRESSION, CLICK, CONVERSION = 1, 2, 3
_STRING_FEATURES = (
    "user_agent", "ip", "region", "city", "ad_exchange", "domain", "url", "anonymous_url_id",
    "ad_slot_id", "ad_slot_visibility", "ad_slot_format", "key_page_url", "advertiser_id", "user_tags",
)  # fmt: skip
_INTEGER_FEATURES = ("ad_slot_width", "ad_slot_height", "ad_slot_floor_price")
SPEC = SourceSpec(
    name=NAME,
    label_columns=("clicked", "converted"),
    id_columns=("user_id", "item_id", "bid_id"),
    features={
        **{c: "text" if c in ("user_agent", "user_tags") else "categorical" for c in _STRING_FEATURES},
        **{c: "numerical" for c in _INTEGER_FEATURES},
    },
)
DEFAULT_TIMEZONE = "Asia/Shanghai"
_NULLS = ("", "null")
_ENCODING = "utf-8"


def read(
    path: PathLike,
    *,
    click_path: PathLike | None = None,
    conversion_path: PathLike | None = None,
    timezone: str = DEFAULT_TIMEZONE,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Iterator[ParsedChunk]:
    """Parse one day's impression log, labelled from its click and conversion logs.

    Args:
        path: the impression log (``imp.20130606.txt``, ``.bz2`` / ``.gz`` too).
        click_path: the day's click log; default: the sibling file named ``clk.`` instead
            of ``imp.`` (required to exist).
        conversion_path: the day's conversion log; default: the sibling ``conv.`` file
            when it exists (``converted`` is null without one).
        timezone: the zone the logged clock times are in.
        chunk_rows: impression lines per chunk.

    Yields:
        ``ParsedChunk`` per batch of impression lines; at least one. The first also
        carries the click and conversion log rejects.

    Raises:
        FileNotFoundError: no click log was given or found next to the impressions.
        ValueError: ``click_path`` is omitted but the file name does not start with ``imp.``.
    """
    if click_path is None:
        click_path = _sibling(path, "clk.")
    if not path_exists(click_path):
        raise FileNotFoundError(f"no click log for {file_name(path)}: {click_path} does not exist (pass click_path=)")
    if conversion_path is None and file_name(path).startswith("imp."):
        candidate = _sibling(path, "conv.")
        conversion_path = candidate if path_exists(candidate) else None
    clicked_bids, side_rejects = _read_bid_ids(click_path, CLICK)
    converted_bids = None
    if conversion_path is not None:
        converted_bids, conversion_rejects = _read_bid_ids(conversion_path, CONVERSION)
        side_rejects = pd.concat([side_rejects, conversion_rejects], ignore_index=True)
    lines_iter = iter_line_batches(path, encoding=_ENCODING, chunk_rows=chunk_rows)
    for number, lines in enumerate(lines_iter):
        chunk = _parse(lines.split("\t", len(LOG_COLUMNS)), file_stem(path), clicked_bids, converted_bids, timezone)
        if number == 0 and len(side_rejects):
            chunk = ParsedChunk(chunk.frame, pd.concat([side_rejects, chunk.rejects], ignore_index=True))
        yield chunk


def _sibling(path: PathLike, prefix: str) -> str:
    """The path of the same day's log with ``imp.`` replaced by ``prefix``."""
    name = file_name(path)
    if not name.startswith("imp."):
        raise ValueError(f"{name} is not named imp.<day>...: pass click_path= (and conversion_path=) explicitly")
    folder = os.fspath(path)[: -len(name)]
    return folder + prefix + name[len("imp.") :]


def _log_cells(batch: LineBatch, expected_type: int) -> tuple[dict[str, pd.Series], RowProblems]:
    """A log batch's cells, with structure, BidID and log type checked."""
    problems = structural_problems(batch, len(LOG_COLUMNS), _ENCODING)
    cells = cell_columns(batch, LOG_COLUMNS, null_tokens=_NULLS)
    parse_string(cells["bid_id"], "bid_id", problems, required=True)
    log_type = parse_int(cells["log_type"], "log_type", problems, required=True)
    problems.flag(
        (log_type.notna() & (log_type != expected_type)).to_numpy(dtype=bool),
        "log_type",
        f"expected {expected_type}",
        cells["log_type"],
    )
    return cells, problems


def _read_bid_ids(path: PathLike, log_type: int) -> tuple[set[str], pd.DataFrame]:
    """The BidIDs of a click or conversion log, and its rejected lines."""
    bid_ids: set[str] = set()
    rejects = []
    for lines in iter_line_batches(path, encoding=_ENCODING, chunk_rows=DEFAULT_CHUNK_ROWS):
        batch = lines.split("\t", len(LOG_COLUMNS))
        cells, problems = _log_cells(batch, log_type)
        bid_ids.update(cells["bid_id"][~problems.bad])
        rejects.append(problems.rejects(batch.source_file, batch.line_numbers, batch.raws))
    return bid_ids, pd.concat(rejects, ignore_index=True)


def _parse(
    batch: LineBatch, stem: str, clicked_bids: set[str], converted_bids: set[str] | None, timezone: str
) -> ParsedChunk:
    cells, problems = _log_cells(batch, IMPRESSION)
    local = parse_compact_time(cells["timestamp"], "timestamp", problems, layout="%Y%m%d%H%M%S", digits=17)
    event_ts = (
        local.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC").dt.tz_localize(None)
    )
    problems.flag(
        (local.notna() & event_ts.isna()).to_numpy(),
        "timestamp",
        f"not a valid local time in {timezone}",
        cells["timestamp"],
    )
    bid_ids = cells["bid_id"]
    bid_price = parse_int(cells["bidding_price"], "bidding_price", problems, required=True, minimum=0)
    market_price = parse_int(cells["paying_price"], "paying_price", problems, required=True, minimum=0)
    columns = {
        "event_id": event_ids(NAME, stem, batch.line_numbers),
        "event_ts": event_ts.astype("datetime64[us]"),
        "user_id": parse_string(cells["ipinyou_id"], "ipinyou_id", problems),
        "item_id": parse_string(cells["creative_id"], "creative_id", problems, required=True),
        "clicked": bid_ids.isin(clicked_bids).astype("Int64"),
        "converted": None if converted_bids is None else bid_ids.isin(converted_bids).astype("Int64"),
        "bid_price": bid_price.astype("float64"),
        "market_price": market_price.astype("float64"),
        "bid_id": bid_ids,
        **{c: parse_string(cells[c], c, problems) for c in _STRING_FEATURES},
        **{c: parse_int(cells[c], c, problems, minimum=0) for c in _INTEGER_FEATURES},
    }
    return ParsedChunk(
        frame=assemble(SPEC, {k: v for k, v in columns.items() if v is not None}, ~problems.bad),
        rejects=problems.rejects(batch.source_file, batch.line_numbers, batch.raws),
    )
