"""``chestaid calibrate``, ``assess`` and ``evaluate``: a trained bundle against labelled data."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from chestaid.cli.common import (
    EXIT_OK,
    confusion_text,
    positive_int,
    probability,
    threshold_lines,
    write_lines,
    write_outcome,
)
from chestaid.display import interval_text, score_text
from chestaid.errors import ConfigurationError

if TYPE_CHECKING:  # only for annotations: the commands import these when they run
    from chestaid.assessment_fit import AssessmentFit
    from chestaid.evaluation import CalibrationOutcome


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``calibrate``, ``assess`` and ``evaluate`` and their options."""
    c = sub.add_parser(
        "calibrate",
        help="fit temperature / Platt / isotonic (N classes: temperature / vector scaling) "
        "and the governed threshold",
    )
    c.add_argument("bundle", type=Path)
    c.add_argument("data_dir", type=Path)
    c.add_argument("--target-sensitivity", type=probability, default=0.90)
    c.add_argument("--batch-size", type=positive_int, default=32)
    c.add_argument("--json", action="store_true", help="print the outcome as JSON")
    c.add_argument("--out", type=Path, help="folder for calibration.json and a reliability diagram")

    a = sub.add_parser(
        "assess",
        help="fit the not-assessable checks (feature density and its limit) and measure refusals",
    )
    a.add_argument("bundle", type=Path)
    a.add_argument("data_dir", type=Path, help="the bundle's development data")
    a.add_argument(
        "--external",
        type=Path,
        action="append",
        default=[],
        help="a folder of real radiographs from elsewhere, only measured (repeatable)",
    )
    a.add_argument(
        "--non-chest",
        type=Path,
        action="append",
        default=[],
        help="a folder of pictures that are not chest radiographs, only measured (repeatable)",
    )
    a.add_argument("--components", type=positive_int, default=32)
    a.add_argument("--json", action="store_true", help="print the outcome as JSON")

    e = sub.add_parser(
        "evaluate", help="metrics with bootstrap intervals, plots, optional saliency checks"
    )
    e.add_argument("bundle", type=Path)
    e.add_argument("data_dir", type=Path)
    e.add_argument("--out", type=Path, required=True, help="folder for metrics.json and PNG plots")
    e.add_argument(
        "--split", default="auto", help="auto, all, report, calibration, validation or train"
    )
    e.add_argument(
        "--saliency", action="store_true", help="deletion/keep curves and randomisation check"
    )
    e.add_argument("--saliency-cases", type=positive_int, default=64)
    e.add_argument(
        "--robustness",
        action="store_true",
        help="instead of the standard metrics: ROC-AUC under corruptions, normals under "
        "blur and exposure shifts, featureless, turned and inverted inputs "
        "(robustness.json, robustness.md and plots)",
    )
    e.add_argument("--bootstrap", type=positive_int, default=1000, help="bootstrap resamples")
    e.add_argument("--batch-size", type=positive_int, default=32)


def run_calibrate(args: argparse.Namespace) -> int:
    """Calibrate a bundle and print the comparison and the governed threshold."""
    from chestaid.evaluation import CalibrationOutcome, calibrate_bundle

    outcome = calibrate_bundle(
        args.bundle,
        args.data_dir,
        target_sensitivity=args.target_sensitivity,
        batch_size=args.batch_size,
        out_dir=args.out,
    )
    if not isinstance(outcome, CalibrationOutcome):  # an N-class bundle's
        from chestaid.cli.multiclass_text import multiclass_calibration_lines

        return write_outcome(
            args.json,
            outcome.__dict__,
            lambda: multiclass_calibration_lines(outcome),
            default=float,
        )
    return write_outcome(
        args.json, outcome.__dict__, lambda: calibration_lines(outcome), default=float
    )


def calibration_lines(outcome: CalibrationOutcome) -> list[str]:
    """The text of a calibration: each calibrator's metrics, the threshold, the report cases."""
    lines = [
        f"calibration cases: {outcome.source}",
        "calibrator    ECE     adaECE  Brier   NLL     (report cases)",
    ]
    for name, m in outcome.comparison["metrics"].items():
        mark = "  <- kept" if name == outcome.chosen else ""
        lines.append(
            f"{name:<13} {m['ece']:.4f}  {m['adaptive_ece']:.4f}  {m['brier']:.4f}  {m['nll']:.4f}{mark}"
        )
    return lines + threshold_lines(outcome.threshold, outcome.report_at_threshold)


def run_assess(args: argparse.Namespace) -> int:
    """Fit the not-assessable checks and print the refusals per set of images."""
    from chestaid.assessment_fit import fit_assessment

    fit = fit_assessment(
        args.bundle,
        args.data_dir,
        external=args.external,
        non_chest=args.non_chest,
        components=args.components,
    )
    return write_outcome(args.json, fit.to_dict(), lambda: assessment_lines(fit))


def assessment_lines(fit: AssessmentFit) -> list[str]:
    """The text of fitted not-assessable checks: the limit and the refusals per set."""
    lines = [f"feature-distance limit {fit.settings.max_feature_distance}; not assessable, by set:"]
    for name, outcome in fit.refused.items():
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(outcome["reasons"].items())) or "-"
        lines.append(
            f"  {name}: {outcome['refused']} of {outcome['n']} ({100 * outcome['rate']:.2f}%)"
            f"  [{reasons}]; turned upright {outcome['turned_upright']}"
        )
    return lines


def run_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a bundle (or, with ``--robustness``, run its robustness report)."""
    from chestaid.evaluation import evaluate_bundle

    if args.robustness:
        return _evaluate_robustness(args)
    r = evaluate_bundle(
        args.bundle,
        args.data_dir,
        args.out,
        split=args.split,
        saliency=args.saliency,
        saliency_cases=args.saliency_cases,
        n_boot=args.bootstrap,
        batch_size=args.batch_size,
    )
    if "per_class" in r:  # an N-class bundle's evaluation
        from chestaid.cli.multiclass_text import multiclass_evaluation_lines

        write_lines(multiclass_evaluation_lines(r, args.out))
        return EXIT_OK
    lines = [
        f"cases: {r['cases']['n']} ({r['cases']['positives']} pneumonia, {r['cases']['negatives']} normal; "
        f"{r['cases']['source']}, split {r['cases']['split']})",
        "ROC-AUC {:.4f} [{:.4f}, {:.4f}]".format(r["roc_auc"]["value"], *r["roc_auc"]["ci95"]),
        "PR-AUC  {:.4f} [{:.4f}, {:.4f}]".format(r["pr_auc"]["value"], *r["pr_auc"]["ci95"]),
        f"Brier {r['brier']:.4f}  ECE {r['ece']:.4f}  adaptive ECE {r['adaptive_ece']:.4f} "
        f"(uncalibrated ECE {r['uncalibrated']['ece']:.4f})",
        f"threshold {score_text(r['threshold']['value'])}{'' if r['threshold']['governed'] else ' (not governed: calibrate first)'}: "
        + confusion_text(r["threshold"]["confusion"])
        + "; 95% Wilson: sensitivity "
        f"{interval_text(*r['threshold']['sensitivity_ci95'])}, "
        f"specificity {interval_text(*r['threshold']['specificity_ci95'])}",
    ]
    for name in ("normal", "pneumonia"):
        d = r["logit_distribution"][name]
        if d is not None:
            q = d["values"]
            lines.append(
                f"logits, {name}: min {q[0]:+.2f}, 5% {q[2]:+.2f}, median {q[4]:+.2f}, "
                f"95% {q[6]:+.2f}, max {q[8]:+.2f}; |logit| > 10: {d['beyond_10']:.1%}"
            )
    if "saliency" in r:
        s = r["saliency"]
        lines.append(
            f"saliency on {s['n_images']} positives: deletion AUC {s['gradcam']['deletion_auc']:.4f} "
            f"(random {s['random']['deletion_auc']:.4f}), keep AUC {s['gradcam']['keep_auc']:.4f} "
            f"(random {s['random']['keep_auc']:.4f}), trained-vs-reinitialised Spearman "
            f"{s['randomisation']['trained_vs_reinitialised_spearman_mean']:.3f}"
        )
        g, rnd = s["on_logit"]["gradcam"], s["on_logit"]["random"]
        lines.append(
            f"  on the logit: deletion AUC {g['deletion_auc']:.3f} (random {rnd['deletion_auc']:.3f}), "
            f"keep AUC {g['keep_auc']:.3f} (random {rnd['keep_auc']:.3f}), unperturbed {g['original']:.3f}"
        )
    lines.append(f"written: {args.out / 'metrics.json'} and plots")
    write_lines(lines)
    return EXIT_OK


def _evaluate_robustness(args: argparse.Namespace) -> int:
    from chestaid.robustness import evaluate_robustness
    from chestaid.robustness_report import robustness_table

    if args.saliency:
        raise ConfigurationError("--robustness and --saliency are separate runs; choose one")
    from chestaid.bundle import read_manifest

    if read_manifest(args.bundle).num_outputs > 1:
        raise ConfigurationError("the robustness report is of binary bundles for now")
    result = evaluate_robustness(
        args.bundle,
        args.data_dir,
        args.out,
        split=args.split,
        n_boot=args.bootstrap,
        batch_size=args.batch_size,
    )
    write_lines(
        [
            robustness_table(result),
            "",
            f"written: {args.out / 'robustness.json'}, robustness.md and plots",
        ]
    )
    return EXIT_OK
