"""Reading raw text sources line by line, in bounded batches, keeping every line's number.

Files are opened through fsspec, so a path may be local or any fsspec URL
(``s3://...``); ``.gz`` and ``.bz2`` files are decompressed on the fly. Line numbers
are 1-based physical lines of the (decompressed) file, header included, so a reject's
``line_number`` can be looked up with ``sed -n <n>p``. Empty lines are not rows: they
are skipped and not counted.

A compressed file cut short (or corrupted) is read up to the cut: the lines before it
are yielded as usual, then ``TruncatedFileError`` says where the file stopped being
readable, for the importer to quarantine the rest as one reject.
"""

from __future__ import annotations

import csv
import gzip
import itertools
import os
import posixpath
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import fsspec
import numpy as np

PathLike = str | os.PathLike[str]

_COMPRESSION_SUFFIXES = (".gz", ".bz2")
# What decompressing a file that was cut short or corrupted raises while it is read.
_CUT_SHORT = (EOFError, gzip.BadGzipFile, zlib.error)


class TruncatedFileError(ValueError):
    """A compressed source file that could not be read to its end.

    Attributes:
        source_file: the file's base name.
        last_line: the last physical line read in full (0 when none was).
    """

    def __init__(self, source_file: str, last_line: int, cause: BaseException) -> None:
        self.source_file, self.last_line = source_file, last_line
        super().__init__(
            f"truncated file: {source_file} unreadable after line {last_line} ({type(cause).__name__}: {cause})"
        )


def _take_lines(handle: Iterable[bytes], count: int) -> tuple[list[bytes], BaseException | None]:
    """Up to ``count`` next lines of ``handle``, and the error that cut them short, if any."""
    lines: list[bytes] = []
    try:
        for line in itertools.islice(handle, count):
            lines.append(line)
    except _CUT_SHORT as error:
        return lines, error
    return lines, None


def file_name(path: PathLike) -> str:
    """The file's base name, as reported in ``source_file``."""
    return posixpath.basename(os.fspath(path).rstrip("/"))


def file_stem(path: PathLike) -> str:
    """The name without a compression suffix and without its last extension.

    ``imp.20130606.txt.bz2`` -> ``imp.20130606``; ``u.data`` -> ``u``; ``day_0.gz`` -> ``day_0``.
    """
    name = file_name(path)
    for suffix in _COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    stem, dot, _ = name.rpartition(".")
    return stem if dot and stem else name


def plain_name(path: PathLike) -> str:
    """The base name without a compression suffix: ``train.csv.gz`` -> ``train.csv``."""
    name = file_name(path)
    for suffix in _COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def path_exists(path: PathLike) -> bool:
    """Whether a local path or fsspec URL exists."""
    fs, resolved = fsspec.core.url_to_fs(os.fspath(path))
    return fs.exists(resolved)


def read_header(path: PathLike, encoding: str = "utf-8") -> str | None:
    """The first non-empty line of a file (byte-order mark removed), or ``None`` if there is none."""
    with fsspec.open(os.fspath(path), "rb", compression="infer") as handle:
        for raw in handle:
            text = raw.decode(encoding, errors="replace").rstrip("\r\n").lstrip("\ufeff")
            if text:
                return text
    return None


@dataclass(frozen=True)
class TextLines:
    """A batch of consecutive non-empty lines of one file.

    Attributes:
        source_file: the file's base name.
        numbers: 1-based physical line number of each line.
        texts: each line, decoded, without its line ending.
        decoded: False where the bytes were not valid in the file's encoding (the text
            then holds replacement characters).
    """

    source_file: str
    numbers: np.ndarray
    texts: list[str]
    decoded: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)

    def split(self, separator: str, n_fields: int) -> LineBatch:
        """Split each line on ``separator`` (no quoting) into exactly ``n_fields`` cells."""
        cells: list[list[str | None]] = [text.split(separator) for text in self.texts]
        counts = np.fromiter(map(len, cells), dtype="int64", count=len(cells))
        for row in np.flatnonzero(counts != n_fields):
            cells[row] = (cells[row] + [None] * n_fields)[:n_fields]
        return LineBatch(self.source_file, self.numbers, self.texts, cells, counts, self.decoded)


def iter_line_batches(
    path: PathLike, *, encoding: str = "utf-8", chunk_rows: int, skip_header: bool = False
) -> Iterator[TextLines]:
    """The file's non-empty lines in batches of at most ``chunk_rows``; at least one batch.

    Always yielding a batch lets a source with no rows still produce one (empty) chunk.

    Args:
        path: local path or fsspec URL; ``.gz`` / ``.bz2`` are decompressed.
        encoding: an ASCII-compatible encoding (``utf-8``, ``latin-1``).
        chunk_rows: most physical lines read per batch.
        skip_header: leave out the first non-empty line (read it with ``read_header``).
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    name = file_name(path)
    produced = False
    header_pending = skip_header
    with fsspec.open(os.fspath(path), "rb", compression="infer") as handle:
        first_number = 1
        cut: BaseException | None = None
        while cut is None:
            raw, cut = _take_lines(handle, chunk_rows)
            if not raw:
                break
            numbers = np.arange(first_number, first_number + len(raw), dtype="int64")
            first_number += len(raw)
            texts, decoded = _decode_lines(raw, encoding)
            keep = np.fromiter(map(bool, texts), dtype=bool, count=len(texts))
            if header_pending and keep.any():
                keep[np.argmax(keep)] = False  # the first non-empty line
                header_pending = False
            if not keep.all():
                numbers, decoded = numbers[keep], decoded[keep]
                texts = list(itertools.compress(texts, keep))
            if texts:
                produced = True
                yield TextLines(name, numbers, texts, decoded)
        if cut is not None:
            raise TruncatedFileError(name, first_number - 1, cut)
    if not produced:
        yield TextLines(name, np.zeros(0, dtype="int64"), [], np.zeros(0, dtype=bool))


def _decode_lines(raw: list[bytes], encoding: str) -> tuple[list[str], np.ndarray]:
    """Decode raw lines (ending in ``\\n`` or not) to texts without line endings."""
    try:
        joined = b"".join(raw).decode(encoding)
    except UnicodeDecodeError:
        texts, decoded = [], []
        for line in raw:
            try:
                texts.append(line.decode(encoding))
                decoded.append(True)
            except UnicodeDecodeError:
                texts.append(line.decode(encoding, errors="replace"))
                decoded.append(False)
        return [t.rstrip("\r\n") for t in texts], np.asarray(decoded, dtype=bool)
    texts = joined.split("\n")
    if raw[-1].endswith(b"\n"):
        texts.pop()
    if "\r" in joined:
        texts = [t[:-1] if t.endswith("\r") else t for t in texts]
    return texts, np.ones(len(texts), dtype=bool)


@dataclass(frozen=True)
class Record:
    """One CSV record, which may span several physical lines (quoted line breaks).

    Attributes:
        number: the line number the record starts on.
        text: the record's raw text without its final line ending.
        fields: the parsed fields, or ``None`` when the csv module could not parse it.
        error: why parsing failed (``None`` when it did not).
        decoded: False when some of its bytes were not valid in the encoding.
    """

    number: int
    text: str
    fields: list[str] | None
    error: str | None = None
    decoded: bool = True


class _LineTap:
    """Feeds decoded lines to ``csv.reader`` and remembers which lines each record used."""

    def __init__(self, handle: Iterable[bytes], encoding: str, name: str) -> None:
        self._lines = enumerate(handle, start=1)
        self._encoding = encoding
        self._name = name
        self._last_number = 0
        self.taken: list[str] = []
        self.first_number = 0
        self.decoded = True

    def __iter__(self) -> _LineTap:
        return self

    def __next__(self) -> str:
        try:
            number, raw = next(self._lines)
        except _CUT_SHORT as error:
            raise TruncatedFileError(self._name, self._last_number, error) from error
        self._last_number = number
        if not self.taken:
            self.first_number = number
        try:
            text = raw.decode(self._encoding)
        except UnicodeDecodeError:
            text = raw.decode(self._encoding, errors="replace")
            self.decoded = False
        self.taken.append(text)
        return text

    def release(self) -> tuple[int, str, bool]:
        """(first line number, raw text, decoded) of the record just read; resets."""
        result = (self.first_number, "".join(self.taken).rstrip("\r\n"), self.decoded)
        self.taken, self.decoded = [], True
        return result


def iter_csv_records(path: PathLike, encoding: str = "utf-8") -> Iterator[Record]:
    """Every non-empty record of a quoted CSV file (RFC 4180 style), in order."""
    with fsspec.open(os.fspath(path), "rb", compression="infer") as handle:
        tap = _LineTap(handle, encoding, file_name(path))
        reader = csv.reader(tap, strict=True)
        while True:
            try:
                fields: list[str] | None = next(reader)
                error = None
            except StopIteration:
                return
            except csv.Error as problem:
                fields, error = None, f"unreadable CSV: {problem}"
            number, text, decoded = tap.release()
            if fields == [] or (fields is None and not text):
                continue
            yield Record(number, text, fields, error, decoded)


def batched(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of at most ``size`` items; one empty list when there are none.

    Always yielding a batch lets a source with no rows still produce one (empty) chunk.
    """
    if size < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {size}")
    batch: list = []
    produced = False
    try:
        for item in items:
            batch.append(item)
            if len(batch) == size:
                yield batch
                batch, produced = [], True
    except TruncatedFileError:
        if batch:
            yield batch  # what was read before the cut, then the cut itself
        raise
    if batch or not produced:
        yield batch


@dataclass(frozen=True)
class LineBatch:
    """A batch of lines of one file, split into fields.

    Attributes:
        source_file: the file's base name.
        line_numbers: 1-based line number of each row.
        raws: each row's raw text.
        cells: each row's fields, padded with ``None`` / cut to the expected count.
        field_counts: how many fields each row really had.
        decoded: whether each row decoded cleanly.
    """

    source_file: str
    line_numbers: np.ndarray
    raws: list[str]
    cells: list[list[str | None]]
    field_counts: np.ndarray
    decoded: np.ndarray

    def __len__(self) -> int:
        return len(self.raws)
