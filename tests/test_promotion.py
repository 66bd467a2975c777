"""Champion and challenger decisions."""

import pytest

from models.promotion import decide_promotion

pytestmark = pytest.mark.unit


def test_nothing_served_yet_promotes():
    decision = decide_promotion("ranking_auc", 0.61, None)
    assert decision.promote and "no comparable champion" in decision.reason


def test_higher_is_better_metric():
    assert decide_promotion("ranking_auc", 0.70, 0.65).promote
    assert decide_promotion("ranking_auc", 0.65, 0.65).promote  # a tie goes to the fresher model
    losing = decide_promotion("ranking_auc", 0.64, 0.65)
    assert not losing.promote and "does not beat champion 0.6500" in losing.reason


def test_lower_is_better_metric_and_a_required_gain():
    assert decide_promotion("logloss", 0.150, 0.160, higher_is_better=False).promote
    assert not decide_promotion("logloss", 0.170, 0.160, higher_is_better=False).promote
    assert not decide_promotion("ranking_auc", 0.655, 0.650, min_gain=0.01).promote
