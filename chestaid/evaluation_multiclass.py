"""Evaluating an N-class bundle on a data folder: metrics.json and PNG plots.

The counterpart of :func:`chestaid.evaluation.evaluate_bundle` for bundles with one
logit a class, which dispatches here. Measured on the cases
:func:`chestaid.evaluation.cases_to_evaluate` picks, with the bundle's class
calibrator (the softmax alone when uncalibrated):

- each class against the rest: ROC-AUC, PR-AUC and F1 (argmax); macro and micro
  averages; accuracy; the confusion matrix of the argmax;
- the triage split, P(not normal) against not normal: ROC-AUC, and sensitivity and
  specificity at the governed threshold (with Wilson intervals beside the bootstrap's);
- each pair of findings among the cases of the two: ROC-AUC of ``p_a / (p_a + p_b)``;
- calibration of the class probabilities (top-label and classwise ECE, Brier, NLL).

Every interval is a 95% percentile bootstrap over patients, drawn within their class
(:mod:`chestaid.patient_bootstrap`). Plots: the confusion matrix, per-class ROC and
PR curves, per-class reliability, and a Grad-CAM panel of every class for a few cases.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from chestaid.bundle import Bundle, load_bundle, update_manifest
from chestaid.calibration.multiclass import MultiClassCalibrator, softmax
from chestaid.calibration.multiclass_selection import calibration_measures
from chestaid.data import Example
from chestaid.evaluation import cases_to_evaluate
from chestaid.gradcam import class_activation_map, render_overlay
from chestaid.metrics import confusion_at, wilson_interval
from chestaid.models import ChestNet
from chestaid.multiclass_bundle import class_calibrator, collect_class_logits, normal_index
from chestaid.multiclass_metrics import (
    abnormal_pairs,
    class_reliability,
    confusion_matrix,
    summary,
    triage_rates,
    triage_scores,
)
from chestaid.patient_bootstrap import bootstrap_summary
from chestaid.training.dataset import ImageDataset

logger = logging.getLogger(__name__)

GRADCAM_FILE = "gradcam_per_class.png"


def evaluate_multiclass_bundle(
    bundle_path: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    split: str = "auto",
    gradcam_cases: int | None = None,
    n_boot: int = 1000,
    batch_size: int = 32,
    seed: int = 0,
) -> dict[str, Any]:
    """Measure an N-class bundle; writes ``metrics.json`` and PNG plots to ``out_dir``.

    Args:
        split: as for :func:`chestaid.evaluation.evaluate_bundle`.
        gradcam_cases: how many cases the Grad-CAM panel shows (default one of each class).
        n_boot: patient-bootstrap resamples for the 95% intervals.

    Returns:
        The metrics written to ``metrics.json``; on the bundle's own report split the
        headline figures are also recorded in its manifest.

    Raises:
        BundleError: no class named NORMAL, or an unusable class calibrator.
        DatasetError: the data folder is unusable or has no such split.
    """
    from chestaid import plots_multiclass as plots

    bundle = load_bundle(bundle_path)
    classes = tuple(bundle.manifest.classes)
    normal = normal_index(classes)
    calibrator = class_calibrator(bundle.manifest.calibration)
    cases, name = cases_to_evaluate(bundle, data_dir, split=split, seed=seed)
    examples = cases.parts[name]
    dataset = ImageDataset(cases.base, examples, bundle.manifest.preprocessing)
    logits = collect_class_logits(bundle.model, dataset, batch_size=batch_size)
    labels = dataset.labels
    probs = calibrator.predict_proba(logits)
    patients = [e.patient for e in examples]
    record = bundle.manifest.threshold
    threshold = float(record["threshold"]) if record is not None else 0.5
    stats = bootstrap_summary(
        lambda idx: {
            **summary(probs[idx], labels[idx], classes, normal),
            **triage_rates(probs[idx], labels[idx], normal, threshold),
        },
        patients,
        labels,
        n_boot=n_boot,
        seed=seed,
    )
    matrix = confusion_matrix(labels, probs.argmax(axis=1), len(classes))
    result: dict[str, Any] = {
        "bundle": {
            "version": bundle.manifest.version,
            "architecture": bundle.manifest.architecture,
            "classes": list(classes),
        },
        "cases": {
            "source": cases.source,
            "split": name,
            "n": int(labels.size),
            "patients": len(set(patients)),
            "per_class": {c: int(np.sum(labels == i)) for i, c in enumerate(classes)},
        },
        "class_calibrator": calibrator.name,
        "bootstrap": {"resamples": n_boot, "unit": "patient", "stratified_by_class": True},
        "per_class": {
            c: {m: _interval(stats[f"{m}/{c}"]) for m in ("roc_auc", "pr_auc", "f1")}
            for c in classes
        },
        "macro": {m: _interval(stats[f"macro_{m}"]) for m in ("roc_auc", "pr_auc", "f1")},
        "micro": {m: _interval(stats[f"micro_{m}"]) for m in ("roc_auc", "pr_auc", "f1")},
        "accuracy": _interval(stats["accuracy"]),
        "confusion": {
            "classes": list(classes),
            "rows": "true class",
            "columns": "predicted class (highest probability)",
            "matrix": matrix.tolist(),
        },
        "triage": _triage(bundle, probs, labels, normal, threshold, stats),
        "pairwise": {
            f"{classes[a]} vs {classes[b]}": {
                **_interval(stats[f"pairwise/{classes[a]}/{classes[b]}"]),
                "n": int(np.sum((labels == a) | (labels == b))),
                "score": f"p({classes[a]}) / (p({classes[a]}) + p({classes[b]}))",
            }
            for a, b in abnormal_pairs(len(classes), normal)
        },
        "calibration": {
            "calibrated": calibration_measures(probs, labels),
            "uncalibrated": calibration_measures(softmax(logits), labels),
        },
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots.plot_confusion_matrix(matrix, classes, out / "confusion.png")
    plots.plot_class_roc(
        probs, labels, classes, out / "roc_per_class.png", areas=_values(result, "roc_auc")
    )
    plots.plot_class_pr(
        probs, labels, classes, out / "pr_per_class.png", areas=_values(result, "pr_auc")
    )
    plots.plot_class_reliability(
        {
            f"calibrated ({calibrator.name})": class_reliability(probs, labels),
            "uncalibrated": class_reliability(softmax(logits), labels),
        },
        classes,
        out / "reliability_per_class.png",
    )
    chosen = _gradcam_choice(examples, len(classes), gradcam_cases, seed)
    if chosen:
        result["gradcam"] = gradcam_panel(
            bundle, calibrator, dataset, chosen, classes, out / GRADCAM_FILE
        )
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if cases.source == "bundle split" and name == "report":
        keep = ("cases", "class_calibrator", "macro", "micro", "accuracy", "triage", "pairwise")
        report = {key: result[key] for key in keep}
        metrics = {**bundle.manifest.metrics, "report_split": report}
        update_manifest(bundle.path, replace(bundle.manifest, metrics=metrics))
    logger.info("evaluated %s on %d cases (%s)", bundle.path, labels.size, name)
    return result


def _interval(stat: dict[str, Any]) -> dict[str, Any]:
    return {"value": stat["value"], "ci95": stat["ci95"]}


def _values(result: dict[str, Any], metric: str) -> dict[str, float]:
    return {c: float(v[metric]["value"]) for c, v in result["per_class"].items()}


def _triage(
    bundle: Bundle,
    probs: np.ndarray,
    labels: np.ndarray,
    normal: int,
    threshold: float,
    stats: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The triage split at the governed threshold (0.5 when none has been set)."""
    record = bundle.manifest.threshold
    name = bundle.manifest.classes[normal]
    cm = confusion_at(triage_scores(probs, normal), (labels != normal).astype(np.int64), threshold)
    return {
        "score": f"P(not {name}) = 1 - p({name})",
        "roc_auc": _interval(stats["triage_roc_auc"]),
        "threshold": threshold,
        "governed": record is not None,
        "target_sensitivity": (record or {}).get("target_sensitivity"),
        "confusion": cm.to_dict(),
        "sensitivity": _interval(stats["triage_sensitivity"]),
        "specificity": _interval(stats["triage_specificity"]),
        "sensitivity_ci95": list(wilson_interval(cm.tp, cm.tp + cm.fn)),
        "specificity_ci95": list(wilson_interval(cm.tn, cm.tn + cm.fp)),
    }


def _gradcam_choice(
    examples: Sequence[Example], num_classes: int, wanted: int | None, seed: int
) -> list[int]:
    """Indices of the cases the panel shows: by default one of each class (seeded),
    otherwise ``wanted`` cases taken round the classes."""
    rng = np.random.default_rng(seed)
    by_class = [[i for i, e in enumerate(examples) if e.label == c] for c in range(num_classes)]
    for members in by_class:
        rng.shuffle(members)
    limit = num_classes if wanted is None else wanted
    chosen: list[int] = []
    depth = 0
    while len(chosen) < limit and any(depth < len(m) for m in by_class):
        chosen += [m[depth] for m in by_class if depth < len(m)][: limit - len(chosen)]
        depth += 1
    return chosen


@torch.inference_mode()
def class_cams(model: ChestNet, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Logits (n, K) and the Grad-CAM of every logit (n, K, h, w) from one forward pass."""
    logits, fmap = model.forward_with_features(x)
    weight = model.classifier.weight
    cams = torch.stack(
        [class_activation_map(fmap, weight, k) for k in range(weight.shape[0])], dim=1
    )
    return logits.double().numpy(), cams.float().numpy()


def gradcam_panel(
    bundle: Bundle,
    calibrator: MultiClassCalibrator,
    dataset: ImageDataset,
    indices: Sequence[int],
    classes: Sequence[str],
    path: Path,
) -> dict[str, Any]:
    """Grad-CAM of every class's logit for the cases ``indices``, drawn as one PNG.

    The map of class k is the exact Grad-CAM of logit k
    (:func:`chestaid.gradcam.class_activation_map`); the maps of one case share one
    colour scale, so a class with little evidence shows as a faint map.
    """
    from chestaid.plots_multiclass import plot_class_cams

    x = torch.stack([dataset[i][0] for i in indices])
    logits, cams = class_cams(bundle.model, x)
    probs = calibrator.predict_proba(logits)
    images, overlays = [], []
    for r in range(len(indices)):
        grey = x[r, 0].float().numpy()
        span = float(grey.max() - grey.min())
        grey = (grey - grey.min()) / span if span > 0 else np.zeros_like(grey)
        low, span = float(cams[r].min()), float(cams[r].max() - cams[r].min())
        scaled = (cams[r] - low) / span if span > 0 else np.zeros_like(cams[r])
        images.append(grey)
        overlays.append([render_overlay(grey, scaled[k]) for k in range(len(classes))])
    captions = [f"true {classes[dataset.examples[i].label]}" for i in indices]
    plot_class_cams(images, overlays, classes, captions, probs, path)
    return {
        "file": path.name,
        "cases": [dataset.examples[i].relpath for i in indices],
        "peak_class": [
            classes[int(np.argmax(cams[r].max(axis=(1, 2))))] for r in range(len(indices))
        ],
    }
