"""Calibrating an N-class bundle: the class calibrator, the triage threshold, the report.

The counterpart of :func:`chestaid.evaluation.calibrate_bundle` for bundles with one
logit a class (``Manifest.num_outputs > 1``), which dispatches here. The cases are
chosen the same way (the bundle's own calibration and report splits on its own data,
otherwise halves of the folder by patient). Temperature and vector scaling are
compared by patient-grouped cross-validation on the calibration cases
(:mod:`chestaid.calibration.multiclass_selection`); the governed threshold is the rule
of :func:`chestaid.threshold.governed_threshold` on the triage score
P(not normal) = 1 - p[NORMAL] of the calibration cases against "not normal".
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from chestaid.bundle import Bundle, load_bundle, update_manifest
from chestaid.calibration.multiclass import MultiClassCalibrator
from chestaid.calibration.multiclass_selection import (
    DEFAULT_CANDIDATES,
    DEFAULT_FOLDS,
    MultiClassSelection,
    calibration_measures,
    select_multiclass_calibration,
)
from chestaid.data import Example
from chestaid.evaluation import DEFAULT_TARGET_SENSITIVITY, fitted_on_record, select_cases
from chestaid.metrics import ReliabilityCurve, confusion_at
from chestaid.multiclass_bundle import TRIAGE_CALIBRATOR, collect_class_logits, normal_index
from chestaid.multiclass_metrics import class_reliability, triage_scores
from chestaid.threshold import governed_threshold
from chestaid.training.dataset import ImageDataset

logger = logging.getLogger(__name__)

RELIABILITY_BINS = 10


@dataclass(frozen=True)
class MultiClassCalibrationOutcome:
    """What :func:`calibrate_multiclass_bundle` fitted and measured.

    The first five fields mean what they mean for a binary bundle's
    :class:`chestaid.evaluation.CalibrationOutcome` (the threshold is on the triage score).
    """

    chosen: str
    comparison: dict[str, Any]
    threshold: dict[str, Any]
    report_at_threshold: dict[str, Any]
    source: str
    classes: tuple[str, ...]
    normal_class: str
    report_metrics: dict[str, dict[str, float]]


def class_logits_for(
    bundle: Bundle, base: Path, examples: Sequence[Example], *, batch_size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """Logits (n, K) and labels of ``examples`` through the bundle's model and preprocessing."""
    dataset = ImageDataset(base, examples, bundle.manifest.preprocessing)
    return collect_class_logits(bundle.model, dataset, batch_size=batch_size), dataset.labels


def calibrate_multiclass_bundle(
    bundle_path: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    *,
    target_sensitivity: float = DEFAULT_TARGET_SENSITIVITY,
    candidates: Sequence[str] = DEFAULT_CANDIDATES,
    folds: int = DEFAULT_FOLDS,
    n_boot: int = 1000,
    batch_size: int = 32,
    seed: int = 0,
    out_dir: str | os.PathLike[str] | None = None,
) -> MultiClassCalibrationOutcome:
    """Fit the class calibrator and the triage threshold of an N-class bundle.

    The manifest's calibration record becomes ``{"class_calibrator": ..., "calibrator":
    {"name": "identity"}, "chosen": ..., "comparison": ...}`` (with where it was fitted
    and its version, as for a binary bundle), and its threshold record the governed
    threshold on P(not normal). With ``out_dir``, ``calibration.json``,
    ``calibration.md`` and ``reliability_per_class.png`` (each candidate on the report
    cases) are written there.

    Raises:
        BundleError: the bundle has no class named NORMAL.
        DatasetError: the data folder is unusable.
        CalibrationError: too few cases or patients of a class to cross-validate.
    """
    bundle = load_bundle(bundle_path)
    classes = bundle.manifest.classes
    normal = normal_index(classes)
    cases = select_cases(bundle, data_dir, seed=seed)
    cal_examples = cases.parts["calibration"]
    cal_logits, cal_labels = class_logits_for(
        bundle, cases.base, cal_examples, batch_size=batch_size
    )
    rep_logits, rep_labels = class_logits_for(
        bundle, cases.base, cases.parts["report"], batch_size=batch_size
    )
    selection = select_multiclass_calibration(
        cal_logits,
        cal_labels,
        [e.patient for e in cal_examples],
        candidates=candidates,
        folds=folds,
        n_boot=n_boot,
        seed=seed,
    )
    chosen = selection.calibrator
    governed = governed_threshold(
        triage_scores(chosen.predict_proba(cal_logits), normal),
        (cal_labels != normal).astype(np.int64),
        target_sensitivity,
        seed=seed,
    )
    report_triage = triage_scores(chosen.predict_proba(rep_logits), normal)
    at_threshold = confusion_at(
        report_triage, (rep_labels != normal).astype(np.int64), governed.threshold
    ).to_dict()
    report_metrics = {
        name: calibration_measures(c.predict_proba(rep_logits), rep_labels)
        for name, c in selection.calibrators.items()
    }
    comparison = {**selection.to_dict(), "report_metrics": report_metrics}
    calibration: dict[str, Any] = {
        "class_calibrator": chosen.to_dict(),
        "calibrator": dict(TRIAGE_CALIBRATOR),
        "chosen": selection.chosen,
        "comparison": comparison,
        **fitted_on_record(bundle, cases, len(cal_labels), len(rep_labels)),
    }
    threshold = {**governed.to_dict(), "report_split": at_threshold}
    metrics = {
        **bundle.manifest.metrics,
        "report_top_label_ece_uncalibrated": report_metrics["identity"]["ece"],
        "report_top_label_ece_calibrated": report_metrics[selection.chosen]["ece"],
    }
    update_manifest(
        bundle.path,
        replace(bundle.manifest, calibration=calibration, threshold=threshold, metrics=metrics),
    )
    outcome = MultiClassCalibrationOutcome(
        chosen=selection.chosen,
        comparison=comparison,
        threshold=threshold,
        report_at_threshold=at_threshold,
        source=cases.source,
        classes=tuple(classes),
        normal_class=classes[normal],
        report_metrics=report_metrics,
    )
    if out_dir is not None:
        write_calibration_report(
            Path(out_dir),
            outcome,
            {"calibration": calibration, "threshold": threshold, "metrics": metrics},
            selection,
            cal_labels,
            rep_logits,
            rep_labels,
        )
    logger.info(
        "calibrated %s with %s scaling (triage threshold %r for sensitivity %.2f)",
        bundle.path,
        selection.chosen,
        governed.threshold,
        target_sensitivity,
    )
    return outcome


def reliability_record(
    curves: Sequence[ReliabilityCurve], classes: Sequence[str]
) -> dict[str, dict[str, list[float | None] | list[int]]]:
    """Per class, the bins of a one-vs-rest reliability curve as plain lists (empty bins None)."""

    def plain(values: np.ndarray) -> list[float | None]:
        return [None if np.isnan(v) else float(v) for v in values]

    return {
        name: {
            "mean_probability": plain(curve.bin_mean_prob),
            "fraction": plain(curve.bin_frac_pos),
            "count": [int(v) for v in curve.bin_count],
        }
        for name, curve in zip(classes, curves, strict=True)
    }


def write_calibration_report(
    out: Path,
    outcome: MultiClassCalibrationOutcome,
    record: dict[str, Any],
    selection: MultiClassSelection,
    cal_labels: np.ndarray,
    rep_logits: np.ndarray,
    rep_labels: np.ndarray,
) -> list[Path]:
    """Write ``calibration.json``, ``calibration.md`` and ``reliability_per_class.png``.

    The reliability curves are each candidate's on the report cases (none of them was
    fitted on those) and, out of fold, on the calibration cases.
    """
    from chestaid.plots_multiclass import plot_class_reliability

    out.mkdir(parents=True, exist_ok=True)
    classes = outcome.classes
    calibrators: dict[str, MultiClassCalibrator] = selection.calibrators
    report_curves = {
        name: class_reliability(c.predict_proba(rep_logits), rep_labels, RELIABILITY_BINS)
        for name, c in calibrators.items()
    }
    full = {
        **record,
        "reliability": {
            "report_cases": {
                name: reliability_record(curves, classes) for name, curves in report_curves.items()
            },
            "calibration_cases_out_of_fold": {
                name: reliability_record(
                    class_reliability(probs, cal_labels, RELIABILITY_BINS), classes
                )
                for name, probs in selection.out_of_fold.items()
            },
        },
    }
    json_path = out / "calibration.json"
    json_path.write_text(json.dumps(full, indent=2) + "\n", encoding="utf-8")
    md_path = out / "calibration.md"
    md_path.write_text("\n".join(calibration_markdown(outcome)) + "\n", encoding="utf-8")
    png = plot_class_reliability(
        {("uncalibrated" if n == "identity" else n): v for n, v in report_curves.items()},
        classes,
        out / "reliability_per_class.png",
        title="Reliability of each class's probability on the report cases",
    )
    return [json_path, md_path, png]


def calibration_markdown(outcome: MultiClassCalibrationOutcome) -> list[str]:
    """The calibration report as Markdown: the comparison, the choice, the threshold."""
    comparison = outcome.comparison
    t = outcome.threshold
    lines = [
        "# Calibration of an N-class bundle",
        "",
        f"Classes: {', '.join(outcome.classes)}; triage score P(not {outcome.normal_class}).",
        f"Cases: {outcome.source}; {comparison['n_cases']} calibration cases of "
        f"{comparison['n_patients']} patients, {comparison['folds']} folds grouped by patient.",
        "",
        "| calibrator | CV NLL | CV top-label ECE | CV classwise ECE | CV Brier "
        "| NLL - lowest (95% CI) | report NLL | report ECE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in comparison["metrics"].items():
        low, high = comparison["nll_difference_vs_lowest_ci95"][name]
        rep = outcome.report_metrics.get(name, {})
        mark = " (kept)" if name == outcome.chosen else ""
        lines.append(
            f"| {name}{mark} | {m['nll']:.4f} | {m['ece']:.4f} | {m['classwise_ece']:.4f} "
            f"| {m['brier']:.4f} | [{low:+.4f}, {high:+.4f}] "
            f"| {rep.get('nll', float('nan')):.4f} | {rep.get('ece', float('nan')):.4f} |"
        )
    lines += [
        "",
        f"Rule: {comparison['rule']}. Lowest: {comparison['lowest_nll']}; kept: {outcome.chosen}.",
        "",
        f"Governed threshold on P(not {outcome.normal_class}): {t['threshold']:.6g} for "
        f"sensitivity >= {t['target_sensitivity']:.2f}; on the calibration cases sensitivity "
        f"{t['achieved_sensitivity']:.3f} [{t['sensitivity_ci95'][0]:.3f}, "
        f"{t['sensitivity_ci95'][1]:.3f}], specificity {t['specificity']:.3f} "
        f"[{t['specificity_ci95'][0]:.3f}, {t['specificity_ci95'][1]:.3f}] (95% Wilson).",
        "",
        "Report cases at the threshold: sensitivity "
        f"{outcome.report_at_threshold['sensitivity']:.3f}, specificity "
        f"{outcome.report_at_threshold['specificity']:.3f}.",
        "",
        "Reliability of each class: `reliability_per_class.png` and `calibration.json`.",
    ]
    return lines
