"""Feature drift between two samples of `training_examples`, computed with Evidently.

`build_drift_report` runs Evidently's `DataDriftPreset` on the requested columns, writes
the interactive HTML report to a local file and returns a small `DriftSummary` read
from the report snapshot by metric type (never by position).

Both frames are first sampled to at most `SAMPLE_ROWS` rows each, with a fixed seed, so
a report costs the same whatever the day's traffic (``bench/drift.py``: a 50,000-event
day of the synthetic source against its 7-day reference, 18 columns, in 1.5 s instead of
7 s on 2 cores; 8 small Criteo days took two minutes) and the same inputs always give
the same report.

The statistical method is fixed per column type rather than left to Evidently, which
would switch from p-values (K-S, chi-square) to distances at 1,000 reference rows and so
judge a sampled day differently from a small one: numerical columns are compared with the
normed Wasserstein distance (`NUMERICAL_METHOD`: the earth mover's distance in units of
the reference's standard deviation), categorical ones with the Jensen-Shannon distance
(`CATEGORICAL_METHOD`), and a column drifts when its distance reaches `DRIFT_THRESHOLD`
(0.1, Evidently's default for both). Distances measure how far apart the distributions
are, not how sure a test is that they differ, so they do not fire on negligible shifts
just because a day is large, and sampling only adds estimation noise. At 20,000 rows a
side the distance between two samples of one distribution is about 0.01 (Wasserstein,
normal data) and 0.03 (Jensen-Shannon over 64 equally likely values), at most 0.03 and
0.035 over 50 draws: well under the threshold. The shifts the threshold is set for still
reach it: a mean moved by a tenth of a standard deviation (Wasserstein 0.1), or a tenth
of the traffic moved between two of five values (Jensen-Shannon 0.12). (A categorical
column with thousands of distinct values, as Criteo's hashed ids, is noisy under
Jensen-Shannon at any sample size; it would need its rare values grouped first.)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from reclake.feature_spec import FeatureSpec

if TYPE_CHECKING:
    from evidently.core.report import Snapshot

SAMPLE_ROWS = 20_000
"""Most rows of each side a report compares (see the module docstring for why it suffices)."""
SAMPLE_SEED = 0
"""Seed of the sampling: the same frames always give the same sample, hence the same report."""
NUMERICAL_METHOD = "wasserstein"
"""Evidently's stattest for numerical columns: the Wasserstein distance over the reference's std."""
CATEGORICAL_METHOD = "jensenshannon"
"""Evidently's stattest for categorical columns: the Jensen-Shannon distance of the value shares."""
DRIFT_THRESHOLD = 0.1
"""A column drifts when its distance reaches this (both methods; Evidently's default)."""

# Columns constant within a daily partition: a day against the days before it always
# "drifts" on them, so they are not monitored.
_CONSTANT_WITHIN_A_DAY = ("day_of_week",)
# Transforms whose column the ranker treats as a category (compared as distributions of values).
_CATEGORICAL_TRANSFORMS = ("embedding", "hashing", "cyclical")


def monitored_columns(spec: FeatureSpec, history_days: int | None = None) -> tuple[list[str], list[str]]:
    """(numerical, categorical) ``training_examples`` columns monitored for drift: the
    ranker's inputs per the feature spec, without the ids (whose distributions shift every
    day by design) and without ``day_of_week`` (one value per daily partition). Normalized
    and bucketized columns are numerical; embedded, hashed and cyclical ones categorical.

    Args:
        spec: the source's feature spec.
        history_days: days of history before the reference window starts; aggregates
            over a longer window are left out (while history is still filling a window,
            its counts grow by construction). None: every aggregate.
    """
    numerical, categorical = [], []
    for column in spec.columns + spec.aggregate_features_within(history_days):
        if column.name in _CONSTANT_WITHIN_A_DAY:
            continue
        (categorical if column.transform in _CATEGORICAL_TRANSFORMS else numerical).append(column.name)
    return numerical, categorical


_FAILED_TEST_STATUS = "FAIL"


@dataclass(frozen=True)
class DriftSummary:
    """What an Evidently data drift report found.

    Attributes:
        drifted_columns: Columns whose drift test fired, in the order requested.
        drifted_share: Share of the analysed columns that drifted (0..1).
        column_scores: Drift score per column: a distance, 0 for identical
            distributions, higher means more drift (see `column_methods`).
        column_methods: Evidently's stattest per column: `NUMERICAL_METHOD` or
            `CATEGORICAL_METHOD`.
        dataset_drift: True when `drifted_share` reached the report's `drift_share`.
        current_rows: Number of rows in the current frame.
        reference_rows: Number of rows in the reference frame.
        current_sampled: Rows of the current frame the report compared (at most the
            report's `sample_rows`).
        reference_sampled: Rows of the reference frame the report compared.
        snapshot: The Evidently snapshot the summary was read from (for a workspace,
            see `monitoring.workspace`); not part of equality or repr.
    """

    drifted_columns: list[str]
    drifted_share: float
    column_scores: dict[str, float]
    column_methods: dict[str, str]
    dataset_drift: bool
    current_rows: int
    reference_rows: int
    current_sampled: int = 0
    reference_sampled: int = 0
    snapshot: Snapshot | None = field(default=None, compare=False, repr=False)


def build_drift_report(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    numerical_columns: Sequence[str],
    categorical_columns: Sequence[str],
    html_path: str | os.PathLike[str],
    *,
    drift_share: float = 0.5,
    sample_rows: int | None = SAMPLE_ROWS,
    seed: int = SAMPLE_SEED,
) -> DriftSummary:
    """Compare `current` with `reference` column by column and save an HTML report.

    Only the listed columns are analysed; other columns in the frames are ignored. Each
    frame larger than `sample_rows` is replaced by a uniform sample of that many rows
    (drawn with `seed`); numerical columns are compared with `NUMERICAL_METHOD`,
    categorical ones with `CATEGORICAL_METHOD`, both at `DRIFT_THRESHOLD`.

    Args:
        current: The recent sample, e.g. the newest day of `training_examples`.
        reference: The baseline sample, e.g. the training window.
        numerical_columns: Columns compared as numbers (must have a numeric dtype).
        categorical_columns: Columns compared as categories (strings or small ints).
        html_path: Local file to write the Evidently HTML report to; parent
            folders are created.
        drift_share: Share of drifted columns at which the whole dataset counts
            as drifted (Evidently's `drift_share`, default 0.5).
        sample_rows: Most rows compared per side; None compares every row.
        seed: Seed of the sampling.

    Returns:
        A `DriftSummary` with the drifted columns, per-column scores and the snapshot.

    Raises:
        ValueError: If a frame is empty, a requested column is missing from a frame,
            a numerical column is not numeric, no columns are requested, a column is
            listed both as numerical and categorical, `drift_share` is outside (0, 1],
            or `sample_rows` is below 1.
    """
    numerical = list(numerical_columns)
    categorical = list(categorical_columns)
    columns = _check_columns(numerical, categorical)
    if not 0.0 < drift_share <= 1.0:
        raise ValueError(f"drift_share must be in (0, 1], got {drift_share}")
    if sample_rows is not None and sample_rows < 1:
        raise ValueError(f"sample_rows must be at least 1 (or None for every row), got {sample_rows}")
    for name, frame in (("current", current), ("reference", reference)):
        _check_frame(name, frame, columns, numerical)

    # Evidently takes several seconds to import: load it only when a report is built.
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    current_sample = _sample(current[columns], sample_rows, seed)
    reference_sample = _sample(reference[columns], sample_rows, seed)
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    preset = DataDriftPreset(
        columns=columns,
        drift_share=drift_share,
        num_method=NUMERICAL_METHOD,
        cat_method=CATEGORICAL_METHOD,
        num_threshold=DRIFT_THRESHOLD,
        cat_threshold=DRIFT_THRESHOLD,
    )
    snapshot = Report([preset], include_tests=True).run(
        Dataset.from_pandas(current_sample, data_definition=definition),
        Dataset.from_pandas(reference_sample, data_definition=definition),
    )

    path = Path(html_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # save_html silently ignores non-str paths, so pass a str.
    snapshot.save_html(str(path))

    summary = _summarise(
        snapshot.dict(),
        columns=columns,
        drift_share=drift_share,
        current_rows=len(current),
        reference_rows=len(reference),
    )
    return replace(
        summary, current_sampled=len(current_sample), reference_sampled=len(reference_sample), snapshot=snapshot
    )


def _sample(frame: pd.DataFrame, rows: int | None, seed: int) -> pd.DataFrame:
    """`frame` itself when it has at most `rows` rows, else `rows` of its rows drawn
    uniformly without replacement with `seed`."""
    if rows is None or len(frame) <= rows:
        return frame
    return frame.sample(n=rows, random_state=seed)


def _check_columns(numerical: list[str], categorical: list[str]) -> list[str]:
    """Return numerical + categorical columns, rejecting empty or overlapping lists."""
    columns = numerical + categorical
    if not columns:
        raise ValueError("no columns requested: pass at least one numerical or categorical column")
    both = sorted(set(numerical) & set(categorical))
    if both:
        raise ValueError(f"columns listed as both numerical and categorical: {both}")
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise ValueError(f"columns listed more than once: {duplicated}")
    return columns


def _check_frame(name: str, frame: pd.DataFrame, columns: list[str], numerical: list[str]) -> None:
    """Raise ValueError if `frame` is empty, lacks a column or has a non-numeric numerical column."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    if len(frame) == 0:
        raise ValueError(f"{name} frame is empty: drift needs at least one row on each side")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} frame is missing columns {missing}; it has {list(frame.columns)}")
    not_numeric = [c for c in numerical if not pd.api.types.is_numeric_dtype(frame[c])]
    if not_numeric:
        dtypes = {c: str(frame[c].dtype) for c in not_numeric}
        raise ValueError(f"{name} frame has non-numeric numerical columns: {dtypes}")


def _summarise(
    snapshot: dict[str, Any],
    *,
    columns: list[str],
    drift_share: float,
    current_rows: int,
    reference_rows: int,
) -> DriftSummary:
    """Read a `DriftSummary` out of `Snapshot.dict()`, matching metrics by their type."""
    from evidently.metrics import DriftedColumnsCount, ValueDrift

    value_drift_type = ValueDrift.__get_type__()
    drifted_count_type = DriftedColumnsCount.__get_type__()

    scores: dict[str, float] = {}
    methods: dict[str, str] = {}
    shares: list[float] = []
    for metric in snapshot["metrics"]:
        config = metric["config"]
        if config["type"] == value_drift_type:
            scores[config["column"]] = float(metric["value"])
            methods[config["column"]] = str(config["method"])
        elif config["type"] == drifted_count_type:
            shares.append(float(metric["value"]["share"]))

    drifted = {
        test["metric_config"]["params"]["column"]
        for test in snapshot["tests"]
        if test["metric_config"]["params"]["type"] == value_drift_type and test["status"] == _FAILED_TEST_STATUS
    }

    missing = [c for c in columns if c not in scores]
    if len(shares) != 1 or missing:
        raise RuntimeError(
            f"unexpected Evidently snapshot: {len(shares)} DriftedColumnsCount metrics, "
            f"no ValueDrift result for {missing}"
        )
    share = shares[0]
    return DriftSummary(
        drifted_columns=[c for c in columns if c in drifted],
        drifted_share=share,
        column_scores={c: scores[c] for c in columns},
        column_methods={c: methods[c] for c in columns},
        dataset_drift=share >= drift_share,
        current_rows=current_rows,
        reference_rows=reference_rows,
    )
