"""Scores as people read them: the fewest digits that still show the decision.

This model's calibrated scores and its governed threshold often sit very near 0 or 1
(0.99996 against a threshold of 0.99997, say), where three decimals print both as
1.000 and a reader cannot see why the image is below the threshold. Every text that
shows a score to a person (the Secondary Capture's band, the SR's comment, the web
pages, the command lines) is made here, by one rule:

- a value is rounded to the nearest at the fewest decimals from three (0.1 % on the
  percent scale), or three significant digits for a small value, up to eight
  (0.000001 %);
- a value below 1 never prints as 1, a value above 0 never prints as 0: more digits
  are used instead;
- a score and the threshold it was compared with print differently whenever they
  differ, and in the same order as the decision: when nearest rounding would print
  them equal, the lower one is rounded down and the higher one up (each by less than
  the last digit shown) before more digits are used;
- past eight decimals a lone value prints as a bound (``> 0.99999999``), and a pair
  that still cannot be told apart prints with the shortest exact digits of each.

Pure functions: numbers stored in JSON, the database or DICOM measurements keep full
precision; only what a person reads goes through here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal

from chestaid.errors import ConfigurationError

MIN_DECIMALS = 3  # on the 0..1 scale: 0.1 % as a percentage
MAX_DECIMALS = 8  # on the 0..1 scale: 0.000001 % as a percentage
SIGNIFICANT = 3  # a small value shows three significant digits (0.000123) if it can
NOT_AVAILABLE = "n/a"

_ZERO, _ONE = Decimal(0), Decimal(1)


@dataclass(frozen=True)
class _Shown:
    """A printed value: ``value`` itself, or a bound on it (``> value``, ``< value``)."""

    value: Decimal  # on the 0..1 scale
    decimals: int  # decimals on the 0..1 scale
    bound: int = 0  # 0: the value; 1: more than it; -1: less than it

    def text(self, percent: bool) -> str:
        shown = self.value.scaleb(2) if percent else self.value
        digits = max(self.decimals - 2, 0) if percent else self.decimals
        number = f"{shown:.{digits}f}" + (" %" if percent else "")
        return {0: "", 1: "> ", -1: "< "}[self.bound] + number


def _checked(value: float, name: str) -> Decimal:
    x = float(value)
    if not (math.isfinite(x) and 0.0 <= x <= 1.0):
        raise ConfigurationError(f"a {name} to display must be a probability in [0, 1], got {x}")
    return Decimal(x)  # the exact binary value: no rounding before the one chosen here


def _rounded(x: Decimal, decimals: int, rounding: str) -> _Shown:
    return _Shown(x.quantize(_ONE.scaleb(-decimals), rounding=rounding), decimals)


def _faithful(x: Decimal, shown: _Shown) -> bool:
    """A value strictly between 0 and 1 does not print as 0 or as 1."""
    if shown.bound:
        return True
    return (shown.value == _ZERO) == (x == _ZERO) and (shown.value == _ONE) == (x == _ONE)


def _below(a: _Shown, b: _Shown) -> bool:
    """Whatever ``a`` may stand for is below whatever ``b`` may stand for."""
    a_high = a.value if a.bound <= 0 else _ONE
    b_low = b.value if b.bound >= 0 else _ZERO
    # A bound is exclusive on the side that meets the other text.
    return a_high < b_low or (a_high == b_low and (a.bound != 0 or b.bound != 0))


def _agrees(score: Decimal, threshold: Decimal, s: _Shown, t: _Shown) -> bool:
    if score == threshold:
        return s == t
    return _below(s, t) if score < threshold else _below(t, s)


def _fits(score: Decimal, threshold: Decimal, s: _Shown, t: _Shown) -> bool:
    return _faithful(score, s) and _faithful(threshold, t) and _agrees(score, threshold, s, t)


def _exact(x: Decimal) -> _Shown:
    """The shortest decimal that reads back as the same float (distinct floats differ)."""
    digits = Decimal(repr(float(x)))
    places = max(-int(digits.as_tuple().exponent), MIN_DECIMALS)
    return _Shown(digits, places)


def _least_decimals(x: Decimal) -> int:
    """Enough decimals for three significant digits of a small value (0.000123)."""
    if x == _ZERO:
        return MIN_DECIMALS
    return min(max(MIN_DECIMALS, SIGNIFICANT - 1 - x.adjusted()), MAX_DECIMALS)


def _single(x: Decimal) -> _Shown:
    for decimals in range(_least_decimals(x), MAX_DECIMALS + 1):
        shown = _rounded(x, decimals, ROUND_HALF_EVEN)
        if _faithful(x, shown):
            return shown
    # Within half a unit of the last digit of 0 or 1: say which side of it.
    edge = _ONE.scaleb(-MAX_DECIMALS)
    if x < edge:
        return _Shown(edge, MAX_DECIMALS, bound=-1)
    return _Shown(_ONE - edge, MAX_DECIMALS, bound=1)


def _pair(score: Decimal, threshold: Decimal) -> tuple[_Shown, _Shown]:
    alone = _single(score), _single(threshold)
    if not (alone[0].bound or alone[1].bound):
        if score < threshold:
            apart = (ROUND_FLOOR, ROUND_CEILING)
        elif score > threshold:
            apart = (ROUND_CEILING, ROUND_FLOOR)
        else:
            apart = (ROUND_HALF_EVEN, ROUND_HALF_EVEN)
        for decimals in range(MIN_DECIMALS, MAX_DECIMALS + 1):
            # Each value keeps at least the digits it needs alone; then both get more.
            ds, dt = max(decimals, alone[0].decimals), max(decimals, alone[1].decimals)
            for s_rounding, t_rounding in ((ROUND_HALF_EVEN, ROUND_HALF_EVEN), apart):
                s = _rounded(score, ds, s_rounding)
                t = _rounded(threshold, dt, t_rounding)
                if _fits(score, threshold, s, t):
                    return s, t
    if _agrees(score, threshold, *alone):
        return alone
    return _exact(score), _exact(threshold)


def score_text(score: float | None) -> str:
    """One calibrated score (or threshold) on the 0..1 scale, e.g. ``0.873`` or ``0.99996``.

    Args:
        score: a probability in [0, 1]; None or NaN print as ``n/a``.

    Returns:
        The nearest value at the fewest decimals (3 to 8) that does not print a value
        strictly between 0 and 1 as 0 or 1; beyond that, a bound (``> 0.99999999``).

    Raises:
        ConfigurationError: a finite value outside [0, 1].
    """
    if score is None or math.isnan(score):
        return NOT_AVAILABLE
    return _single(_checked(score, "score")).text(percent=False)


def class_probabilities_text(classes: Sequence[tuple[str, float]]) -> str:
    """An N-class model's calibrated probabilities, ``NORMAL 0.120, BACTERIAL 0.700, ...``.

    Args:
        classes: (class name, probability) in the model's order.

    Raises:
        ConfigurationError: a probability outside [0, 1].
    """
    return ", ".join(f"{name} {score_text(p)}" for name, p in classes)


def percent_text(score: float | None) -> str:
    """As :func:`score_text`, as a percentage (``87.3 %``, ``99.996 %``)."""
    if score is None or math.isnan(score):
        return NOT_AVAILABLE
    return _single(_checked(score, "score")).text(percent=True)


def score_pair_text(score: float, threshold: float | None) -> tuple[str, str]:
    """A score and the threshold it was compared with, on the 0..1 scale.

    The two texts differ whenever the values differ, and read in the order of the
    decision: a score below the threshold never prints at or above the printed
    threshold, a score at or above it never prints below it.

    Args:
        score: a probability in [0, 1].
        threshold: the threshold on it; None or NaN (no governed threshold) print as
            ``n/a`` and the score is shown alone.

    Returns:
        ``(score_text, threshold_text)``.

    Raises:
        ConfigurationError: a value outside [0, 1] or a score that is not a number.
    """
    return _pair_texts(score, threshold, percent=False)


def percent_pair_text(score: float, threshold: float | None) -> tuple[str, str]:
    """As :func:`score_pair_text`, as percentages (``99.996 %``, ``99.997 %``)."""
    return _pair_texts(score, threshold, percent=True)


def _pair_texts(score: float, threshold: float | None, *, percent: bool) -> tuple[str, str]:
    s = _checked(score, "score")
    if threshold is None or math.isnan(threshold):
        return _single(s).text(percent), NOT_AVAILABLE
    shown_score, shown_threshold = _pair(s, _checked(threshold, "threshold"))
    return shown_score.text(percent), shown_threshold.text(percent)


def interval_text(low: float | None, high: float | None, *, percent: bool = False) -> str:
    """A 95% interval of a proportion or a score as ``[low, high]``; ``n/a`` when unknown.

    The two ends are a pair like a score and a threshold: they print differently when
    they differ, in order, and neither end prints as 0 or 1 unless it is.
    """
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return NOT_AVAILABLE
    texts = _pair_texts(low, high, percent=percent)
    return f"[{texts[0]}, {texts[1]}]"


# A reading decision needs whole percents: the worklist and the study page show a score
# this way, with the precise texts above for when whole percents cannot tell it apart.
_LOW_END, _HIGH_END = Decimal(1), Decimal(99)


def reading_percent(score: float | None) -> str:
    """A score in whole percents as a reader needs it: ``37 %``, ``<1 %`` below 1 %,
    ``>99 %`` above 99 %; ``n/a`` for None or NaN.

    Raises:
        ConfigurationError: a finite value outside [0, 1].
    """
    if score is None or math.isnan(score):
        return NOT_AVAILABLE
    x = _checked(score, "score").scaleb(2)
    if x < _LOW_END:
        return "<1 %"
    if x > _HIGH_END:
        return ">99 %"
    return f"{x.quantize(_ONE, rounding=ROUND_HALF_UP)} %"


def reading_percent_pair(score: float, threshold: float | None) -> tuple[str, str]:
    """A score and its threshold in whole percents (:func:`reading_percent`), unless that
    prints them alike while they differ: then as :func:`percent_pair_text`, with the
    digits that show on which side of the threshold the score is.

    Raises:
        ConfigurationError: a value outside [0, 1] or a score that is not a number.
    """
    if threshold is None or math.isnan(threshold):
        return reading_percent(score), NOT_AVAILABLE
    texts = reading_percent(score), reading_percent(threshold)
    if texts[0] == texts[1] and float(score) != float(threshold):
        return percent_pair_text(score, threshold)
    return texts
