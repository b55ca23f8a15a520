"""The text ``chestaid calibrate`` and ``chestaid evaluate`` print for an N-class bundle."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from chestaid.cli.common import confusion_text, threshold_lines
from chestaid.display import score_text

if TYPE_CHECKING:  # only for annotations: the commands import it when they run
    from chestaid.calibration_multiclass import MultiClassCalibrationOutcome


def multiclass_calibration_lines(outcome: MultiClassCalibrationOutcome) -> list[str]:
    """Each candidate's cross-validated measures, the one kept, and the triage threshold."""

    c = outcome.comparison
    lines = [
        f"classes: {', '.join(outcome.classes)}; calibration cases: {outcome.source} "
        f"({c['n_cases']} cases, {c['n_patients']} patients, {c['folds']} folds by patient)",
        "calibrator    CV NLL  CV ECE  CV cwECE  CV Brier  NLL - lowest (95% CI)   report NLL",
    ]
    for name, m in c["metrics"].items():
        low, high = c["nll_difference_vs_lowest_ci95"][name]
        report = outcome.report_metrics.get(name, {}).get("nll", float("nan"))
        mark = "  <- kept" if name == outcome.chosen else ""
        lines.append(
            f"{name:<13} {m['nll']:.4f}  {m['ece']:.4f}  {m['classwise_ece']:.4f}    "
            f"{m['brier']:.4f}    [{low:+.4f}, {high:+.4f}]      {report:.4f}{mark}"
        )
    return lines + threshold_lines(
        outcome.threshold, outcome.report_at_threshold, of=f"P(not {outcome.normal_class})"
    )


def _ci(stat: dict[str, Any]) -> str:
    low, high = stat["ci95"]
    return f"{stat['value']:.4f} [{low:.4f}, {high:.4f}]"


def multiclass_evaluation_lines(r: dict[str, Any], out: Path) -> list[str]:
    """Per class, averaged, triage and pairwise figures with their patient-bootstrap intervals."""
    cases = r["cases"]
    counts = ", ".join(f"{n} {c}" for c, n in cases["per_class"].items())
    lines = [
        f"cases: {cases['n']} of {cases['patients']} patients ({counts}; {cases['source']}, "
        f"split {cases['split']}); class calibrator {r['class_calibrator']}; 95% intervals "
        f"resample patients ({r['bootstrap']['resamples']} times)",
        "class          ROC-AUC                   PR-AUC                    F1",
    ]
    for name, m in r["per_class"].items():
        lines.append(f"{name:<14} {_ci(m['roc_auc'])}  {_ci(m['pr_auc'])}  {_ci(m['f1'])}")
    for kind in ("macro", "micro"):
        m = r[kind]
        lines.append(f"{kind:<14} {_ci(m['roc_auc'])}  {_ci(m['pr_auc'])}  {_ci(m['f1'])}")
    lines.append(f"accuracy {_ci(r['accuracy'])}")
    t = r["triage"]
    lines.append(
        f"triage {t['score']}: ROC-AUC {_ci(t['roc_auc'])}; threshold {score_text(t['threshold'])}"
        f"{'' if t['governed'] else ' (not governed: calibrate first)'}: "
        + confusion_text(t["confusion"])
        + f"; sensitivity {_ci(t['sensitivity'])}, specificity {_ci(t['specificity'])} "
        "(patient bootstrap)"
    )
    for pair, m in r["pairwise"].items():
        lines.append(f"{pair} ({m['n']} cases of either): ROC-AUC {_ci(m)}")
    cal, raw = r["calibration"]["calibrated"], r["calibration"]["uncalibrated"]
    lines.append(
        f"top-label ECE {cal['ece']:.4f} (uncalibrated {raw['ece']:.4f}), classwise ECE "
        f"{cal['classwise_ece']:.4f}, Brier {cal['brier']:.4f}, NLL {cal['nll']:.4f}"
    )
    lines.append(f"written: {out / 'metrics.json'} and plots")
    return lines
