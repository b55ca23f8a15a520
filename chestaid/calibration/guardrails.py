"""Guardrails on a calibration fitted on local cases: enough cases, and not degenerate.

A calibration that passes these can be put in service; one that fails any is refused
with every reason it fails, in plain words. The checks are pure: they take the
calibrator, the threshold and a few facts of the cases it was fitted on, so a stored
version is checked again, from its row, before it is activated.

Floors (:data:`HARD_FLOORS`): 100 labelled cases, 20 with pneumonia and 20 without.
100 is the lower end of the 100-300 a site is told to collect. 20 per class: the fit is
cross-validated in five folds, so each fold's calibrator (two parameters for Platt) is
fitted on 16 cases of the rarer class, at the edge of the usual ten or more events per
parameter; and the Wilson 95% interval of a sensitivity counted on 20 positives is
already about 0.3 wide, the widest that still says anything about a target near 0.9.
A site's settings may raise these minimums, never lower them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chestaid.metrics import wilson_interval


@dataclass(frozen=True)
class Floors:
    """Minimum labelled cases, overall and of each class, for a fit to be used."""

    cases: int
    positives: int
    negatives: int


HARD_FLOORS = Floors(cases=100, positives=20, negatives=20)
# A threshold this close to 0 or 1 (as a probability) leaves no room for the bands:
# every study is flagged, or none is, and the score reads "100 %".
THRESHOLD_EPSILON = 1e-3
# The calibrated logit's slope on the model's logit: below this the calibrator has
# flattened the model's ranking (a slope of 0.1 squeezes logits of -10..10 into -1..1).
MIN_SLOPE = 0.1
# An isotonic map with fewer distinct levels sorts studies into too few groups to rank.
MIN_ISOTONIC_LEVELS = 5


@dataclass(frozen=True)
class FitFacts:
    """What a fit did on its own cases, as the guardrails need it.

    Attributes:
        cases, positives, negatives: labelled cases the fit used.
        threshold: the governed threshold on the calibrated score.
        target_sensitivity: the sensitivity the threshold was set for.
        lowest_score, highest_score: the calibrated scores of those cases, extremes.
        oof_true_positives, oof_false_negatives: positives called and missed at the
            threshold by scores cross-validated against the fit (out of fold).
    """

    cases: int
    positives: int
    negatives: int
    threshold: float
    target_sensitivity: float
    lowest_score: float
    highest_score: float
    oof_true_positives: int
    oof_false_negatives: int

    def to_dict(self) -> dict[str, Any]:
        """The facts as plain values (a version's report keeps them as ``guardrail_facts``)."""
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> FitFacts:
        """Read the facts back.

        Raises:
            KeyError, TypeError, ValueError: a fact is missing or not a number.
        """
        return cls(
            cases=int(record["cases"]),
            positives=int(record["positives"]),
            negatives=int(record["negatives"]),
            threshold=float(record["threshold"]),
            target_sensitivity=float(record["target_sensitivity"]),
            lowest_score=float(record["lowest_score"]),
            highest_score=float(record["highest_score"]),
            oof_true_positives=int(record["oof_true_positives"]),
            oof_false_negatives=int(record["oof_false_negatives"]),
        )


def count_reasons(cases: int, positives: int, negatives: int, floors: Floors) -> list[str]:
    """Why there are too few labelled cases to fit on (empty when there are enough)."""
    reasons = []
    if cases < floors.cases:
        reasons.append(f"{cases} labelled studies; at least {floors.cases} are needed")
    if positives < floors.positives:
        reasons.append(
            f"{positives} studies with pneumonia confirmed; at least {floors.positives} are needed"
        )
    if negatives < floors.negatives:
        reasons.append(
            f"{negatives} studies with pneumonia ruled out; at least {floors.negatives} are needed"
        )
    return reasons


def calibrator_reasons(calibrator: Mapping[str, Any]) -> list[str]:
    """Why a calibrator's parameters make it degenerate (empty when they do not).

    Temperature and Platt maps must keep a clearly positive slope on the model's logit;
    an isotonic map must have at least :data:`MIN_ISOTONIC_LEVELS` distinct levels.
    """
    name = calibrator.get("name")
    try:
        if name == "temperature":
            temperature = float(calibrator["temperature"])
            if not (math.isfinite(temperature) and temperature > 0):
                return [f"the temperature is {temperature}, not a finite positive number"]
            if 1.0 / temperature < MIN_SLOPE:
                return [
                    f"the temperature {temperature:.3g} flattens the model's scores "
                    f"(slope {1.0 / temperature:.3g}, below {MIN_SLOPE})"
                ]
        elif name == "platt":
            slope, intercept = float(calibrator["a"]), float(calibrator["b"])
            if not (math.isfinite(slope) and math.isfinite(intercept)):
                return ["the Platt slope or intercept is not a finite number"]
            if slope <= 0:
                return [
                    f"the Platt slope is {slope:.3g}: it reverses or erases the model's ranking"
                ]
            if slope < MIN_SLOPE:
                return [f"the Platt slope {slope:.3g} is near zero (below {MIN_SLOPE})"]
        elif name == "isotonic":
            levels = {round(float(v), 12) for v in calibrator["y"]}
            if len(levels) < MIN_ISOTONIC_LEVELS:
                return [
                    f"the isotonic map has {len(levels)} distinct levels; "
                    f"at least {MIN_ISOTONIC_LEVELS} are needed to rank studies"
                ]
        else:
            return [f"the calibrator {name!r} is not one a site may fit"]
    except (KeyError, TypeError, ValueError):
        return [f"the {name} calibrator's parameters are missing or not numbers"]
    return []


def fit_reasons(facts: FitFacts, floors: Floors) -> list[str]:
    """Why a fit must not be used, from its cases and threshold (empty when it may).

    Refused: too few cases of either class; a threshold within
    :data:`THRESHOLD_EPSILON` of 0 or 1, or at or beyond the lowest or highest
    calibrated score of the cases (it then flags all of them, or only the top);
    and an out-of-fold sensitivity whose whole 95% Wilson interval lies below the
    target (the fit will, on the evidence of its own cases, miss the target on
    studies it has not seen; the same rule the monitoring alerts on).
    """
    reasons = count_reasons(facts.cases, facts.positives, facts.negatives, floors)
    t = facts.threshold
    if not math.isfinite(t):
        reasons.append("the threshold is not a number")
    elif t <= THRESHOLD_EPSILON or t >= 1.0 - THRESHOLD_EPSILON:
        reasons.append(
            f"the threshold {t:.8g} is at an end of the 0-1 score scale: "
            "every study would be flagged, or none"
        )
    elif t <= facts.lowest_score:
        reasons.append(
            f"the threshold {t:.6g} is at or below the lowest score of the labelled studies "
            f"({facts.lowest_score:.6g}): every one of them would be flagged"
        )
    elif t >= facts.highest_score:
        reasons.append(
            f"the threshold {t:.6g} is at or above the highest score of the labelled studies "
            f"({facts.highest_score:.6g}): only the very top would be flagged"
        )
    called, missed = facts.oof_true_positives, facts.oof_false_negatives
    if called + missed > 0:
        low, high = wilson_interval(called, called + missed)
        if high < facts.target_sensitivity:
            reasons.append(
                f"the cross-validated sensitivity {called}/{called + missed} has a 95% interval "
                f"[{low:.3f}, {high:.3f}] wholly below the target {facts.target_sensitivity:.3f}"
            )
    else:
        reasons.append("no cross-validated sensitivity could be counted")
    return reasons
