"""Champion and challenger: does a newly trained model replace the one being served?"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromotionDecision:
    """Whether the challenger is promoted, and why, in words a person can read."""

    promote: bool
    reason: str


def decide_promotion(
    metric: str,
    challenger: float,
    champion: float | None,
    *,
    higher_is_better: bool = True,
    min_gain: float = 0.0,
) -> PromotionDecision:
    """Compare a challenger with the champion on the same held-out rows.

    Args:
        metric: the metric's name, for the reason text (e.g. ``ranking_auc``).
        challenger: the new model's value.
        champion: the served model's value on the same rows; None when nothing is served
            yet (or it cannot be scored on these rows), which promotes the challenger.
        higher_is_better: True for AUC-like metrics, False for losses.
        min_gain: how much better the challenger must be; 0 promotes on a tie, so the
            fresher model wins when they are equally good.

    Returns:
        The decision.
    """
    if champion is None:
        return PromotionDecision(True, f"no comparable champion; challenger {metric}={challenger:.4f}")
    gain = challenger - champion if higher_is_better else champion - challenger
    verdict = "beats" if gain >= min_gain else "does not beat"
    return PromotionDecision(
        gain >= min_gain,
        f"challenger {metric}={challenger:.4f} {verdict} champion {champion:.4f} (gain {gain:+.4f}, needed {min_gain:+.4f})",
    )
