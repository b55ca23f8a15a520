"""Robustness of a bundle off its training distribution: what a recipe is chosen on.

In-distribution ROC-AUC saturates and says nothing about a new site. This module
measures, on a set of cases (the bundle's report split by default):

1. ROC-AUC of the logit under each corruption family of
   :data:`chestaid.corruptions.REPORT_SEVERITIES` (two fixed severities each, plus
   clean), with a patient-level bootstrap interval, on all images and on the
   assessable ones only, with the flag rates of normals and of pneumonias;
2. the flag rate of *normal* images after blur and exposure shifts
   (:data:`chestaid.corruptions.NORMAL_SHIFT_SEVERITIES`) next to the clean normals'
   rate, and the median (paired) logit shift;
3. the scores of featureless inputs (black, grey, white, noise, a gradient);
4. the flag rate of pneumonia turned by 90, 180 and 270 degrees, and of grey-inverted
   normals and pneumonias.

Corruptions act on the decoded grey image in [0, 1] *before* the shared
:func:`chestaid.preprocess.preprocess`; random ones draw from a generator seeded
with ``(seed, case index)``, so a case gets the same noise in every condition and
every run. Every prediction comes from a scorer's ``score_batch``
(:class:`chestaid.inference.Scorer`), so whatever it decides is honoured: an image
whose ``assessment.assessable`` is False counts as NOT flagged (at the governed
threshold and at 0.5), and the share of such images is reported for every condition.
ROC-AUC uses the logit of every image (the logit is kept for audit even when an
image is not assessable) and, separately, of the assessable images only.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from chestaid.corruptions import (
    NORMAL_SHIFT_SEVERITIES,
    REPORT_SEVERITIES,
    describe,
    featureless_images,
)
from chestaid.errors import DatasetError
from chestaid.robustness_report import (
    protocol,
    robustness_table,
    summarise,
    write_plots,
)
from chestaid.robustness_scoring import (
    BatchScorer,
    Scores,
    Transform,
    auc_record,
    condition_record,
    flag_record,
    score_images,
    transform_for,
)

__all__ = [
    "BatchScorer",
    "Scores",
    "Transform",
    "condition_record",
    "evaluate_robustness",
    "flag_record",
    "run_robustness",
    "score_images",
    "transform_for",
]

logger = logging.getLogger(__name__)

ScoreFn = Callable[[np.ndarray, Transform | None, str], Scores]


def run_robustness(
    scorer: BatchScorer,
    images: Sequence[np.ndarray],
    labels: np.ndarray,
    patients: Sequence[str],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Every section of the robustness report for ``images`` (grey, [0, 1]) and ``labels``.

    Args:
        scorer: gives the predictions; its ``threshold`` is the governed one (nan: none).
        images: decoded images, each scored clean and under every condition.
        labels: 0 normal, 1 pneumonia, one per image.
        patients: a patient key per image (bootstrap unit).
        n_boot: bootstrap resamples for the AUC intervals (0: no interval).

    Returns:
        A JSON-ready dict with the sections ``corruptions``, ``normal_shifts``,
        ``featureless`` and ``orientation``, a ``summary`` and the ``protocol``.

    Raises:
        DatasetError: images, labels and patients of different lengths.
    """
    y = np.asarray(labels, dtype=np.int64)
    keys = np.asarray(patients)
    if len(images) != y.size or keys.size != y.size:
        raise DatasetError("images, labels and patients must have the same length")
    governed = not math.isnan(scorer.threshold)
    passes = 0

    def score(indices: np.ndarray, transform: Transform | None, what: str) -> Scores:
        nonlocal passes
        logger.info("robustness: scoring %s (%d images)", what, len(indices))
        passes += len(indices)
        return score_images(scorer, images, indices, transform, seed=seed, batch_size=batch_size)

    clean = score(np.arange(y.size), None, "clean")
    corruptions, on_all = _corruption_section(
        score, clean, y, keys, governed=governed, n_boot=n_boot, seed=seed
    )
    normal_shifts = _normal_section(score, clean, on_all, y, governed=governed)
    featureless = _featureless_section(scorer, governed=governed, seed=seed, batch_size=batch_size)
    passes += len(featureless)
    inverted = score(np.arange(y.size), transform_for("invert", 1.0), "inverted")
    orientation = _orientation_section(score, clean, inverted, y, governed=governed)
    result: dict[str, Any] = {
        "protocol": protocol(seed=seed, n_boot=n_boot, input_size=scorer.spec.input_size),
        "threshold": {"value": scorer.threshold if governed else None, "governed": governed},
        "corruptions": corruptions,
        "inverted_roc_auc_logit": auc_record(inverted.logit, y, keys, n_boot=n_boot, seed=seed),
        "normal_shifts": normal_shifts,
        "featureless": featureless,
        "orientation": orientation,
        "forward_passes": passes,
    }
    result["summary"] = summarise(result)
    return result


def _corruption_section(
    score: ScoreFn,
    clean: Scores,
    labels: np.ndarray,
    patients: np.ndarray,
    *,
    governed: bool,
    n_boot: int,
    seed: int,
) -> tuple[list[dict[str, Any]], dict[tuple[str, float], Scores]]:
    """Section 1: one record per condition (clean first), and the scores of each."""

    def record(family: str, severity: float | None, scores: Scores) -> dict[str, Any]:
        return condition_record(
            family, severity, scores, labels, patients, governed=governed, n_boot=n_boot, seed=seed
        )

    everyone = np.arange(labels.size)
    records = [record("clean", None, clean)]
    on_all: dict[tuple[str, float], Scores] = {}
    for family, severities in REPORT_SEVERITIES.items():
        for severity in severities:
            scores = score(everyone, transform_for(family, severity), describe(family, severity))
            on_all[(family, severity)] = scores
            records.append(record(family, severity, scores))
    return records, on_all


def _normal_section(
    score: ScoreFn,
    clean: Scores,
    on_all: dict[tuple[str, float], Scores],
    labels: np.ndarray,
    *,
    governed: bool,
) -> list[dict[str, Any]]:
    """Section 2: normals after blur and exposure shifts, paired with the clean normals.

    A shift already scored on every image in section 1 is reused, not scored again.
    """
    normals = np.flatnonzero(labels == 0)
    clean_normals = clean.take(normals)
    records = [
        {"family": "clean", "severity": None, "label": "clean"}
        | flag_record(clean_normals, governed=governed)
        | {"median_logit_shift": 0.0 if normals.size else None}
    ]
    for family, severities in NORMAL_SHIFT_SEVERITIES.items():
        for severity in severities:
            known = on_all.get((family, severity))
            shifted = (
                known.take(normals)
                if known is not None
                else score(normals, transform_for(family, severity), f"normals, {family}")
            )
            shift = shifted.logit - clean_normals.logit
            records.append(
                {"family": family, "severity": severity, "label": describe(family, severity)}
                | flag_record(shifted, governed=governed)
                | {"median_logit_shift": float(np.median(shift)) if shift.size else None}
            )
    return records


def _featureless_section(
    scorer: BatchScorer, *, governed: bool, seed: int, batch_size: int
) -> list[dict[str, Any]]:
    """Section 3: the outcome of each featureless input at the model input size."""
    blanks = featureless_images(scorer.spec.input_size, seed=seed)
    scores = score_images(
        scorer, list(blanks.values()), np.arange(len(blanks)), None, batch_size=batch_size
    )
    return [
        {
            "input": name,
            "logit": float(scores.logit[i]),
            "score": float(scores.score[i]),
            "flagged": bool(scores.flagged[i]) if governed else None,
            "score_ge_050": bool(scores.at_half[i]),
            "assessable": bool(scores.assessable[i]),
            "reason": scores.reasons[i],
        }
        for i, name in enumerate(blanks)
    ]


def _orientation_section(
    score: ScoreFn, clean: Scores, inverted: Scores, labels: np.ndarray, *, governed: bool
) -> list[dict[str, Any]]:
    """Section 4: pneumonia upright and turned by quarter turns; inverted normals and pneumonias."""
    normals, sick = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    records = [
        {"condition": "pneumonia, upright", "class": "PNEUMONIA", "family": "clean"}
        | {"severity": None}
        | flag_record(clean.take(sick), governed=governed)
    ]
    for k in (1, 2, 3):
        turned = score(sick, transform_for("quarter_turn", k), f"pneumonia turned k={k}")
        records.append(
            {"condition": f"pneumonia, rot90 k={k} ({90 * k} deg)", "class": "PNEUMONIA"}
            | {"family": "quarter_turn", "severity": k}
            | flag_record(turned, governed=governed)
        )
    for name, members in (("NORMAL", normals), ("PNEUMONIA", sick)):
        records.append(
            {"condition": f"{name.lower()}, inverted (1 - x)", "class": name}
            | {"family": "invert", "severity": 1.0}
            | flag_record(inverted.take(members), governed=governed)
        )
    return records


def evaluate_robustness(
    bundle_path: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    split: str = "auto",
    n_boot: int = 1000,
    batch_size: int = 32,
    seed: int = 0,
    max_side: int | None = None,
) -> dict[str, Any]:
    """Run the robustness report of a bundle; writes ``robustness.json``, ``.md`` and plots.

    The cases are chosen as :func:`chestaid.evaluation.evaluate_bundle` chooses them
    (``split`` "auto": the bundle's report split on its own data). Each case is
    decoded once and kept in memory for every condition. The bundle is not modified.

    Args:
        split: as for ``chestaid evaluate``: "auto", "all" or a split name.
        n_boot: bootstrap resamples (by patient) for the ROC-AUC intervals.
        max_side: longest side a case is kept at (default
            :data:`chestaid.evaluation.DECODE_MAX_SIDE`); larger ones are reduced first.

    Returns:
        The result written to ``robustness.json``: :func:`run_robustness`'s sections
        with the bundle's identity (version, weights checksum) and the cases.

    Raises:
        BundleError: the bundle cannot be loaded.
        DatasetError: the data folder is unusable or lacks the split.
        ImageError: a case cannot be read.
    """
    from chestaid.bundle import load_bundle
    from chestaid.evaluation import DECODE_MAX_SIDE, cases_to_evaluate, decode_examples
    from chestaid.inference import Scorer

    bundle = load_bundle(bundle_path)
    cases, name = cases_to_evaluate(bundle, data_dir, split=split, seed=seed)
    examples = cases.parts[name]
    images = decode_examples(
        cases.base, examples, max_side=DECODE_MAX_SIDE if max_side is None else max_side
    )
    labels = np.array([e.label for e in examples], dtype=np.int64)
    patients = [e.patient for e in examples]
    result = run_robustness(
        Scorer.from_bundle(bundle),
        images,
        labels,
        patients,
        n_boot=n_boot,
        seed=seed,
        batch_size=batch_size,
    )
    result = {
        "bundle": {
            "name": bundle.path.resolve().name,
            "version": bundle.manifest.version,
            "architecture": bundle.manifest.architecture,
            "input_size": bundle.manifest.preprocessing.input_size,
            "weights_sha256": bundle.manifest.weights.get("sha256"),
            "calibrator": bundle.calibrator.name,
        },
        "cases": {
            "source": cases.source,
            "split": name,
            "n": int(labels.size),
            "patients": len(set(patients)),
            "positives": int(labels.sum()),
            "negatives": int(labels.size - labels.sum()),
        },
    } | result
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "robustness.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (out / "robustness.md").write_text(robustness_table(result) + "\n", encoding="utf-8")
    write_plots(result, out)
    return result
