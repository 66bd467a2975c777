"""Deliver a real source's files into the landing zone, one folder per day.

A real source arrives as files (a MovieLens folder, Criteo day files, an Avazu CSV,
Amazon Reviews JSON lines, iPinYou logs, the AliExpress CSVs) whose rows span many
days. ``import_source`` streams them through the source's parser
(``sources.formats``, bounded memory) and writes each parsed chunk's rows to the day
they belong to, as Parquet under ``landing/<source>/dt=YYYY-MM-DD/`` — the same landing
zone the synthetic generator and log shippers write to, so the rest of the pipeline
(bronze validation, dbt, training) does not care where rows came from.

Rows the parser cannot read at all (a broken line has no day to file it under) go to
``quarantine/<source>/import/<file>.parquet`` with file, line, field and reason. Every
input row is accounted for: ``input_rows == landed_rows + rejected_rows`` per file.

Sources with users and items can be k-core filtered (option ``k_core: {min_user_interactions,
min_item_interactions}``, e.g. for Amazon Reviews): after a file is landed, rows of users
or items with too few interactions in it are moved from landing to
``quarantine/<source>/import/<file>-kcore.parquet`` with the reason, so the counts still
reconcile (``landed_rows`` counts what stayed).

Importing is idempotent: a manifest records each file's fingerprint (size, modification
time, reader options); an unchanged file is not read again, a changed one replaces what
it delivered before.
"""

from __future__ import annotations

import datetime as dt
import json
import posixpath
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd

from reclake.lake import Lake
from sources.bronze_schema import QUARANTINE_COLUMNS
from sources.formats import FORMATS, day_of, fetch_movielens, k_core_filter, read_source
from sources.formats.textfiles import TruncatedFileError, file_stem

# Sources whose path is a folder holding one release (read as a whole).
_FOLDER_SOURCES = ("movielens",)
# Sources whose folders hold side files read with the main ones (iPinYou's clk. and conv.
# logs are joined to their imp. log): only files with this prefix are imported.
_MAIN_FILE_PREFIX = {"ipinyou": "imp."}


@dataclass(frozen=True)
class ImportedFile:
    """What importing one source file delivered.

    Attributes:
        file: the file (or release folder) read.
        fingerprint: size, modification time and reader options when it was read.
        input_rows: data rows read (landed + rejected).
        landed_rows: rows written to the landing zone.
        rejected_rows: rows quarantined by the parser or the k-core filter.
        rows_per_day: landed rows per ``YYYY-MM-DD``.
        quarantine_file: where the rejected rows are, or None.
        filtered_rows: of ``rejected_rows``, those the k-core filter removed by design
            (the rest did not parse: faults in the delivery).
    """

    file: str
    fingerprint: str
    input_rows: int
    landed_rows: int
    rejected_rows: int
    rows_per_day: dict[str, int] = field(default_factory=dict)
    quarantine_file: str | None = None
    filtered_rows: int = 0

    @property
    def unparsed_rows(self) -> int:
        """Rows the parser rejected."""
        return self.rejected_rows - self.filtered_rows


@dataclass(frozen=True)
class ImportSummary:
    """The manifest after an import: every file of the source and what it delivered."""

    source: str
    files: list[ImportedFile]
    read_now: list[str]

    @property
    def rows_per_day(self) -> dict[str, int]:
        days: dict[str, int] = {}
        for imported in self.files:
            for day, rows in imported.rows_per_day.items():
                days[day] = days.get(day, 0) + rows
        return dict(sorted(days.items()))

    @property
    def input_rows(self) -> int:
        return sum(f.input_rows for f in self.files)

    @property
    def rejected_rows(self) -> int:
        return sum(f.rejected_rows for f in self.files)

    @property
    def unparsed_rows(self) -> int:
        """Rows the parser rejected (``rejected_rows`` less the k-core filter's)."""
        return sum(f.unparsed_rows for f in self.files)


def source_files(source: str, path: str) -> list[str]:
    """The files (or release folder) of a source at ``path``, in order.

    A folder is one release for MovieLens; for the other sources every file directly
    inside it is read, sorted by name (``day_0.gz``, ``day_1.gz``, ...); for iPinYou the
    ``imp.*`` logs (each joined with its sibling ``clk.*`` / ``conv.*`` log).

    Raises:
        ValueError: an unknown source.
        FileNotFoundError: ``path`` does not exist or a folder holds no files.
    """
    if source not in FORMATS:
        raise ValueError(f"unknown source {source!r}; known: {', '.join(sorted(FORMATS))}")
    fs, root = fsspec.core.url_to_fs(path)
    if not fs.exists(root):
        raise FileNotFoundError(f"source {source!r}: {path} does not exist")
    if source in _FOLDER_SOURCES or not fs.isdir(root):
        return [path]
    prefix = "" if "://" not in path else path.split("://", 1)[0] + "://"
    wanted = _MAIN_FILE_PREFIX.get(source, "")
    files = sorted(
        prefix + f
        for f in fs.ls(root, detail=False)
        if fs.isfile(f) and not posixpath.basename(f).startswith(".") and posixpath.basename(f).startswith(wanted)
    )
    if not files:
        raise FileNotFoundError(f"source {source!r}: folder {path} holds no files")
    return files


def resolve_source_path(source: str, path: str | None, options: Mapping[str, Any], cache_dir: Path) -> tuple[str, dict]:
    """The local or fsspec path to read and the reader options left after resolving it.

    MovieLens options ``variant`` plus ``sha256`` (and optionally ``url``) make a missing
    release download once from the official URL into ``path`` (default: ``cache_dir``),
    checked against ``sha256``; an existing release folder is used as it is.

    Raises:
        ValueError: no path and nothing to download.
    """
    reader_options = dict(options)
    if source == "movielens" and "sha256" in reader_options:
        variant = reader_options.get("variant", "100k")
        folder = fetch_movielens(
            variant, path or cache_dir, url=reader_options.pop("url", None), sha256=reader_options.pop("sha256")
        )
        return str(folder), reader_options
    if not path:
        raise ValueError(f"source {source!r} needs source_path (a file or folder) in the settings")
    return path, reader_options


def _fingerprint(path: str, options: Mapping[str, Any]) -> str:
    fs, root = fsspec.core.url_to_fs(path)
    paths = [root] if not fs.isdir(root) else sorted(fs.find(root))
    parts = []
    for item in paths:
        info = fs.info(item)
        parts.append(f"{posixpath.basename(item)}:{info.get('size')}:{info.get('mtime') or info.get('LastModified')}")
    return json.dumps({"files": parts, "options": options}, sort_keys=True, default=str)


def _read_manifest(lake: Lake, source: str) -> dict[str, ImportedFile]:
    url = lake.import_manifest_file(source)
    if not lake.exists(url):
        return {}
    entries = json.loads(lake.read_bytes(url))
    return {entry["file"]: ImportedFile(**entry) for entry in entries}


def _landing_part(lake: Lake, source: str, day: str, stem: str, chunk: int) -> str:
    return posixpath.join(lake.landing_dir(source, _date(day)), f"{stem}-{chunk:05d}.parquet")


def _date(day: str) -> dt.date:
    return dt.date.fromisoformat(day)


def _remove_delivery(lake: Lake, source: str, previous: ImportedFile) -> None:
    """Delete the landing parts a file delivered before (it is being re-imported)."""
    stem = file_stem(previous.file)
    for day in previous.rows_per_day:
        for url in lake.list_files(lake.landing_dir(source, _date(day))):
            if posixpath.basename(url).startswith(f"{stem}-") and url.endswith(".parquet"):
                lake.remove(url)
    if previous.quarantine_file:
        lake.remove(previous.quarantine_file)


def _apply_k_core(lake: Lake, source: str, stem: str, parts: list[str], k_core: Mapping[str, int]) -> pd.DataFrame:
    """Filter a file's landed parts to their k-core; returns the removed rows as rejects."""
    keys = pd.concat([lake.read_parquet(url)[["event_id", "user_id", "item_id"]] for url in parts], ignore_index=True)
    kept = set(k_core_filter(keys, **k_core)["event_id"])
    removed = []
    for url in parts:
        rows = lake.read_parquet(url)
        keep = rows["event_id"].isin(kept)
        if keep.all():
            continue
        dropped = rows[~keep]
        removed.append(
            pd.DataFrame(
                {
                    "source_file": stem,
                    "line_number": dropped["event_id"].str.rsplit("-", n=1).str[-1].astype("int64").to_numpy(),
                    "field": "user_id, item_id",
                    "reason": f"k-core filter {dict(k_core)}: user or item has too few interactions",
                    "raw": dropped.to_json(orient="records", lines=True, date_format="iso").splitlines(),
                },
                columns=QUARANTINE_COLUMNS,
            )
        )
        lake.remove(url)
        if keep.any():
            lake.write_parquet(rows[keep].reset_index(drop=True), url)
    return pd.concat(removed, ignore_index=True) if removed else pd.DataFrame(columns=QUARANTINE_COLUMNS)


def _land_chunk(
    lake: Lake, source: str, stem: str, number: int, frame: pd.DataFrame, parts: list[str], rows_per_day: dict[str, int]
) -> int:
    """Write one parsed chunk's rows to the landing folders of their days; returns how many.

    Appends the files written to ``parts`` and counts rows into ``rows_per_day``.
    """
    if frame.empty:
        return 0
    for day, rows in frame.groupby(day_of(frame["event_ts"]), sort=True):
        key = day.isoformat()
        part = _landing_part(lake, source, key, stem, number)
        lake.write_parquet(rows.reset_index(drop=True), part)
        parts.append(part)
        rows_per_day[key] = rows_per_day.get(key, 0) + len(rows)
    return len(frame)


def import_file(lake: Lake, source: str, path: str, options: Mapping[str, Any], fingerprint: str) -> ImportedFile:
    """Parse one source file and land its rows by day; quarantine what does not parse
    (and, with a ``k_core`` option, what falls outside the k-core)."""
    options = dict(options)
    k_core = options.pop("k_core", None)
    stem = file_stem(path)
    parts: list[str] = []
    rows_per_day: dict[str, int] = {}
    rejects = []
    landed = filtered = 0
    try:
        for number, chunk in enumerate(read_source(source, path, **options)):
            if len(chunk.rejects):
                rejects.append(chunk.rejects)
            landed += _land_chunk(lake, source, stem, number, chunk.frame, parts, rows_per_day)
    except TruncatedFileError as cut:
        # The rows before the cut are landed; the rest of the file is one reject.
        reject = {"source_file": cut.source_file, "line_number": cut.last_line + 1, "field": "<file>",
                  "reason": str(cut), "raw": ""}  # fmt: skip
        rejects.append(pd.DataFrame([reject], columns=QUARANTINE_COLUMNS))
    except BaseException:
        for part in parts:  # a failed import leaves no landing file without a manifest entry
            lake.remove(part)
        raise
    if k_core and parts:
        removed = _apply_k_core(lake, source, stem, parts, k_core)
        if len(removed):
            rejects.append(removed)
            landed -= len(removed)
            filtered = len(removed)
            for raw in removed["raw"]:
                day = json.loads(raw)["event_ts"][:10]
                rows_per_day[day] -= 1
            rows_per_day = {day: rows for day, rows in rows_per_day.items() if rows}
    quarantine_url = None
    rejected = sum(len(r) for r in rejects)
    input_rows = landed + rejected
    if rejected:
        quarantine_url = lake.import_quarantine_file(source, stem)
        lake.write_parquet(pd.concat(rejects, ignore_index=True), quarantine_url)
    return ImportedFile(
        file=path,
        fingerprint=fingerprint,
        input_rows=input_rows,
        landed_rows=landed,
        rejected_rows=rejected,
        rows_per_day=dict(sorted(rows_per_day.items())),
        quarantine_file=quarantine_url,
        filtered_rows=filtered,
    )


def import_source(lake: Lake, source: str, path: str, options: Mapping[str, Any] | None = None) -> ImportSummary:
    """Land every file of a real source by day, reading only new or changed files.

    Args:
        lake: the lake to land into.
        source: a key of ``sources.formats.FORMATS``.
        path: a file, a folder of files, or (MovieLens) a release folder; local or fsspec.
        options: keyword options of the source's reader (e.g. Criteo's ``rows_per_day``).

    Returns:
        The updated manifest, with the files read in this call in ``read_now``.
    """
    options = dict(options or {})
    manifest = _read_manifest(lake, source)
    read_now = []
    for file in source_files(source, path):
        fingerprint = _fingerprint(file, options)
        previous = manifest.get(file)
        if previous is not None and previous.fingerprint == fingerprint:
            continue
        if previous is not None:
            _remove_delivery(lake, source, previous)
        manifest[file] = import_file(lake, source, file, options, fingerprint)
        read_now.append(file)
        lake.write_bytes(
            lake.import_manifest_file(source),
            json.dumps([asdict(f) for f in manifest.values()], indent=1).encode(),
        )
    return ImportSummary(source=source, files=list(manifest.values()), read_now=read_now)
