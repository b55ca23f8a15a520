"""Scoring the cases of one robustness condition, and the records made of the outcome.

Corruptions act on the decoded grey image in [0, 1] *before* the shared
:func:`chestaid.preprocess.preprocess`; random ones draw from a generator seeded
with ``(seed, case index)``, so a case gets the same noise in every condition and
every run. An image whose ``assessment.assessable`` is False counts as NOT flagged
(at the governed threshold and at 0.5). Which conditions are scored is
:mod:`chestaid.robustness`'s.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from chestaid.corruptions import corrupt, describe
from chestaid.inference import Prediction
from chestaid.metrics import bootstrap_ci, roc_auc
from chestaid.preprocess import PreprocessSpec, preprocess

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


class BatchScorer(Protocol):
    """What the report needs of a scorer; :class:`chestaid.inference.Scorer` is one."""

    @property
    def spec(self) -> PreprocessSpec: ...

    @property
    def threshold(self) -> float: ...  # nan when no threshold is governed

    def score_batch(self, batch: torch.Tensor) -> list[Prediction]: ...


@dataclass(frozen=True)
class Scores:
    """Per-image outcomes of one condition, in case order."""

    logit: np.ndarray  # float64
    score: np.ndarray  # calibrated, float64
    assessable: np.ndarray  # bool
    flagged: np.ndarray  # bool: assessable and at or above the governed threshold
    at_half: np.ndarray  # bool: assessable and score >= 0.5
    reasons: tuple[str | None, ...]  # not-assessable reason per image
    turned: np.ndarray  # bool: the scorer turned the image upright before scoring it

    @classmethod
    def from_predictions(cls, predictions: Sequence[Prediction]) -> Scores:
        """Collect predictions; a not-assessable image is never counted as flagged."""
        assessable = np.array([p.assessment.assessable for p in predictions], dtype=bool)
        score = np.array([p.score for p in predictions], dtype=np.float64)
        above = np.array([p.above_threshold for p in predictions], dtype=bool)
        return cls(
            logit=np.array([p.logit for p in predictions], dtype=np.float64),
            score=score,
            assessable=assessable,
            flagged=above & assessable,
            at_half=(score >= 0.5) & assessable,
            reasons=tuple(p.assessment.reason for p in predictions),
            turned=np.array([p.assessment.quarter_turns != 0 for p in predictions], dtype=bool),
        )

    def take(self, index: np.ndarray) -> Scores:
        """The outcomes of the images at ``index`` (positions in this set)."""
        return Scores(
            logit=self.logit[index],
            score=self.score[index],
            assessable=self.assessable[index],
            flagged=self.flagged[index],
            at_half=self.at_half[index],
            reasons=tuple(self.reasons[int(i)] for i in index),
            turned=self.turned[index],
        )


def transform_for(family: str, severity: float) -> Transform:
    """The registered corruption at a fixed severity, as a function of (pixels, rng)."""

    def apply(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return corrupt(pixels, family, severity, rng)

    return apply


def score_images(
    scorer: BatchScorer,
    images: Sequence[np.ndarray],
    indices: Sequence[int] | np.ndarray,
    transform: Transform | None = None,
    *,
    seed: int = 0,
    batch_size: int = 32,
) -> Scores:
    """Score ``images[i]`` for ``i`` in ``indices``, each transformed first when given.

    The transform of image ``i`` draws from ``np.random.default_rng((seed, i))``.
    """
    predictions: list[Prediction] = []
    order = [int(i) for i in indices]
    for start in range(0, len(order), batch_size):
        inputs = []
        for i in order[start : start + batch_size]:
            pixels = images[i]
            if transform is not None:
                pixels = transform(pixels, np.random.default_rng((seed, i)))
            inputs.append(preprocess(pixels, scorer.spec))
        predictions.extend(scorer.score_batch(torch.stack(inputs)))
    return Scores.from_predictions(predictions)


def _share(mask: np.ndarray) -> float | None:
    return float(mask.mean()) if mask.size else None


def auc_record(
    logit: np.ndarray, labels: np.ndarray, patients: np.ndarray, *, n_boot: int, seed: int
) -> dict[str, Any] | None:
    """ROC-AUC with a patient-level bootstrap interval; None with one class only."""
    if labels.size == 0 or labels.min() == labels.max():
        return None
    if n_boot < 1:
        return {"value": roc_auc(logit, labels), "ci95": None, "n": int(labels.size)}
    value, low, high = bootstrap_ci(
        roc_auc, logit, labels, n_boot=n_boot, seed=seed, clusters=patients
    )
    return {"value": value, "ci95": [low, high], "n": int(labels.size)}


def flag_record(scores: Scores, *, governed: bool) -> dict[str, Any]:
    """Counts and shares of flagged and not-assessable images among ``scores``.

    Without a governed threshold nothing is flagged, so the governed rate is None.
    """
    not_assessable = ~scores.assessable
    return {
        "n": int(scores.logit.size),
        "flagged": int(scores.flagged.sum()) if governed else None,
        "flag_rate": _share(scores.flagged) if governed else None,
        "score_ge_050": int(scores.at_half.sum()),
        "flag_rate_050": _share(scores.at_half),
        "not_assessable": int(not_assessable.sum()),
        "not_assessable_rate": _share(not_assessable),
        "turned_upright": int(scores.turned.sum()),
        "median_logit": float(np.median(scores.logit)) if scores.logit.size else None,
    }


def condition_record(
    family: str,
    severity: float | None,
    scores: Scores,
    labels: np.ndarray,
    patients: np.ndarray,
    *,
    governed: bool,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """ROC-AUC (all images, assessable only), not-assessable share and flag rates by class."""
    keep = np.flatnonzero(scores.assessable)
    auc_all = auc_record(scores.logit, labels, patients, n_boot=n_boot, seed=seed)
    auc_assessable = (
        auc_all
        if keep.size == labels.size
        else auc_record(scores.logit[keep], labels[keep], patients[keep], n_boot=n_boot, seed=seed)
    )
    reasons = Counter(r for r in scores.reasons if r is not None)
    return {
        "family": family,
        "severity": severity,
        "label": "clean" if severity is None else describe(family, severity),
        "n": int(labels.size),
        "not_assessable_rate": _share(~scores.assessable),
        "not_assessable_reasons": dict(sorted(reasons.items())),
        "roc_auc_logit": auc_all,
        "roc_auc_logit_assessable": auc_assessable,
        "normal": flag_record(scores.take(np.flatnonzero(labels == 0)), governed=governed),
        "pneumonia": flag_record(scores.take(np.flatnonzero(labels == 1)), governed=governed),
    }
