"""The lake: one fsspec root (a local folder or ``s3://bucket/prefix``) and its layout.

Every path the pipeline reads or writes is named here, so the layout documented in
``docs/data-contracts.md`` has one home in code.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

_DAY_FOLDER = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})$")

# Landing fingerprints hash file contents; this prefix marks that format in a cursor.
FINGERPRINT_VERSION = "sha256/"
# (file URL, size, modification time) -> content digest: a sensor that ticks every few
# seconds hashes a file again only when it was written again.
_DIGESTS: dict[tuple[str, Any, str], str] = {}
_MAX_DIGESTS = 100_000


def is_marker_file(name: str) -> bool:
    """Whether a file name is a marker or hidden file (``_SUCCESS``, ``.part-0.crc``),
    which readers of the lake skip."""
    return name.startswith(("_", "."))


@dataclass(frozen=True)
class Lake:
    """A lake root URL plus the storage options its filesystem needs.

    Args:
        root: fsspec URL or local path of the lake root.
        storage_options: keyword arguments for the fsspec filesystem (for S3:
            ``client_kwargs={"endpoint_url": ...}``, ``key``, ``secret``).
    """

    root: str
    storage_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, root: str, s3_endpoint_url: str | None = None) -> Lake:
        """A lake at ``root``; for ``s3://`` roots, optionally on an S3-compatible endpoint.

        S3 credentials come from the usual AWS variables (``AWS_ACCESS_KEY_ID``, ...).
        """
        options: dict[str, Any] = {}
        if root.startswith("s3://") and s3_endpoint_url:
            options["client_kwargs"] = {"endpoint_url": s3_endpoint_url}
        return cls(root=root, storage_options=options)

    # ---- filesystem -------------------------------------------------------------
    @property
    def protocol(self) -> str:
        return self.root.split("://", 1)[0] if "://" in self.root else "file"

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return fsspec.filesystem(self.protocol, **self.storage_options)

    @property
    def is_local(self) -> bool:
        return self.protocol == "file"

    def url(self, *parts: str) -> str:
        """Full URL (or local path) of ``parts`` under the root."""
        return posixpath.join(self.root.rstrip("/"), *parts)

    # ---- layout -----------------------------------------------------------------
    def landing_dir(self, source: str, day: dt.date) -> str:
        return self.url("landing", source, f"dt={day.isoformat()}")

    def truth_file(self, source: str, day: dt.date) -> str:
        return self.url("truth", source, f"dt={day.isoformat()}", "truth.parquet")

    def bronze_file(self, source: str, day: dt.date) -> str:
        return self.url("bronze", source, f"dt={day.isoformat()}", "part-0.parquet")

    def import_manifest_file(self, source: str) -> str:
        """Where ``sources.importer`` records what it imported from a real source's files."""
        return self.url("landing", source, "_import_manifest.json")

    def import_quarantine_file(self, source: str, file_stem: str) -> str:
        """Rows of a real source's file that could not be parsed at all (no day to file them under)."""
        return self.url("quarantine", source, "import", f"{file_stem}.parquet")

    def quarantine_file(self, source: str, day: dt.date) -> str:
        return self.url("quarantine", source, f"dt={day.isoformat()}", "quarantine.parquet")

    def drift_report_file(self, day: dt.date) -> str:
        return self.url("reports", "drift", f"dt={day.isoformat()}", "drift_report.html")

    def prediction_log_dir(self, source: str, day: dt.date) -> str:
        """Where the serving process lands its JSON-lines prediction logs of ``day``: under
        ``landing/prediction_logs/``, apart from ``landing/<source>/`` so the landing sensor
        never takes them for a source's events."""
        return self.url("landing", "prediction_logs", source, f"dt={day.isoformat()}")

    def prediction_logs_file(self, source: str, day: dt.date) -> str:
        """The day's validated prediction logs, one Parquet file."""
        return self.url("prediction_logs", source, f"dt={day.isoformat()}", "predictions.parquet")

    def prediction_logs_quarantine_file(self, source: str, day: dt.date) -> str:
        """The day's prediction log lines that failed validation."""
        return self.url("quarantine", "prediction_logs", source, f"dt={day.isoformat()}", "quarantine.parquet")

    def batch_predictions_dir(self, source: str, day: dt.date) -> str:
        """A stored model's scores of every ``training_examples`` row of ``day``
        (``part-NNNNN.parquet`` files, one per chunk; the ``batch_predictions`` asset)."""
        return self.url("predictions", source, f"dt={day.isoformat()}")

    def evaluation_file(self, model_tag: str, day: dt.date) -> str:
        """A stored model's metrics on ``day`` (JSON); the tag's ``name:version`` as folders."""
        return self.url("reports", "evaluations", *model_tag.split(":"), f"dt={day.isoformat()}.json")

    def split_file(self, protocol: str) -> str:
        """``event_id, part`` of the training window under one split protocol."""
        return self.url("splits", f"{protocol}.parquet")

    def data_docs_dir(self) -> str:
        """Where a copy of the Great Expectations Data Docs site goes (lakes on object storage)."""
        return self.url("reports", "data_docs")

    def model_dir(self, model_version: str) -> str:
        return self.url("models", model_version)

    def run_summary_file(self) -> str:
        return self.url("run_summary.json")

    # ---- operations -------------------------------------------------------------
    def exists(self, url: str) -> bool:
        return self.fs.exists(url)

    def list_files(self, folder: str) -> list[str]:
        """Files directly inside ``folder`` (sorted URLs); empty when it is missing."""
        fs = self.fs
        if not fs.exists(folder):
            return []
        prefix = "" if self.is_local else f"{self.protocol}://"
        return sorted(prefix + p for p in fs.ls(folder, detail=False) if fs.isfile(p))

    def landed_days(self, source: str) -> dict[dt.date, str]:
        """Days present in a source's landing zone, each with a content fingerprint.

        The fingerprint (``FINGERPRINT_VERSION`` then each file's name and SHA-256 of its
        bytes, marker files excepted) changes when a day is delivered again with other
        content, and only then: touching a file or copying the same bytes again keeps it.
        """
        fs = self.fs
        base = self.url("landing", source)
        if not fs.exists(base):
            return {}
        days: dict[dt.date, str] = {}
        for entry in fs.ls(base, detail=True):
            name = posixpath.basename(entry["name"].rstrip("/"))
            match = _DAY_FOLDER.match(name)
            if entry["type"] != "directory" or not match:
                continue
            files = [
                f
                for f in fs.ls(entry["name"], detail=True)
                if f["type"] == "file" and not is_marker_file(posixpath.basename(f["name"]))
            ]
            parts = sorted(f"{posixpath.basename(f['name'])}:{self._content_digest(f)}" for f in files)
            if parts:
                days[dt.date.fromisoformat(match.group(1))] = FINGERPRINT_VERSION + "|".join(parts)
        return days

    def _content_digest(self, info: dict[str, Any]) -> str:
        """SHA-256 (first 16 hex digits) of a file's bytes, hashed again only when its
        size or modification time changed."""
        key = (f"{self.protocol}://{info['name']}", info.get("size"), _mtime(info))
        if key not in _DIGESTS:
            if len(_DIGESTS) >= _MAX_DIGESTS:
                _DIGESTS.clear()
            digest = hashlib.sha256()
            with self.fs.open(info["name"], "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            _DIGESTS[key] = digest.hexdigest()[:16]
        return _DIGESTS[key]

    def remove(self, url: str) -> None:
        """Delete a file or folder if it exists."""
        fs = self.fs
        if fs.exists(url):
            fs.rm(url, recursive=True)

    def write_bytes(self, url: str, data: bytes) -> None:
        fs = self.fs
        fs.makedirs(posixpath.dirname(url), exist_ok=True)
        with fs.open(url, "wb") as handle:
            handle.write(data)

    def read_bytes(self, url: str) -> bytes:
        with self.fs.open(url, "rb") as handle:
            return handle.read()

    def write_parquet(self, frame: pd.DataFrame, url: str) -> None:
        """Write a frame as one Parquet file, replacing any file there."""
        self.write_arrow(pa.Table.from_pandas(frame, preserve_index=False), url)

    def write_arrow(self, table: pa.Table, url: str) -> None:
        """Write an Arrow table as one zstd Parquet file, replacing any file there."""
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        self.write_bytes(url, buffer.getvalue())

    def read_parquet(self, url: str, columns: list[str] | None = None) -> pd.DataFrame:
        """A Parquet file as a frame (only ``columns`` when given)."""
        with self.fs.open(url, "rb") as handle:
            return pq.read_table(handle, columns=columns).to_pandas()

    def iter_lines(self, url: str, compressed: bool | None = None) -> Iterator[bytes]:
        """Lines of a text file, without line endings; gzipped when ``compressed`` (by
        default: when the name ends in ``.gz``)."""
        compressed = url.endswith(".gz") if compressed is None else compressed
        compression = "gzip" if compressed else None
        with self.fs.open(url, "rb", compression=compression) as handle:
            for line in handle:
                yield line.rstrip(b"\r\n")

    def upload_file(self, local_path: str, url: str) -> None:
        """Copy a local file into the lake."""
        with open(local_path, "rb") as handle:
            self.write_bytes(url, handle.read())

    def upload_dir(self, local_dir: str, url: str) -> None:
        """Copy a local folder tree into the lake (replacing what was there)."""
        self.remove(url)
        fs = self.fs
        fs.makedirs(url, exist_ok=True)
        fs.put(local_dir.rstrip("/") + "/", url.rstrip("/") + "/", recursive=True)


def _mtime(info: dict[str, Any]) -> str:
    for key in ("mtime", "LastModified", "last_modified", "created"):
        if info.get(key) is not None:
            return str(info[key])
    return ""
