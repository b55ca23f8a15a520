"""Scores at a reader's resolution: whole percents, the ends as bounds, the decision kept."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chestaid.display import reading_percent, reading_percent_pair
from chestaid.errors import ConfigurationError


def _number(text: str) -> float:
    """A printed percent as a number, a bound taken at its edge (<1 -> 1, >99 -> 99)."""
    return float(text.strip("<> %"))


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (0.99999999, ">99 %"),
        (1.0, ">99 %"),
        (0.995, ">99 %"),
        (0.99, "99 %"),
        (0.873, "87 %"),
        (0.5, "50 %"),
        (0.375, "38 %"),
        (0.01, "1 %"),
        (0.0099, "<1 %"),
        (1e-9, "<1 %"),
        (0.0, "<1 %"),
    ],
)
def test_a_score_alone_is_a_whole_percent_with_bounds_at_the_ends(
    score: float, expected: str
) -> None:
    assert reading_percent(score) == expected


def test_missing_and_impossible_values() -> None:
    assert reading_percent(None) == "n/a"
    assert reading_percent(math.nan) == "n/a"
    assert reading_percent_pair(0.4, None) == ("40 %", "n/a")
    with pytest.raises(ConfigurationError):
        reading_percent(1.5)
    with pytest.raises(ConfigurationError):
        reading_percent_pair(0.5, -0.1)


@pytest.mark.parametrize(
    ("score", "threshold", "expected"),
    [
        (0.99999999, 0.5, (">99 %", "50 %")),
        (0.0, 0.5, ("<1 %", "50 %")),
        (0.37, 0.62, ("37 %", "62 %")),
        (0.5, 0.5, ("50 %", "50 %")),  # at the threshold: flagged, and printed alike
        (1.0, 1.0, (">99 %", ">99 %")),
    ],
)
def test_known_pairs(score: float, threshold: float, expected: tuple[str, str]) -> None:
    assert reading_percent_pair(score, threshold) == expected


@pytest.mark.parametrize(
    ("score", "threshold"),
    [
        (0.4996, 0.5),  # whole percents: 50 % and 50 %, but below
        (0.5004, 0.5),  # above
        (0.99996, 0.99997),  # both >99 %
        (0.999999995, 0.99999999),
        (0.004, 0.006),  # both <1 %
        (0.985, 0.99),
    ],
)
def test_a_score_never_looks_equal_to_a_threshold_it_is_on_the_other_side_of(
    score: float, threshold: float
) -> None:
    shown_score, shown_threshold = reading_percent_pair(score, threshold)
    assert shown_score != shown_threshold
    assert (_number(shown_score) < _number(shown_threshold)) == (score < threshold)


def test_across_many_pairs_the_printed_order_is_the_decision() -> None:
    rng = np.random.default_rng(14)
    thresholds = np.concatenate([rng.uniform(0, 1, 200), 1 - rng.uniform(0, 1e-4, 100)])
    for threshold in thresholds:
        for offset in (-1e-3, -1e-5, -1e-7, 0.0, 1e-7, 1e-5, 1e-3):
            score = float(min(max(threshold + offset, 0.0), 1.0))
            shown = reading_percent_pair(score, float(threshold))
            if score == threshold:
                assert shown[0] == shown[1]
                continue
            assert shown[0] != shown[1], (score, threshold, shown)
            if "<" in shown[0] + shown[1] or ">" in shown[0] + shown[1]:
                continue  # a bound against a number: apart by construction
            assert (_number(shown[0]) < _number(shown[1])) == (score < threshold), shown
