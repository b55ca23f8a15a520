"""Scores as people read them: digits enough to show the decision, never a false 0 or 1."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chestaid.display import (
    MAX_DECIMALS,
    interval_text,
    percent_pair_text,
    percent_text,
    score_pair_text,
    score_text,
)
from chestaid.errors import ConfigurationError


def _read(text: str, percent: bool) -> tuple[Decimal, int, int]:
    """(value on the 0..1 scale, bound, decimals on the 0..1 scale) of a printed value."""
    bound = 0
    if text.startswith("> "):
        bound, text = 1, text[2:]
    elif text.startswith("< "):
        bound, text = -1, text[2:]
    if percent:
        assert text.endswith(" %"), text
        text = text[:-2]
    decimals = len(text.split(".")[1]) + (2 if percent else 0)
    value = Decimal(text).scaleb(-2) if percent else Decimal(text)
    return value, bound, decimals


def _below(a: tuple[Decimal, int, int], b: tuple[Decimal, int, int]) -> bool:
    """Every value text ``a`` may stand for is below every value ``b`` may stand for."""
    a_high = a[0] if a[1] <= 0 else Decimal(1)
    b_low = b[0] if b[1] >= 0 else Decimal(0)
    return a_high < b_low or (a_high == b_low and (a[1] != 0 or b[1] != 0))


def _check_alone(x: float, text: str, percent: bool) -> None:
    value, bound, decimals = _read(text, percent)
    if bound:
        # Only within half a unit of the eighth decimal of 0 or 1, on the right side.
        edge = Decimal(1).scaleb(-MAX_DECIMALS)
        assert (x > 1 - edge and bound == 1) or (x < edge and bound == -1), text
        return
    assert (value == 0) == (x == 0), f"{x} printed as {text}"
    assert (value == 1) == (x == 1), f"{x} printed as {text}"
    if decimals <= MAX_DECIMALS:
        assert abs(value - Decimal(x)) <= Decimal(5).scaleb(-decimals - 1), (x, text)
    else:
        assert float(value) == x, "past eight decimals a value prints exactly"


# Values near 0 and 1 and a few in between, as floats and as their neighbours.
EDGES = st.one_of(
    st.floats(0.0, 1.0),
    st.integers(1, 10**9).map(lambda k: 1.0 - k * 1e-12),
    st.integers(0, 10**6).map(lambda k: 1.0 - k * 1e-7),
    st.integers(0, 10**6).map(lambda k: k * 1e-9),
    st.sampled_from([0.0, 1.0, float(np.nextafter(1.0, 0.0)), 5e-324, 0.5]),
)


def _near(x: float, step: int) -> float:
    y = x
    for _ in range(abs(step)):
        y = float(np.nextafter(y, 2.0 if step > 0 else -1.0))
    return min(max(y, 0.0), 1.0)


@settings(max_examples=1500, deadline=None)
@given(
    score=EDGES,
    threshold=EDGES,
    step=st.integers(-3, 3),
    near=st.booleans(),
    percent=st.booleans(),
)
@example(score=0.99996, threshold=0.99997, step=0, near=False, percent=False)
@example(score=0.99996, threshold=0.99997, step=0, near=False, percent=True)
@example(score=0.999961, threshold=0.999964, step=0, near=False, percent=True)
@example(score=1 - 1e-10, threshold=1 - 2e-10, step=0, near=False, percent=False)
@example(score=1e-12, threshold=0.0, step=0, near=False, percent=False)
def test_a_pair_prints_apart_and_in_the_order_of_the_decision(
    score: float, threshold: float, step: int, near: bool, percent: bool
) -> None:
    if near:  # the threshold a few floats from the score, or the score itself
        threshold = _near(score, step)
    texts = percent_pair_text(score, threshold) if percent else score_pair_text(score, threshold)
    s, t = _read(texts[0], percent), _read(texts[1], percent)
    if score == threshold:
        assert texts[0] == texts[1]
    else:
        assert texts[0] != texts[1]
    if score < threshold:
        assert _below(s, t), texts
    elif score > threshold:
        assert _below(t, s), texts
    for x, text in ((score, texts[0]), (threshold, texts[1])):
        value, bound, decimals = _read(text, percent)
        if not bound:
            assert (value == 0) == (x == 0) and (value == 1) == (x == 1), (x, text)
            if decimals > MAX_DECIMALS:
                assert float(value) == x, "past eight decimals a value prints exactly"


@settings(max_examples=1000, deadline=None)
@given(x=EDGES, percent=st.booleans())
def test_a_value_alone_is_the_nearest_at_the_fewest_decimals_without_a_false_0_or_1(
    x: float, percent: bool
) -> None:
    _check_alone(x, percent_text(x) if percent else score_text(x), percent)


@pytest.mark.parametrize(
    ("score", "threshold", "expected"),
    [
        (0.87, 0.42, ("0.870", "0.420")),
        (0.99996, 0.99997, ("0.99996", "0.99997")),
        (0.99996, 0.2, ("0.99996", "0.200")),
        (0.4996, 0.4997, ("0.499", "0.500")),  # apart, each by less than 0.001
        (0.5, 0.5, ("0.500", "0.500")),
        (1.0, 1.0, ("1.000", "1.000")),
        (0.0001234, 0.5, ("0.000123", "0.500")),
        (1 - 1e-10, 0.5, ("> 0.99999999", "0.500")),
        (1 - 1e-10, 1.0, ("> 0.99999999", "1.000")),
        (1 - 1e-10, 1 - 2e-10, ("0.9999999999", "0.9999999998")),
    ],
)
def test_known_pairs(score: float, threshold: float, expected: tuple[str, str]) -> None:
    assert score_pair_text(score, threshold) == expected


def test_percentages_and_missing_values() -> None:
    assert percent_pair_text(0.99996, 0.99997) == ("99.996 %", "99.997 %")
    assert percent_text(0.873) == "87.3 %"
    assert percent_text(None) == score_text(float("nan")) == "n/a"
    assert score_pair_text(0.3, None) == ("0.300", "n/a")
    assert interval_text(0.912, 1.0) == "[0.912, 1.000]"
    assert interval_text(0.9, 0.95, percent=True) == "[90.0 %, 95.0 %]"
    assert interval_text(float("nan"), 0.5) == "n/a"


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.inf])
def test_values_outside_0_1_are_refused(bad: float) -> None:
    with pytest.raises(ConfigurationError, match="probability"):
        score_text(bad)
    with pytest.raises(ConfigurationError, match="probability"):
        score_pair_text(0.5, bad)
