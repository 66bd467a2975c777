"""A/B test statistics of served predictions against observed outcomes.

Two steps, both plain pandas (the normal distribution from the standard library):

``attribute_outcomes`` joins a day of prediction logs (one row per request, ``items`` and
``scores`` lists, as ``serving.prediction_log_reader`` writes them) with outcome events
(``user_id, item_id, event_ts, clicked``, e.g. the warehouse's ``fct_events``). Each
served (request, item) pair is one *impression* of the arm that served it. An event of
the same user and item at or after the prediction, at most ``window`` later (default 30
minutes), is attributed to the newest such prediction (last touch: an event counts once,
even when the user was served the item twice); the pair's outcome is whether any of its
events was a click. A pair with no attributed event has no observed outcome and is left
out of the statistics; the join coverage reports how many.

``compare_arms`` then computes, per arm, the impressions with an outcome (``requests``),
clicks, CTR with a Wilson 95 % interval, mean served score (pCTR), calibration (mean
pCTR / CTR; 1 is calibrated) and the log loss of the served scores, and tests each
challenger against the control arm with a two-sided two-proportion z-test (pooled
standard error). The verdict of a challenger:

- ``keep_running`` while either arm has fewer impressions than the required sample size
  (the standard formula for a two-sided test at ``alpha`` with ``power`` to detect a
  relative change of ``min_detectable_effect`` of the control's CTR, the larger n of an
  increase and a decrease), and also when the sample is reached but the difference is not
  significant (no detectable difference: keeping the champion is the default);
- ``promote`` when the sample is reached and the challenger's CTR is significantly higher
  (p < alpha), ``retire`` when significantly lower.

Caveats, stated rather than hidden: impressions of one request (and one user) are not
independent, so the z-test's standard error is optimistic when users see several items;
and reading a daily report repeatedly and stopping at the first significant day
("peeking") inflates the false alarm rate above ``alpha``. The required sample guards
against the worst of it by not deciding early.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

VERDICTS = ("promote", "retire", "keep_running")
ATTRIBUTION_WINDOW = dt.timedelta(minutes=30)
# The conventional control arm (serving.experiments.CONTROL_ARM).
CONTROL_ARM = "champion"
DEFAULT_ALPHA = 0.05
DEFAULT_POWER = 0.8
DEFAULT_MIN_DETECTABLE_EFFECT = 0.10  # relative to the control's CTR
_CI_LEVEL = 0.95
_LOGLOSS_EPS = 1e-7


# ---- the join -------------------------------------------------------------------------


@dataclass(frozen=True)
class Attribution:
    """Served (request, item) pairs of the experiment's requests with their outcomes.

    Attributes:
        frame: one row per served pair of a request with an arm: ``request_id, arm,
            user_id, item_id, logged_at`` (naive UTC), ``score``, ``clicked`` (0/1, NaN
            when unmatched) and ``matched``.
        logged_predictions: requests in the logs.
        in_experiment: of them, requests with an arm.
        unattributable_requests: requests with an arm but no (user, item) to match: no
            user id, no items, or items and scores of different lengths.
        served: served pairs of the requests with an arm (rows of ``frame``).
        matched: pairs with an attributed outcome event.
    """

    frame: pd.DataFrame
    logged_predictions: int
    in_experiment: int
    unattributable_requests: int
    served: int
    matched: int

    @property
    def unmatched(self) -> int:
        return self.served - self.matched

    def coverage(self) -> dict[str, int | float | None]:
        """The join's figures as plain data (``match_rate``: matched / served, None for none)."""
        return {
            "logged_predictions": self.logged_predictions,
            "in_experiment": self.in_experiment,
            "unattributable_requests": self.unattributable_requests,
            "served_items": self.served,
            "matched": self.matched,
            "unmatched": self.unmatched,
            "match_rate": round(self.matched / self.served, 4) if self.served else None,
        }


_PAIR_COLUMNS = ["request_id", "arm", "user_id", "item_id", "logged_at", "score"]


def attribute_outcomes(
    predictions: pd.DataFrame, events: pd.DataFrame, window: dt.timedelta = ATTRIBUTION_WINDOW
) -> Attribution:
    """Attribute outcome ``events`` to the served items of ``predictions`` (module docstring).

    Args:
        predictions: prediction log rows: ``request_id, logged_at`` (UTC), ``arm``,
            ``user_id``, ``items``, ``scores`` (and ``endpoint``, ``features`` optional: a
            ``/predict`` request of several rows without a ``user_id`` takes each row's
            ``user_id`` from ``features["rows"]``).
        events: ``user_id, item_id, event_ts`` (UTC, naive or aware), ``clicked`` (0/1).
        window: how long after a prediction an event still counts as its outcome.

    Raises:
        ValueError: when a required column is missing.
    """
    _require(predictions, ["request_id", "logged_at", "arm", "user_id", "items", "scores"], "predictions")
    _require(events, ["user_id", "item_id", "event_ts", "clicked"], "events")
    logged = len(predictions)
    served = predictions["shadow_of"].isna() if "shadow_of" in predictions.columns else True
    requests = predictions[predictions["arm"].notna() & served]  # a shadow arm's answers were never shown
    pairs, unattributable = [], 0
    has_features = "features" in requests.columns
    for row in requests.itertuples(index=False):
        items, scores = list(row.items), list(row.scores)
        users = _row_users(row.user_id, row.features if has_features else None, len(items))
        if not items or len(items) != len(scores) or users is None:
            unattributable += 1
            continue
        for item, score, user in zip(items, scores, users, strict=True):
            pairs.append((row.request_id, row.arm, user, str(item), row.logged_at, float(score)))
    frame = pd.DataFrame(pairs, columns=_PAIR_COLUMNS)
    frame["logged_at"] = _naive_utc(frame["logged_at"])
    frame["clicked"] = np.nan
    frame["matched"] = False
    if len(frame) and len(events):
        served = frame[["user_id", "item_id", "logged_at"]].assign(pair=np.arange(len(frame)))
        outcomes = events[
            events["user_id"].notna()
            & events["item_id"].notna()
            & events["clicked"].notna()
            & events["event_ts"].notna()
        ]
        outcomes = pd.DataFrame(
            {
                "user_id": outcomes["user_id"].astype(str),
                "item_id": outcomes["item_id"].astype(str),
                "event_ts": _naive_utc(outcomes["event_ts"]),
                "clicked": outcomes["clicked"].astype(float),
            }
        )
        joined = pd.merge_asof(
            outcomes.sort_values("event_ts"),
            served.sort_values("logged_at"),
            left_on="event_ts",
            right_on="logged_at",
            by=["user_id", "item_id"],
            direction="backward",
            tolerance=pd.Timedelta(window),
            allow_exact_matches=True,
        ).dropna(subset=["pair"])
        clicked = joined.groupby(joined["pair"].astype(int))["clicked"].max()
        frame.loc[clicked.index, "clicked"] = clicked.to_numpy()
        frame.loc[clicked.index, "matched"] = True
    return Attribution(
        frame=frame,
        logged_predictions=logged,
        in_experiment=len(requests),
        unattributable_requests=unattributable,
        served=len(frame),
        matched=int(frame["matched"].sum()),
    )


def _row_users(user_id: object, features: object, n_items: int) -> list[str] | None:
    """The user of each of a request's ``n_items`` pairs, or None when unknown."""
    if user_id is not None and not (isinstance(user_id, float) and math.isnan(user_id)):
        return [str(user_id)] * n_items
    if isinstance(features, str):
        try:
            features = json.loads(features)
        except json.JSONDecodeError:
            return None
    rows = features.get("rows") if isinstance(features, dict) else None
    if not isinstance(rows, list) or len(rows) != n_items:
        return None
    users = [row.get("user_id") if isinstance(row, dict) else None for row in rows]
    return None if any(user is None for user in users) else [str(user) for user in users]


def _naive_utc(values: pd.Series) -> pd.Series:
    """Timestamps as naive UTC ``datetime64[ns]`` (aware ones converted, naive ones taken as UTC)."""
    stamps = pd.to_datetime(values, utc=True)
    return stamps.dt.tz_localize(None).astype("datetime64[ns]")


def _require(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {', '.join(missing)}")


# ---- the statistics ---------------------------------------------------------------------


@dataclass(frozen=True)
class ArmStats:
    """One arm's observed impressions.

    Attributes:
        arm: its name.
        requests: impressions with an observed outcome (rows of the compared frame).
        clicks: of them, clicked.
        ctr: clicks / requests (NaN without requests).
        ctr_low, ctr_high: the Wilson 95 % interval of ``ctr``.
        mean_score: the mean served score (predicted CTR).
        calibration: mean_score / ctr (None when ctr is 0 or undefined).
        logloss: the log loss of the served scores (None when a score lies outside [0, 1]).
    """

    arm: str
    requests: int
    clicks: int
    ctr: float
    ctr_low: float
    ctr_high: float
    mean_score: float
    calibration: float | None
    logloss: float | None


@dataclass(frozen=True)
class ArmTest:
    """A challenger's two-proportion z-test against the control.

    Attributes:
        arm, control: the challenger and the control arm.
        difference: CTR(arm) - CTR(control).
        relative_lift: difference / CTR(control) (None when the control's CTR is 0).
        z, p_value: the test statistic (pooled standard error) and its two-sided p-value.
        required_per_arm: impressions each arm needs (None when the control's CTR is 0 or 1).
        sample_reached: both arms have at least ``required_per_arm`` impressions.
        significant: p_value < alpha.
        verdict: ``promote``, ``retire`` or ``keep_running``.
        reason: the verdict in words.
    """

    arm: str
    control: str
    difference: float
    relative_lift: float | None
    z: float
    p_value: float
    required_per_arm: int | None
    sample_reached: bool
    significant: bool
    verdict: str
    reason: str


@dataclass(frozen=True)
class ArmComparison:
    """What ``compare_arms`` found: each arm's figures and each challenger's test."""

    control: str
    arms: tuple[ArmStats, ...]
    tests: tuple[ArmTest, ...]
    alpha: float
    power: float
    min_detectable_effect: float

    def arm_frame(self) -> pd.DataFrame:
        """One row per arm, the fields of ``ArmStats``."""
        return pd.DataFrame([vars(a) for a in self.arms], columns=list(ArmStats.__dataclass_fields__))

    def test_frame(self) -> pd.DataFrame:
        """One row per challenger, the fields of ``ArmTest``."""
        return pd.DataFrame([vars(t) for t in self.tests], columns=list(ArmTest.__dataclass_fields__))

    def verdicts(self) -> dict[str, str]:
        """Challenger -> verdict."""
        return {t.arm: t.verdict for t in self.tests}

    def arms_markdown(self) -> str:
        """The per-arm table: requests, clicks, CTR [95 % CI], mean pCTR, calibration, logloss."""
        rows = [
            {
                "arm": a.arm + (" (control)" if a.arm == self.control else ""),
                "requests": a.requests,
                "clicks": a.clicks,
                "CTR [95% CI]": "n/a" if not a.requests else f"{a.ctr:.4f} [{a.ctr_low:.4f}, {a.ctr_high:.4f}]",
                "mean pCTR": "n/a" if not a.requests else f"{a.mean_score:.4f}",
                "calibration": _fmt(a.calibration, ".3f"),
                "logloss": _fmt(a.logloss, ".4f"),
            }
            for a in self.arms
        ]
        return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)

    def tests_markdown(self) -> str:
        """The per-challenger table: difference, lift, z, p, required sample and verdict."""
        if not self.tests:
            return "no challenger: only the control arm has traffic"
        rows = [
            {
                "challenger": t.arm,
                "vs": t.control,
                "CTR difference": f"{t.difference:+.4f}",
                "relative lift": _fmt(t.relative_lift, "+.2%"),
                "z": f"{t.z:.2f}",
                "p-value": f"{t.p_value:.4g}",
                "required n per arm": _fmt(t.required_per_arm, ","),
                "sample reached": "yes" if t.sample_reached else "no",
                "verdict": t.verdict,
            }
            for t in self.tests
        ]
        return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


_STANDARD_NORMAL = NormalDist()


def _normal_cdf(x: float) -> float:
    """P(Z <= x) for a standard normal Z, through ``erfc`` so that far tails keep their
    digits (``2 * _normal_cdf(-abs(z))`` is a two-sided p-value)."""
    return 0.5 * math.erfc(-x / math.sqrt(2))


def _fmt(value: float | int | None, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, spec)


def wilson_interval(clicks: int, n: int, level: float = _CI_LEVEL) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``clicks / n`` (NaN, NaN for n = 0)."""
    if n <= 0:
        return math.nan, math.nan
    z = _STANDARD_NORMAL.inv_cdf(0.5 + level / 2)
    p = clicks / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def required_sample_size(
    baseline_ctr: float,
    min_detectable_effect: float = DEFAULT_MIN_DETECTABLE_EFFECT,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
) -> int | None:
    """Impressions per arm for a two-sided two-proportion test at ``alpha`` to detect a
    relative change of ``min_detectable_effect`` of ``baseline_ctr`` with ``power``::

        n = (z_{1-alpha/2} sqrt(2 p(1-p)) + z_{power} sqrt(p1(1-p1) + p2(1-p2)))^2 / (p2 - p1)^2

    with ``p`` the mean of ``p1`` (the baseline) and ``p2 = p1 (1 ± effect)``; the larger n
    of the increase and the decrease (an increase beyond 1 is left out). None when the
    baseline is 0 or 1 (no effect is relative to it).
    """
    if not 0 < baseline_ctr < 1 or min_detectable_effect <= 0:
        return None
    z_alpha, z_power = _STANDARD_NORMAL.inv_cdf(1 - alpha / 2), _STANDARD_NORMAL.inv_cdf(power)
    sizes = []
    for p2 in (baseline_ctr * (1 + min_detectable_effect), baseline_ctr * (1 - min_detectable_effect)):
        if not 0 < p2 < 1:
            continue
        pooled = (baseline_ctr + p2) / 2
        numerator = z_alpha * math.sqrt(2 * pooled * (1 - pooled)) + z_power * math.sqrt(
            baseline_ctr * (1 - baseline_ctr) + p2 * (1 - p2)
        )
        sizes.append(math.ceil(numerator**2 / (p2 - baseline_ctr) ** 2))
    return max(sizes) if sizes else None


def two_proportion_power(p1: float, p2: float, n_per_arm: int, alpha: float = DEFAULT_ALPHA) -> float:
    """The power of the two-sided two-proportion z-test to tell ``p1`` from ``p2`` with
    ``n_per_arm`` impressions per arm (normal approximation)."""
    pooled = (p1 + p2) / 2
    null_se = math.sqrt(2 * pooled * (1 - pooled) / n_per_arm)
    se = math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / n_per_arm)
    z_alpha = _STANDARD_NORMAL.inv_cdf(1 - alpha / 2)
    shift = abs(p2 - p1)
    return _normal_cdf((shift - z_alpha * null_se) / se) + _normal_cdf((-shift - z_alpha * null_se) / se)


def compare_arms(
    frame: pd.DataFrame,
    control: str | None = None,
    arms: Sequence[str] | None = None,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
    min_detectable_effect: float = DEFAULT_MIN_DETECTABLE_EFFECT,
) -> ArmComparison:
    """Per-arm figures and each challenger's test against the control (module docstring).

    Args:
        frame: one row per impression with an observed outcome: ``arm``, ``score`` (the
            served pCTR), ``clicked`` (0/1).
        control: the control arm; default ``champion`` when it is an arm, else the first arm.
        arms: the arms to report, in order (an arm without rows is reported with 0
            requests); default the arms of ``frame`` in order of appearance.
        alpha: the test's significance level.
        power: the power the required sample size is computed for.
        min_detectable_effect: the relative change of the control's CTR to detect.

    Raises:
        ValueError: for a missing column, a null, a ``clicked`` other than 0/1, no arm, or
            a control that is not an arm.
    """
    _require(frame, ["arm", "score", "clicked"], "frame")
    for column in ("arm", "score", "clicked"):
        nulls = int(frame[column].isna().sum())
        if nulls:
            raise ValueError(f"frame: {column} has {nulls} null(s); pass only impressions with an observed outcome")
    clicked = frame["clicked"].astype(float)
    if not clicked.isin([0.0, 1.0]).all():
        raise ValueError(f"frame: clicked must be 0 or 1, got {sorted(set(clicked.unique()) - {0.0, 1.0})[:5]}")
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha and power must lie in (0, 1), got {alpha}, {power}")
    names = list(arms) if arms is not None else list(dict.fromkeys(frame["arm"].astype(str)))
    if not names:
        raise ValueError("no arm to compare: the frame is empty and no arms were given")
    unknown = sorted(set(frame["arm"].astype(str)) - set(names))
    if unknown:
        raise ValueError(f"frame: arm(s) {', '.join(unknown)} not among the arms {names}")
    if control is None:
        control = CONTROL_ARM if CONTROL_ARM in names else names[0]
    if control not in names:
        raise ValueError(f"control {control!r} is not one of the arms {names}")
    names = [control, *(name for name in names if name != control)]

    scores = frame["score"].astype(float).to_numpy()
    labels = clicked.to_numpy()
    groups = frame["arm"].astype(str).to_numpy()
    stats = {name: _arm_stats(name, scores[groups == name], labels[groups == name]) for name in names}
    tests = tuple(
        _test(stats[control], stats[name], alpha, power, min_detectable_effect) for name in names if name != control
    )
    return ArmComparison(
        control=control,
        arms=tuple(stats[name] for name in names),
        tests=tests,
        alpha=alpha,
        power=power,
        min_detectable_effect=min_detectable_effect,
    )


def _arm_stats(name: str, scores: np.ndarray, labels: np.ndarray) -> ArmStats:
    n, clicks = len(labels), int(labels.sum())
    if n == 0:
        return ArmStats(name, 0, 0, math.nan, math.nan, math.nan, math.nan, None, None)
    ctr = clicks / n
    low, high = wilson_interval(clicks, n)
    mean_score = float(scores.mean())
    logloss = None
    if ((scores >= 0) & (scores <= 1)).all():
        clipped = np.clip(scores, _LOGLOSS_EPS, 1 - _LOGLOSS_EPS)
        logloss = float(-np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped)))
    return ArmStats(
        arm=name,
        requests=n,
        clicks=clicks,
        ctr=ctr,
        ctr_low=low,
        ctr_high=high,
        mean_score=mean_score,
        calibration=mean_score / ctr if ctr > 0 else None,
        logloss=logloss,
    )


def _test(control: ArmStats, arm: ArmStats, alpha: float, power: float, effect: float) -> ArmTest:
    n1, n2 = control.requests, arm.requests
    if n1 == 0 or n2 == 0:
        missing = control.arm if n1 == 0 else arm.arm
        return ArmTest(
            arm=arm.arm,
            control=control.arm,
            difference=math.nan,
            relative_lift=None,
            z=math.nan,
            p_value=math.nan,
            required_per_arm=None,
            sample_reached=False,
            significant=False,
            verdict="keep_running",
            reason=f"no observed impressions of {missing} yet",
        )
    p1, p2 = control.ctr, arm.ctr
    pooled = (control.clicks + arm.clicks) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    z = (p2 - p1) / se if se > 0 else 0.0
    p_value = 2 * _normal_cdf(-abs(z))
    required = required_sample_size(p1, effect, alpha, power)
    reached = required is not None and min(n1, n2) >= required
    significant = p_value < alpha
    if not reached:
        verdict = "keep_running"
        reason = (
            f"sample not reached: {min(n1, n2):,} of {required:,} impressions per arm needed to detect a "
            f"{effect:.0%} relative change at alpha {alpha:g} with power {power:.0%}"
            if required is not None
            else f"the control's CTR is {p1:g}: no sample size to reach"
        )
    elif significant:
        verdict = "promote" if p2 > p1 else "retire"
        reason = f"{arm.arm}'s CTR is significantly {'higher' if p2 > p1 else 'lower'} (p = {p_value:.3g} < {alpha:g})"
    else:
        verdict = "keep_running"
        reason = f"sample reached and no significant difference (p = {p_value:.3g} >= {alpha:g}): keep the control"
    return ArmTest(
        arm=arm.arm,
        control=control.arm,
        difference=p2 - p1,
        relative_lift=(p2 - p1) / p1 if p1 > 0 else None,
        z=z,
        p_value=p_value,
        required_per_arm=required,
        sample_reached=reached,
        significant=significant,
        verdict=verdict,
        reason=reason,
    )
