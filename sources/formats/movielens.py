"""MovieLens ratings (GroupLens), 100K and 1M layouts, joined with user and movie features.

Layouts read (all latin-1 text, no header):

- 100K: ``u.data`` ``user<TAB>item<TAB>rating<TAB>unix seconds``; ``u.user``
  ``id|age|gender|occupation|zip code``; ``u.item`` ``id|title|release date|video
  release date|IMDb URL|`` then 19 genre flags (0/1) in ``GENRES_100K`` order.
- 1M: ``ratings.dat`` ``UserID::MovieID::Rating::Timestamp``; ``users.dat``
  ``UserID::Gender::Age::Occupation::Zip-code`` (age and occupation are codes: age is
  the lower bound of an age band, occupation a number 0..20, see the 1M README);
  ``movies.dat`` ``MovieID::Title::Genres`` (genres ``|``-joined).

Output, one row per rating: ``user_id``, ``item_id``, ``rating`` (1..5), ``event_ts``
(the unix time, UTC); ``clicked`` and ``converted`` null; features ``age`` (Int64),
``gender``, ``occupation``, ``zip_code``, ``title``, ``year`` (Int64, the last
``(YYYY)`` in the title, null when there is none) and ``genres`` (the movie's genre
names ``|``-joined, e.g. ``Animation|Children's|Comedy``). The 100K release, video
release and IMDb fields are not kept.

Rejected: in the ratings file, wrong field count, non-integer ids, a rating that is not
an integer 1..5, a bad unix time, and a user or movie with no valid row in its side
file; in the side files, wrong field count, bad ids, duplicated ids, missing title,
bad age, gender not M/F and genre flags not 0/1. For the ratings file,
``lines == frame rows + rejects naming it``; side-file rejects come in the first chunk.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from sources.formats.canonical import (
    DEFAULT_CHUNK_ROWS,
    ParsedChunk,
    SourceSpec,
    assemble,
    event_ids,
)
from sources.formats.fields import (
    RowProblems,
    cell_columns,
    int_keys,
    parse_epoch,
    parse_flag,
    parse_int,
    parse_string,
    structural_problems,
)
from sources.formats.textfiles import LineBatch, PathLike, TextLines, file_stem, iter_line_batches, path_exists

NAME = "movielens"
Variant = Literal["100k", "1m"]
GENRES_100K: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)  # fmt: skip
USER_FEATURES = ("age", "gender", "occupation", "zip_code")
ITEM_FEATURES = ("title", "year", "genres")
SPEC = SourceSpec(
    name=NAME,
    label_columns=("rating",),
    id_columns=("user_id", "item_id"),
    features={
        "age": "numerical",
        "gender": "categorical",
        "occupation": "categorical",
        "zip_code": "categorical",
        "title": "text",
        "year": "numerical",
        "genres": "categorical",
    },
)
OFFICIAL_URLS: dict[str, str] = {
    "100k": "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
    "1m": "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
}
_ENCODING = "latin-1"
_DOWNLOAD_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class _Layout:
    """File names and separators of one MovieLens release."""

    ratings: str
    users: str
    items: str
    ratings_separator: str
    separator: str
    user_columns: tuple[str, ...]
    item_columns: tuple[str, ...]


LAYOUTS: dict[str, _Layout] = {
    "100k": _Layout(
        ratings="u.data",
        users="u.user",
        items="u.item",
        ratings_separator="\t",
        separator="|",
        user_columns=("user_id", "age", "gender", "occupation", "zip_code"),
        item_columns=("item_id", "title", "release_date", "video_release_date", "imdb_url", *GENRES_100K),
    ),
    "1m": _Layout(
        ratings="ratings.dat",
        users="users.dat",
        items="movies.dat",
        ratings_separator="::",
        separator="::",
        user_columns=("user_id", "gender", "age", "occupation", "zip_code"),
        item_columns=("item_id", "title", "genres"),
    ),
}
_RATING_COLUMNS = ("user_id", "item_id", "rating", "timestamp")


def read(
    path: PathLike, *, variant: Variant | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[ParsedChunk]:
    """Parse a MovieLens folder into chunks of at most ``chunk_rows`` ratings.

    The user and movie files are read whole first (thousands of rows); the ratings
    file is streamed.

    Args:
        path: the folder holding the release's files (local path or fsspec URL).
        variant: ``"100k"`` or ``"1m"``; found from the files present when omitted.
        chunk_rows: ratings lines per chunk.

    Yields:
        ``ParsedChunk`` per batch of ratings; at least one. The first also carries the
        side-file rejects.

    Raises:
        FileNotFoundError: when the folder holds neither layout (or not all its files).
    """
    layout = LAYOUTS[variant or detect_variant(path)]
    folder = os.fspath(path).rstrip("/")
    for name in (layout.ratings, layout.users, layout.items):
        if not path_exists(f"{folder}/{name}"):
            raise FileNotFoundError(f"MovieLens folder {folder} has no {name}")
    users, user_rejects = _read_users(f"{folder}/{layout.users}", layout)
    items, item_rejects = _read_items(f"{folder}/{layout.items}", layout)
    side_rejects = pd.concat([user_rejects, item_rejects], ignore_index=True)
    ratings_path = f"{folder}/{layout.ratings}"
    for number, lines in enumerate(iter_line_batches(ratings_path, encoding=_ENCODING, chunk_rows=chunk_rows)):
        chunk = _parse_ratings(lines, ratings_path, layout, users, items)
        if number == 0 and len(side_rejects):
            chunk = ParsedChunk(chunk.frame, pd.concat([side_rejects, chunk.rejects], ignore_index=True))
        yield chunk


def detect_variant(path: PathLike) -> Variant:
    """``"100k"`` when the folder has ``u.data``, ``"1m"`` when it has ``ratings.dat``."""
    folder = os.fspath(path).rstrip("/")
    for variant, layout in LAYOUTS.items():
        if path_exists(f"{folder}/{layout.ratings}"):
            return variant  # type: ignore[return-value]
    raise FileNotFoundError(f"{folder} is not a MovieLens 100K (u.data) or 1M (ratings.dat) folder")


def _read_side_file(
    path: str, separator: str, columns: tuple[str, ...]
) -> tuple[dict[str, pd.Series], RowProblems, LineBatch]:
    """A side file's cells, its structural problems and its lines (read whole: they are small)."""
    (lines,) = iter_line_batches(path, encoding=_ENCODING, chunk_rows=sys.maxsize)
    batch = lines.split(separator, len(columns))
    return cell_columns(batch, columns), structural_problems(batch, len(columns), _ENCODING), batch


def _flag_duplicates(keys: pd.Series, problems: RowProblems, field: str, line_numbers: np.ndarray) -> None:
    """Flag every repeat of an id after its first otherwise valid row."""
    valid = ~problems.bad
    candidates = keys.where(valid, None)
    repeated = (candidates.duplicated(keep="first") & candidates.notna()).to_numpy()
    first_line = pd.Series(line_numbers, dtype="int64")[valid].groupby(candidates[valid].to_numpy()).min()
    reasons = [f"duplicate id, first on line {first_line.get(key)}" for key in candidates]
    problems.flag(repeated, field, reasons)


def _read_users(path: str, layout: _Layout) -> tuple[pd.DataFrame, pd.DataFrame]:
    cells, problems, batch = _read_side_file(path, layout.separator, layout.user_columns)
    ids = parse_int(cells["user_id"], "user_id", problems, required=True)
    table = pd.DataFrame(
        {
            "age": parse_int(cells["age"], "age", problems, required=True, minimum=0, maximum=150),
            "gender": parse_string(cells["gender"], "gender", problems, required=True),
            "occupation": parse_string(cells["occupation"], "occupation", problems, required=True),
            "zip_code": parse_string(cells["zip_code"], "zip_code", problems),
        }
    )
    problems.flag(
        (table["gender"].notna() & ~table["gender"].isin(["M", "F"])).to_numpy(),
        "gender",
        "not M or F",
        cells["gender"],
    )
    keys = int_keys(ids)
    _flag_duplicates(keys, problems, "user_id", batch.line_numbers)
    keep = ~problems.bad
    return table[keep].set_axis(keys[keep]), problems.rejects(batch.source_file, batch.line_numbers, batch.raws)


def _read_items(path: str, layout: _Layout) -> tuple[pd.DataFrame, pd.DataFrame]:
    cells, problems, batch = _read_side_file(path, layout.separator, layout.item_columns)
    ids = parse_int(cells["item_id"], "item_id", problems, required=True)
    title = parse_string(cells["title"], "title", problems, required=True)
    if "genres" in cells:
        genres = cells["genres"]
    else:
        flags = pd.DataFrame({g: parse_flag(cells[g], g, problems) for g in GENRES_100K})
        genres = pd.Series(
            [
                "|".join(g for g, on in zip(GENRES_100K, row, strict=True) if on == 1) or None
                for row in flags.itertuples(index=False)
            ],
            dtype="object",
        )
    table = pd.DataFrame(
        {
            "title": title,
            "year": pd.to_numeric(title.str.extract(r".*\((\d{4})\)", expand=False)).astype("Int64"),
            "genres": genres.astype(object),
        }
    )
    keys = int_keys(ids)
    _flag_duplicates(keys, problems, "item_id", batch.line_numbers)
    keep = ~problems.bad
    return table[keep].set_axis(keys[keep]), problems.rejects(batch.source_file, batch.line_numbers, batch.raws)


def _parse_ratings(
    lines: TextLines, path: str, layout: _Layout, users: pd.DataFrame, items: pd.DataFrame
) -> ParsedChunk:
    batch = lines.split(layout.ratings_separator, len(_RATING_COLUMNS))
    problems = structural_problems(batch, len(_RATING_COLUMNS), _ENCODING)
    cells = cell_columns(batch, _RATING_COLUMNS)
    user_ids = int_keys(parse_int(cells["user_id"], "user_id", problems, required=True))
    item_ids = int_keys(parse_int(cells["item_id"], "item_id", problems, required=True))
    rating = parse_int(cells["rating"], "rating", problems, required=True, minimum=1, maximum=5)
    event_ts = parse_epoch(cells["timestamp"], "timestamp", problems, micros_per_unit=1_000_000)
    user_rows = users.reindex(user_ids.fillna(""))
    item_rows = items.reindex(item_ids.fillna(""))
    problems.flag(
        (user_ids.notna() & ~user_ids.isin(users.index)).to_numpy(),
        "user_id",
        f"no valid row in {layout.users}",
        user_ids,
    )
    problems.flag(
        (item_ids.notna() & ~item_ids.isin(items.index)).to_numpy(),
        "item_id",
        f"no valid row in {layout.items}",
        item_ids,
    )
    columns = {
        "event_id": event_ids(NAME, file_stem(path), batch.line_numbers),
        "event_ts": event_ts,
        "user_id": user_ids,
        "item_id": item_ids,
        "rating": rating.astype("float64"),
        **{c: user_rows[c].reset_index(drop=True) for c in USER_FEATURES},
        **{c: item_rows[c].reset_index(drop=True) for c in ITEM_FEATURES},
    }
    return ParsedChunk(
        frame=assemble(SPEC, columns, ~problems.bad),
        rejects=problems.rejects(batch.source_file, batch.line_numbers, batch.raws),
    )


class ChecksumMismatchError(ValueError):
    """Raised when a downloaded archive's SHA-256 is not the expected one."""


def fetch_movielens(variant: Variant, cache_dir: PathLike, url: str | None = None, sha256: str | None = None) -> Path:
    """The local folder of a MovieLens release, downloading the official zip if needed.

    Lookup order: ``cache_dir`` itself when it already holds the release's files (an
    existing folder is used as it is, never modified); then ``cache_dir/ml-<variant>``;
    then ``cache_dir/ml-<variant>.zip`` from an earlier download (checked again, then
    extracted); otherwise the zip is downloaded once from ``url`` (default: the official
    GroupLens URL), checked, and extracted to ``cache_dir/ml-<variant>``.

    GroupLens publishes only MD5 sums for its zips, so this module pins no SHA-256:
    downloading requires ``sha256``, the hex SHA-256 of a copy you trust
    (``sha256sum ml-100k.zip``).

    Args:
        variant: ``"100k"`` or ``"1m"``.
        cache_dir: a release folder, or the folder to keep downloads in.
        url: where to download from (any ``urllib`` URL, ``file://`` included).
        sha256: the expected SHA-256 of the zip; required to download or extract.

    Returns:
        The folder holding the release's files.

    Raises:
        ValueError: an unknown variant, or ``sha256`` missing when a download is needed.
        ChecksumMismatchError: the zip's SHA-256 differs from ``sha256`` (the bad file
            is deleted).
        FileNotFoundError: the zip does not contain the release's files.
        FileExistsError: ``cache_dir/ml-<variant>`` exists but lacks some of the files.
    """
    if variant not in LAYOUTS:
        raise ValueError(f"unknown MovieLens variant {variant!r}; expected one of {list(LAYOUTS)}")
    layout = LAYOUTS[variant]
    cache = Path(cache_dir)
    folder = cache / f"ml-{variant}"
    for candidate in (cache, folder):
        if all((candidate / name).is_file() for name in (layout.ratings, layout.users, layout.items)):
            return candidate
    if folder.exists():
        raise FileExistsError(
            f"{folder} exists but lacks some of {layout.ratings}, {layout.users}, {layout.items}; remove it"
        )
    if sha256 is None:
        raise ValueError(
            f"MovieLens {variant} is not in {cache}; to download it pass sha256= (the SHA-256 of a trusted "
            f"copy of {OFFICIAL_URLS[variant]}: GroupLens publishes only MD5 sums)"
        )
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / f"ml-{variant}.zip"
    if not archive.is_file():
        _download(url or OFFICIAL_URLS[variant], archive)
    actual = _sha256_of(archive)
    if actual != sha256.lower():
        archive.unlink()
        raise ChecksumMismatchError(
            f"{archive.name}: SHA-256 is {actual}, expected {sha256.lower()}; the file was deleted"
        )
    _extract(archive, f"ml-{variant}/", (layout.ratings, layout.users, layout.items), folder)
    return folder


def _download(url: str, target: Path) -> None:
    """Stream ``url`` into ``target`` through a temporary file (no partial file is left)."""
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", delete=False) as partial:
        try:
            with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_SECONDS) as response:
                shutil.copyfileobj(response, partial, length=1 << 20)
        except BaseException:
            partial.close()
            os.unlink(partial.name)
            raise
    os.replace(partial.name, target)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _extract(archive: Path, prefix: str, required: tuple[str, ...], folder: Path) -> None:
    """Extract the members under ``prefix`` into ``folder`` (atomically, no path escapes)."""
    with zipfile.ZipFile(archive) as bundle:
        members = {
            m.filename[len(prefix) :]: m for m in bundle.infolist() if m.filename.startswith(prefix) and not m.is_dir()
        }
        missing = [name for name in required if name not in members]
        if missing:
            raise FileNotFoundError(f"{archive.name} has no {', '.join(prefix + name for name in missing)}")
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
        try:
            for name, member in members.items():
                target = (staging / name).resolve()
                if not target.is_relative_to(staging.resolve()):
                    raise ValueError(f"{archive.name}: member {member.filename!r} would leave the target folder")
                target.parent.mkdir(parents=True, exist_ok=True)
                with bundle.open(member) as source, target.open("wb") as sink:
                    shutil.copyfileobj(source, sink)
            staging.rename(folder)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
