"""Calibration of predicted click probabilities against observed clicks.

A ranking model can order items well and still be badly calibrated; ad auctions and
budget pacing need pCTR to be a probability. These helpers bin predictions into equal-
width bins on [0, 1] (bin k holds predictions in [k/bins, (k+1)/bins), the last bin
also holds 1.0) and compare the mean prediction with the observed click rate per bin.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

CALIBRATION_COLUMNS = ("bin", "lower", "upper", "mean_predicted", "observed_rate", "count")
"""Columns of the frame returned by `calibration_table`."""


def calibration_table(
    labels: Sequence[int] | np.ndarray | pd.Series,
    predictions: Sequence[float] | np.ndarray | pd.Series,
    bins: int = 10,
) -> pd.DataFrame:
    """Mean prediction and observed positive rate per equal-width probability bin.

    Args:
        labels: Observed outcomes, 0 or 1 (e.g. `clicked`).
        predictions: Predicted probabilities in [0, 1], same length as `labels`.
        bins: Number of equal-width bins on [0, 1].

    Returns:
        One row per non-empty bin, ordered by bin, with columns `bin` (0-based index),
        `lower` and `upper` (bin edges), `mean_predicted`, `observed_rate` and `count`.

    Raises:
        ValueError: If the inputs are empty, differ in length, contain NaN, labels are
            not 0/1, predictions fall outside [0, 1], or `bins` is not a positive int.
    """
    y, p = _check_inputs(labels, predictions)
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    bin_index = np.minimum(np.floor(p * bins).astype(np.int64), bins - 1)
    table = (
        pd.DataFrame({"bin": bin_index, "predicted": p, "label": y})
        .groupby("bin", sort=True)
        .agg(mean_predicted=("predicted", "mean"), observed_rate=("label", "mean"), count=("label", "size"))
        .reset_index()
    )
    table["lower"] = table["bin"] / bins
    table["upper"] = (table["bin"] + 1) / bins
    return table[list(CALIBRATION_COLUMNS)]


def expected_calibration_error(
    labels: Sequence[int] | np.ndarray | pd.Series,
    predictions: Sequence[float] | np.ndarray | pd.Series,
    bins: int = 10,
) -> float:
    """Expected calibration error: count-weighted mean of |observed rate - mean prediction| over bins.

    Args:
        labels: Observed outcomes, 0 or 1.
        predictions: Predicted probabilities in [0, 1], same length as `labels`.
        bins: Number of equal-width bins on [0, 1].

    Returns:
        The ECE in [0, 1]; 0 means every bin's mean prediction equals its click rate.

    Raises:
        ValueError: On invalid inputs, as for `calibration_table`.
    """
    table = calibration_table(labels, predictions, bins)
    gaps = (table["observed_rate"] - table["mean_predicted"]).abs()
    return float((gaps * table["count"]).sum() / table["count"].sum())


def predicted_to_observed_ratio(
    labels: Sequence[int] | np.ndarray | pd.Series,
    predictions: Sequence[float] | np.ndarray | pd.Series,
) -> float:
    """Mean predicted CTR divided by observed CTR (1.0 is calibrated on average).

    Above 1 the model over-predicts clicks, below 1 it under-predicts.

    Args:
        labels: Observed outcomes, 0 or 1.
        predictions: Predicted probabilities in [0, 1], same length as `labels`.

    Returns:
        `mean(predictions) / mean(labels)`.

    Raises:
        ValueError: On invalid inputs, as for `calibration_table`, or when there is
            no positive label (the observed rate is 0 and the ratio is undefined).
    """
    y, p = _check_inputs(labels, predictions)
    observed = y.mean()
    if observed == 0:
        raise ValueError(f"no positive labels among {len(y)} rows: predicted/observed ratio is undefined")
    return float(p.mean() / observed)


def _check_inputs(labels, predictions) -> tuple[np.ndarray, np.ndarray]:
    """Return labels and predictions as float arrays, raising ValueError on bad input."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    p = np.asarray(predictions, dtype=np.float64).ravel()
    if len(y) == 0:
        raise ValueError("labels and predictions are empty")
    if len(y) != len(p):
        raise ValueError(f"labels has {len(y)} values but predictions has {len(p)}")
    if np.isnan(y).any() or np.isnan(p).any():
        raise ValueError(f"NaN in inputs: {int(np.isnan(y).sum())} in labels, {int(np.isnan(p).sum())} in predictions")
    bad_labels = np.unique(y[(y != 0) & (y != 1)])
    if bad_labels.size:
        raise ValueError(f"labels must be 0 or 1, found {bad_labels[:5].tolist()}")
    if (p < 0).any() or (p > 1).any():
        raise ValueError(f"predictions must be in [0, 1], found range [{p.min()}, {p.max()}]")
    return y, p
