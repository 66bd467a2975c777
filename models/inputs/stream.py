"""A training window that does not fit in memory: Parquet files read in bounded chunks.

``ParquetWindow`` is the training days of ``training_examples`` as Parquet files (the
warehouse's ``export_days`` writes one per day with DuckDB ``COPY``). It gives what
``models.training.registry.train_model`` needs without a pandas copy of the window:

- ``fit``: the ``FittedFeatures`` statistics from SQL aggregates over the files
  (DuckDB: vocabularies by ``group by``, quantile boundaries by ``quantile_cont``,
  moments by ``avg`` / ``var_pop``), the same values ``FittedFeatures.fit`` computes
  on the frame (up to float rounding);
- ``batches``: the rows as model input batches, one epoch at a time: the files' row
  groups in a seeded random order per epoch, each read as an Arrow table, converted
  with the same ``column_array`` / ``training_labels`` as the in-memory path, and
  mixed in a bounded shuffle buffer (``shuffle_rows``) before batching;
- ``dataset``: those batches as a ``tf.data.Dataset`` (``from_generator``, re-run each
  epoch) for Keras ``fit``.

Peak memory is about ``shuffle_rows`` + one row group of rows, whatever the window size.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow.parquet as pq

from models.inputs.features import FittedFeatures, column_array
from reclake.feature_spec import FeatureColumn, FeatureSpec

DEFAULT_SHUFFLE_ROWS = 200_000
"""Rows the shuffle buffer holds before it emits batches."""

GENERATOR_BATCHES = 32
"""Batches per block the Python generator hands to tf.data (per-call overhead amortised)."""

LabelFunction = Callable[[Any], Any]
"""A pandas chunk -> its labels (an array, or output name -> array for multi-task models)."""


def _sql_list(files: Sequence[Path]) -> str:
    return "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _raw_value(column: FeatureColumn) -> str:
    """SQL twin of ``features.column_array``: null -> "" / 0."""
    name = _quoted(column.name)
    if column.dtype == "string":
        return f"coalesce(cast({name} as varchar), '')"
    if column.dtype == "int":
        return f"coalesce(cast({name} as bigint), 0)"
    return f"coalesce(cast(cast({name} as float) as double), 0.0)"


@dataclass
class ParquetWindow:
    """Training rows as Parquet files, read in bounded memory.

    Attributes:
        files: the Parquet files (e.g. one per training day), all with the same columns.
        shuffle_rows: rows of the shuffle buffer (bounded-memory shuffling: a row mixes
            with the rows of the row groups read around it; row groups are read in a
            seeded random order each epoch).
        memory_limit: DuckDB's memory limit for the statistics pass (e.g. ``"1GB"``).
    """

    files: list[Path]
    shuffle_rows: int = DEFAULT_SHUFFLE_ROWS
    memory_limit: str = "1GB"
    _rows: int | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.files = [Path(f) for f in self.files]
        if not self.files:
            raise ValueError("a ParquetWindow needs at least one Parquet file")
        missing = [str(f) for f in self.files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"Parquet file(s) of the training window not found: {missing}")
        if self.shuffle_rows < 1:
            raise ValueError(f"shuffle_rows must be >= 1, got {self.shuffle_rows}")

    @property
    def rows(self) -> int:
        """Rows in all files (from the Parquet footers)."""
        if self._rows is None:
            self._rows = sum(pq.ParquetFile(f).metadata.num_rows for f in self.files)
        return self._rows

    def __len__(self) -> int:
        return self.rows

    @property
    def empty(self) -> bool:
        return self.rows == 0

    @property
    def columns(self) -> list[str]:
        return list(pq.ParquetFile(self.files[0]).schema_arrow.names)

    @property
    def row_groups(self) -> list[tuple[Path, int]]:
        """Every (file, row group index), in file order."""
        return [(f, i) for f in self.files for i in range(pq.ParquetFile(f).num_row_groups)]

    def _connection(self) -> duckdb.DuckDBPyConnection:
        connection = duckdb.connect()
        connection.execute(f"set memory_limit = '{self.memory_limit}'")
        connection.execute("set preserve_insertion_order = false")
        return connection

    def fit(self, spec: FeatureSpec) -> FittedFeatures:
        """``FittedFeatures.fit`` from SQL aggregates over the files (no pandas copy).

        Raises:
            ValueError: no rows, a missing feature column, or an empty vocabulary.
        """
        if self.empty:
            raise ValueError(f"cannot fit the {spec.source} features on an empty window")
        missing = [c.name for c in spec.model_features if c.name not in self.columns]
        if missing:
            raise ValueError(f"the training window's Parquet files lack feature column(s) {missing}")
        source = f"read_parquet({_sql_list(self.files)})"
        vocabularies: dict[str, tuple[Any, ...]] = {}
        boundaries: dict[str, tuple[float, ...]] = {}
        moments: dict[str, tuple[float, float]] = {}
        incomplete: list[str] = []
        with self._connection() as connection:
            for column in spec.model_features:
                value = _raw_value(column)
                if column.transform == "embedding":
                    counts = connection.execute(f"select {value} as v, count(*) from {source} group by v").fetchall()
                    kept = [v for v, n in counts if n >= column.min_count]
                    if column.dtype == "string":
                        if not kept:
                            raise ValueError(
                                f"vocabulary of {column.name!r} is empty: none of its {len(counts)} distinct "
                                f"value(s) occurs {column.min_count} times"
                            )
                        vocabularies[column.name] = tuple(sorted(str(v) for v in kept))
                    else:
                        vocabularies[column.name] = tuple(sorted(int(v) for v in (kept or [v for v, _ in counts])))
                elif column.transform == "bucketize":
                    quantiles = column.quantiles or 2
                    points = [float(q) for q in np.linspace(0, 1, quantiles + 1)[1:-1]]
                    (cuts,) = connection.execute(f"select quantile_cont({value}, {points}) from {source}").fetchone()
                    boundaries[column.name] = tuple(float(v) for v in np.unique(np.asarray(cuts, dtype=np.float64)))
                elif column.transform == "normalize":
                    transformed = f"ln(1 + greatest({value}, 0))" if column.log else value
                    mean, variance = connection.execute(
                        f"select avg({transformed}), var_pop({transformed}) from {source}"
                    ).fetchone()
                    moments[column.name] = (float(mean), float(variance or 0.0))
                elif column.transform == "cyclical" and column.dtype == "int":
                    period = int(column.period)
                    (phases,) = connection.execute(
                        f"select count(distinct (({value} % {period}) + {period}) % {period}) from {source}"
                    ).fetchone()
                    if int(phases) != period:
                        incomplete.append(column.name)
            label_clip = None
            if spec.label.kind == "regression" and spec.label.clip_percentiles:
                points = [float(p) / 100 for p in spec.label.clip_percentiles]
                (clip,) = connection.execute(
                    f"select quantile_cont(cast({_quoted(spec.label.column)} as double), {points}) from {source}"
                ).fetchone()
                label_clip = (float(clip[0]), float(clip[1]))
            items: tuple[str, ...] = ()
            if spec.item_id:
                item = next(c for c in spec.model_features if c.name == "item_id")
                rows = connection.execute(f"select distinct {_raw_value(item)} from {source}").fetchall()
                items = tuple(sorted(str(v) for (v,) in rows))
        return FittedFeatures(spec, vocabularies, boundaries, moments, label_clip, items, tuple(incomplete))

    def mean(self, column: str) -> float:
        """The mean of a numeric column over every row (e.g. a label's rate)."""
        with self._connection() as connection:
            (value,) = connection.execute(
                f"select avg(cast({_quoted(column)} as double)) from read_parquet({_sql_list(self.files)})"
            ).fetchone()
        return float(value)

    def batches(
        self,
        spec: FeatureSpec,
        labels: LabelFunction,
        batch_size: int,
        seed: int | None,
        epoch: int = 0,
        shard: tuple[int, int] = (0, 1),
    ) -> Iterator[tuple[dict[str, np.ndarray], Any]]:
        """One epoch of ``(features, labels)`` batches of ``batch_size`` rows (the last may be smaller).

        Args:
            spec: the feature spec (which columns, and their model input dtypes).
            labels: a pandas chunk -> its labels (``registry.training_labels``).
            batch_size: rows per batch.
            seed: None: files and rows in order, no shuffling; else the row-group order
                and the buffer's shuffle are drawn from ``(seed, epoch)``.
            epoch: 0-based epoch (a new order each epoch).
            shard: (index, count): this worker reads every count-th row group of the
                epoch's order, starting at index (multi-worker data parallelism).
        """
        units = self.row_groups
        rng = None
        if seed is not None:
            rng = np.random.default_rng([seed, epoch])
            units = [units[i] for i in rng.permutation(len(units))]
        index, count = shard
        units = units[index::count]
        names = [c.name for c in spec.model_features]
        present = set(self.columns)
        needed = list(dict.fromkeys([*names, *[c for c in spec.label_columns if c in present]]))
        pending_features: list[dict[str, np.ndarray]] = []
        pending_labels: list[Any] = []
        pending_rows = 0
        keep = 0 if rng is None else self.shuffle_rows // 2
        open_files: dict[Path, pq.ParquetFile] = {}
        for path, group in units:
            reader = open_files.setdefault(path, pq.ParquetFile(path))
            chunk = reader.read_row_group(group, columns=needed).to_pandas()
            if chunk.empty:
                continue
            pending_features.append({c.name: column_array(chunk, c) for c in spec.model_features})
            pending_labels.append(labels(chunk))
            pending_rows += len(chunk)
            del chunk
            if pending_rows < (self.shuffle_rows if rng is not None else batch_size):
                continue
            features, target = _concat(pending_features, pending_labels)
            order = rng.permutation(pending_rows) if rng is not None else np.arange(pending_rows)
            emit = ((pending_rows - keep) // batch_size) * batch_size
            for start in range(0, emit, batch_size):
                rows = order[start : start + batch_size]
                yield _take(features, rows), _take(target, rows)
            rest = order[emit:]
            pending_features, pending_labels = [_take(features, rest)], [_take(target, rest)]
            pending_rows = len(rest)
        if pending_rows:
            features, target = _concat(pending_features, pending_labels)
            order = rng.permutation(pending_rows) if rng is not None else np.arange(pending_rows)
            for start in range(0, pending_rows, batch_size):
                rows = order[start : start + batch_size]
                yield _take(features, rows), _take(target, rows)

    def dataset(
        self, spec: FeatureSpec, labels: LabelFunction, batch_size: int, seed: int | None, label_outputs: Any
    ) -> Any:
        """The batches as a ``tf.data.Dataset`` of ``(features, labels)``, a new order each epoch.

        Args:
            label_outputs: the labels' structure: None for one label array, else the
                output names of a multi-task model.
        """
        import tensorflow as tf

        dtypes = {"string": tf.string, "int": tf.int64, "float": tf.float32}
        feature_signature = {
            c.name: tf.TensorSpec([None], dtypes.get(c.dtype, tf.float32)) for c in spec.model_features
        }
        label_spec = tf.TensorSpec([None], tf.float32)
        label_signature = label_spec if label_outputs is None else {name: label_spec for name in label_outputs}
        epochs = iter(range(1_000_000_000))
        shard = _worker_shard()

        def generate() -> Iterator[tuple[dict[str, np.ndarray], Any]]:
            # Blocks of GENERATOR_BATCHES batches cross from Python; tf.data splits them (rebatch).
            yield from self.batches(spec, labels, batch_size * GENERATOR_BATCHES, seed, next(epochs), shard)

        dataset = tf.data.Dataset.from_generator(generate, output_signature=(feature_signature, label_signature))
        options = tf.data.Options()
        # Each worker already reads its own row groups (_worker_shard): no auto-sharding.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        return dataset.rebatch(batch_size).prefetch(tf.data.AUTOTUNE).with_options(options)


def _worker_shard() -> tuple[int, int]:
    """(this worker's index, workers) from ``TF_CONFIG``; (0, 1) without it."""
    import json

    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0, 1
    config = json.loads(raw)
    workers = len(config.get("cluster", {}).get("worker", [])) + len(config.get("cluster", {}).get("chief", []))
    task = config.get("task", {})
    index = int(task.get("index", 0)) + (1 if task.get("type") == "worker" and "chief" in config["cluster"] else 0)
    return (index, workers) if workers > 1 else (0, 1)


def _concat(features: list[dict[str, np.ndarray]], labels: list[Any]) -> tuple[dict[str, np.ndarray], Any]:
    merged = {name: np.concatenate([f[name] for f in features]) for name in features[0]}
    if isinstance(labels[0], dict):
        return merged, {name: np.concatenate([part[name] for part in labels]) for name in labels[0]}
    return merged, np.concatenate(labels)


def _take(values: Any, rows: np.ndarray) -> Any:
    if isinstance(values, dict):
        return {name: array[rows] for name, array in values.items()}
    return values[rows]


def peak_rss_mb() -> float:
    """Peak resident memory of this process and of its finished children, MB (``getrusage``)."""
    import resource
    import sys

    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / scale, 1)
