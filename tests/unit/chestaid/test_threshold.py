"""The governed threshold: highest specificity at the target sensitivity, ties to the lower."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chestaid.errors import CalibrationError
from chestaid.metrics import wilson_interval
from chestaid.threshold import GovernedThreshold, governed_threshold

# Scores drawn from a small pool so that ties are common, saturated values included:
# calibrated scores of this model pile up at 1.0 and a hair below it.
POOL = [
    0.0,
    1e-12,
    0.2,
    0.5,
    0.7,
    0.99999999999,
    float(np.nextafter(1.0, 0.0)),
    1.0,
]


def _oracle(p: np.ndarray, y: np.ndarray, target: float) -> float:
    """Every distinct score tried as a threshold: the rule written out the long way."""
    needed = max(math.ceil(target * y.sum() - 1e-9), 1)
    best: tuple[int, float] | None = None
    for t in np.unique(p):
        if np.sum((p >= t) & (y == 1)) < needed:
            continue
        negatives_below = int(np.sum((p < t) & (y == 0)))
        # Higher specificity wins; at equal specificity the lower threshold.
        if best is None or negatives_below > best[0]:
            best = (negatives_below, float(t))
    assert best is not None
    return best[1]


def test_of_thresholds_with_equal_specificity_the_lower_one_is_kept() -> None:
    # The old rule kept the highest threshold reaching the target (0.5: 4 of 7
    # pneumonias); 0.4 has the same specificity (two of three normals below it) and
    # finds a fifth pneumonia.
    p = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    y = np.array([0, 1, 1, 0, 1, 1, 1, 0, 1, 1])
    governed = governed_threshold(p, y, 0.5, n_boot=0)
    assert governed.threshold == 0.4
    assert (governed.true_positives, governed.true_negatives) == (5, 2)
    assert governed.achieved_sensitivity == pytest.approx(5 / 7)
    assert governed.specificity == pytest.approx(2 / 3)


def test_separable_cases_keep_every_pneumonia() -> None:
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    y = np.array([0, 0, 1, 1, 1, 1, 1, 1])
    governed = governed_threshold(p, y, 0.5, n_boot=0)
    assert governed.threshold == 0.3
    assert governed.achieved_sensitivity == 1.0 and governed.specificity == 1.0


def test_saturated_scores_are_separated_by_the_threshold_the_rule_reports() -> None:
    below_one = float(np.nextafter(1.0, 0.0))
    p = np.array([1.0] * 6 + [below_one] * 3 + [0.99999999999] * 4 + [0.3] * 5)
    y = np.array([1] * 6 + [0, 1, 1] + [0, 0, 0, 1] + [0, 0, 0, 0, 1])
    governed = governed_threshold(p, y, 0.85, n_boot=0)
    # 9 of 10 pneumonias are needed: the 8 at and above below_one are too few, so the
    # threshold goes down to 0.99999999999, and not to 0.3 (four normals lower).
    assert governed.threshold == 0.99999999999
    called = p >= governed.threshold
    assert governed.true_positives == int(np.sum(called & (y == 1))) == 9
    assert governed.achieved_sensitivity == 9 / 10
    assert governed.true_negatives == int(np.sum(~called & (y == 0))) == 4
    # The threshold is a case's own score: the cases it claims are exactly those at
    # or above it, with no midpoint that floating point could round onto a score.
    assert governed.threshold in p[y == 1]


@settings(max_examples=300, deadline=None)
@given(
    cases=st.lists(
        st.tuples(st.sampled_from(POOL), st.integers(0, 1)), min_size=2, max_size=40
    ).filter(lambda c: {label for _, label in c} == {0, 1}),
    target=st.sampled_from([0.1, 0.5, 0.8, 0.9, 0.95, 1.0]),
)
def test_the_rule_matches_trying_every_threshold(
    cases: list[tuple[float, int]], target: float
) -> None:
    p = np.array([score for score, _ in cases])
    y = np.array([label for _, label in cases])
    governed = governed_threshold(p, y, target, n_boot=0)
    assert governed.threshold == _oracle(p, y, target)
    called = p >= governed.threshold
    tp = int(np.sum(called & (y == 1)))
    assert governed.true_positives == tp
    assert governed.achieved_sensitivity == tp / y.sum()
    assert tp >= math.ceil(target * y.sum() - 1e-9)
    assert governed.specificity == np.mean(~called[y == 0])
    assert governed.threshold in p[y == 1]


def test_intervals_are_wilson_and_the_threshold_interval_holds_case_scores() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    p = np.round(np.clip(0.35 * y + rng.random(400) * 0.65, 0, 1), 3)
    governed = governed_threshold(p, y, 0.9, n_boot=200, seed=1)
    assert governed.sensitivity_ci95 == wilson_interval(
        governed.true_positives, governed.n_positive
    )
    assert governed.specificity_ci95 == wilson_interval(
        governed.true_negatives, governed.n_negative
    )
    assert governed.threshold_ci95 is not None
    low, high = governed.threshold_ci95
    assert low <= governed.threshold <= high and low < high
    assert low in p and high in p
    again = governed_threshold(p, y, 0.9, n_boot=200, seed=1)
    assert again.threshold_ci95 == governed.threshold_ci95
    assert governed_threshold(p, y, 0.9, n_boot=0).threshold_ci95 is None


def test_the_record_round_trips_and_an_old_record_still_loads() -> None:
    p = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    y = np.array([0, 1, 1, 0, 1, 1, 1, 0, 1, 1])
    governed = governed_threshold(p, y, 0.5, n_boot=50)
    record = governed.to_dict()
    assert GovernedThreshold.from_dict(record) == governed
    old = {
        k: record[k]
        for k in (
            "threshold",
            "target_sensitivity",
            "achieved_sensitivity",
            "specificity",
            "n_positive",
            "n_negative",
        )
    }
    loaded = GovernedThreshold.from_dict(old)
    assert (loaded.true_positives, loaded.true_negatives) == (5, 2)
    assert loaded.sensitivity_ci95 == wilson_interval(5, 7)
    assert loaded.specificity_ci95 == wilson_interval(2, 3)
    assert loaded.threshold_ci95 is None
    with pytest.raises(CalibrationError, match="threshold"):
        GovernedThreshold.from_dict({"target_sensitivity": 0.9})


@pytest.mark.parametrize(("labels", "message"), [([0, 0, 0], "positive"), ([1, 1, 1], "normal")])
def test_one_class_cases_are_refused(labels: list[int], message: str) -> None:
    with pytest.raises(CalibrationError, match=message):
        governed_threshold(np.array([0.1, 0.5, 0.9]), np.array(labels))
