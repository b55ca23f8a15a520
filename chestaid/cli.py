"""The ``chestaid`` command line: train, calibrate, evaluate, predict, sample.

Errors of the ChestAid hierarchy become a one-line message on stderr and a non-zero
exit status (2 for a failed command, 1 when ``predict`` refused some of its files).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import chestaid
from chestaid.display import interval_text, score_pair_text, score_text
from chestaid.errors import ChestAidError, ConfigurationError
from chestaid.imaging import DEFAULT_MAX_PIXELS

logger = logging.getLogger("chestaid.cli")

EXIT_OK = 0
EXIT_SOME_REFUSED = 1
EXIT_ERROR = 2
DISCLAIMER = "ChestAid supports triage and double reading; it does not diagnose."


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="chestaid",
        description="Chest-radiograph pneumonia triage: train, calibrate, evaluate and "
        f"predict with calibrated DenseNet-121 scores and Grad-CAM. {DISCLAIMER}",
    )
    parser.add_argument("--version", action="version", version=f"chestaid {chestaid.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    parser.add_argument("--threads", type=_positive_int, help="CPU threads for PyTorch")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model on a folder-per-class data set")
    t.add_argument(
        "data_dir", type=Path, help="folder with NORMAL/ and PNEUMONIA/ (or train/ holding them)"
    )
    t.add_argument(
        "--out", type=Path, required=True, help="bundle folder to write (resumes if interrupted)"
    )
    t.add_argument(
        "--arch", default="densenet121", help="backbone (densenet121, resnet50, efficientnet_b0)"
    )
    t.add_argument("--input-size", type=_positive_int, default=224)
    t.add_argument("--epochs", type=_positive_int, default=30)
    t.add_argument("--batch-size", type=_positive_int, default=32)
    t.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate")
    t.add_argument("--weight-decay", type=float, default=1e-4)
    t.add_argument("--dropout", type=float, default=0.2)
    t.add_argument(
        "--patience",
        type=_positive_int,
        default=6,
        help="epochs without a better validation ROC-AUC before stopping",
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")
    t.add_argument(
        "--no-augment", action="store_true", help="disable rotation/brightness/contrast jitter"
    )
    t.add_argument(
        "--augment",
        choices=["light", "acquisition"],
        default="light",
        help="augmentation recipe: light (small rotations, brightness, contrast) or "
        "acquisition (blur, sharpening, resampling, noise, gamma, crops, rotation, occlusion)",
    )
    t.add_argument("--label-smoothing", type=float, default=0.0, help="BCE targets y(1-e)+e/2")
    t.add_argument("--mixup", type=float, default=0.0, help="mixup Beta(a, a); 0 for none")
    t.add_argument(
        "--ema", type=float, help="keep an exponential moving average of the weights (decay)"
    )
    t.add_argument(
        "--orientation-head",
        type=float,
        default=0.0,
        help="share of each batch turned/inverted to train the orientation head; 0 for none",
    )
    t.add_argument(
        "--select",
        choices=["best_validation", "last"],
        default="best_validation",
        help="keep the epoch with the best validation ROC-AUC, or the last one",
    )
    t.add_argument(
        "--max-steps-per-epoch", type=_positive_int, help="cap steps per epoch (smoke runs)"
    )
    t.add_argument(
        "--patients",
        type=Path,
        help="CSV with columns file,patient overriding file-name patient keys",
    )
    t.add_argument(
        "--pretrained",
        type=Path,
        help="local torchvision weights file (e.g. ImageNet); nothing is downloaded",
    )
    t.add_argument("--model-version", help="version string recorded in the bundle")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")

    c = sub.add_parser(
        "calibrate", help="fit temperature / Platt / isotonic and the governed threshold"
    )
    c.add_argument("bundle", type=Path)
    c.add_argument("data_dir", type=Path)
    c.add_argument("--target-sensitivity", type=_probability, default=0.90)
    c.add_argument("--batch-size", type=_positive_int, default=32)
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
    a.add_argument("--components", type=_positive_int, default=32)
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
    e.add_argument("--saliency-cases", type=_positive_int, default=64)
    e.add_argument(
        "--robustness",
        action="store_true",
        help="instead of the standard metrics: ROC-AUC under corruptions, normals under "
        "blur and exposure shifts, featureless, turned and inverted inputs "
        "(robustness.json, robustness.md and plots)",
    )
    e.add_argument("--bootstrap", type=_positive_int, default=1000, help="bootstrap resamples")
    e.add_argument("--batch-size", type=_positive_int, default=32)

    p = sub.add_parser("predict", help="score files and write Grad-CAM overlays")
    p.add_argument("files", nargs="+", type=Path, help="DICOM, PNG or JPEG files")
    p.add_argument("--bundle", type=Path, help="model bundle (default: the bundled model)")
    p.add_argument("--cam", type=Path, help="folder for Grad-CAM overlay PNGs")
    p.add_argument("--alpha", type=float, default=0.4, help="overlay opacity 0..1")
    p.add_argument("--json", action="store_true", help="one JSON object per line and file")
    p.add_argument(
        "--max-pixels", type=_positive_int, default=DEFAULT_MAX_PIXELS, help="refuse larger images"
    )

    s = sub.add_parser(
        "sample", help="write a synthetic DX chest radiograph (DICOM) for trying ChestAid"
    )
    s.add_argument("out", type=Path, help="DICOM file to write")
    s.add_argument("--rows", type=_positive_int, default=2500)
    s.add_argument("--cols", type=_positive_int, default=2048)
    s.add_argument("--seed", type=int, default=0)
    return parser


def _configure_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )


def _cmd_train(args: argparse.Namespace) -> int:
    from chestaid.training.augment import RECIPES
    from chestaid.training.loop import TrainConfig, train

    config = TrainConfig(
        architecture=args.arch,
        input_size=args.input_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        dropout=args.dropout,
        patience=args.patience,
        seed=args.seed,
        precision=args.precision,
        augmentation=not args.no_augment,
        augment=RECIPES[args.augment],
        label_smoothing=args.label_smoothing,
        mixup_alpha=args.mixup,
        ema_decay=args.ema,
        orientation_fraction=args.orientation_head,
        select=args.select,
        max_steps_per_epoch=args.max_steps_per_epoch,
        threads=args.threads,
        pretrained=str(args.pretrained) if args.pretrained else None,
    )
    result = train(
        args.data_dir,
        args.out,
        config,
        patient_csv=args.patients,
        version=args.model_version,
        progress=not args.no_progress,
    )
    sys.stdout.write(
        f"trained {config.architecture} -> {result.bundle_path} (version {result.manifest.version}): "
        + (
            f"best validation ROC-AUC {result.best_val_auc:.4f} at epoch {result.best_epoch}, "
            if config.select == "best_validation"
            else f"validation ROC-AUC {result.best_val_auc:.4f} at the last epoch {result.best_epoch}, "
        )
        + f"{result.seconds / 60:.1f} min; calibrate it next with 'chestaid calibrate'\n"
    )
    return EXIT_OK


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from chestaid.evaluation import calibrate_bundle
    from chestaid.threshold import GovernedThreshold

    outcome = calibrate_bundle(
        args.bundle,
        args.data_dir,
        target_sensitivity=args.target_sensitivity,
        batch_size=args.batch_size,
        out_dir=args.out,
    )
    if args.json:
        sys.stdout.write(json.dumps(outcome.__dict__, default=float) + "\n")
        return EXIT_OK
    lines = [
        f"calibration cases: {outcome.source}",
        "calibrator    ECE     adaECE  Brier   NLL     (report cases)",
    ]
    for name, m in outcome.comparison["metrics"].items():
        mark = "  <- kept" if name == outcome.chosen else ""
        lines.append(
            f"{name:<13} {m['ece']:.4f}  {m['adaptive_ece']:.4f}  {m['brier']:.4f}  {m['nll']:.4f}{mark}"
        )
    governed, rep = GovernedThreshold.from_dict(outcome.threshold), outcome.report_at_threshold
    spread = governed.threshold_ci95
    lines.append(
        f"governed threshold {score_text(governed.threshold)} (95% bootstrap interval "
        f"{interval_text(*spread) if spread else interval_text(None, None)}) "
        f"for sensitivity >= {governed.target_sensitivity:.2f}; on the calibration cases "
        f"sensitivity {governed.achieved_sensitivity:.3f} {interval_text(*governed.sensitivity_ci95)}, "
        f"specificity {governed.specificity:.3f} {interval_text(*governed.specificity_ci95)} "
        "(95% Wilson)"
    )
    lines.append(
        "report cases at threshold: "
        + ", ".join(f"{k} {rep[k]:.3f}" for k in ("sensitivity", "specificity", "ppv", "npv", "f1"))
        + f"; TP {rep['tp']} FP {rep['fp']} TN {rep['tn']} FN {rep['fn']}"
    )
    sys.stdout.write("\n".join(lines) + "\n")
    return EXIT_OK


def _cmd_assess(args: argparse.Namespace) -> int:
    from chestaid.assessment_fit import fit_assessment

    fit = fit_assessment(
        args.bundle,
        args.data_dir,
        external=args.external,
        non_chest=args.non_chest,
        components=args.components,
    )
    if args.json:
        sys.stdout.write(json.dumps(fit.to_dict()) + "\n")
        return EXIT_OK
    limit = fit.settings.max_feature_distance
    lines = [f"feature-distance limit {limit}; not assessable, by set:"]
    for name, outcome in fit.refused.items():
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(outcome["reasons"].items())) or "-"
        lines.append(
            f"  {name}: {outcome['refused']} of {outcome['n']} ({100 * outcome['rate']:.2f}%)"
            f"  [{reasons}]; turned upright {outcome['turned_upright']}"
        )
    sys.stdout.write("\n".join(lines) + "\n")
    return EXIT_OK


def _cmd_evaluate(args: argparse.Namespace) -> int:
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
    cm = r["threshold"]["confusion"]
    lines = [
        f"cases: {r['cases']['n']} ({r['cases']['positives']} pneumonia, {r['cases']['negatives']} normal; "
        f"{r['cases']['source']}, split {r['cases']['split']})",
        "ROC-AUC {:.4f} [{:.4f}, {:.4f}]".format(r["roc_auc"]["value"], *r["roc_auc"]["ci95"]),
        "PR-AUC  {:.4f} [{:.4f}, {:.4f}]".format(r["pr_auc"]["value"], *r["pr_auc"]["ci95"]),
        f"Brier {r['brier']:.4f}  ECE {r['ece']:.4f}  adaptive ECE {r['adaptive_ece']:.4f} "
        f"(uncalibrated ECE {r['uncalibrated']['ece']:.4f})",
        f"threshold {score_text(r['threshold']['value'])}{'' if r['threshold']['governed'] else ' (not governed: calibrate first)'}: "
        + ", ".join(f"{k} {cm[k]:.3f}" for k in ("sensitivity", "specificity", "ppv", "npv", "f1"))
        + f"; TP {cm['tp']} FP {cm['fp']} TN {cm['tn']} FN {cm['fn']}; "
        f"95% Wilson: sensitivity {interval_text(*r['threshold']['sensitivity_ci95'])}, "
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
        g, r = s["on_logit"]["gradcam"], s["on_logit"]["random"]
        lines.append(
            f"  on the logit: deletion AUC {g['deletion_auc']:.3f} (random {r['deletion_auc']:.3f}), "
            f"keep AUC {g['keep_auc']:.3f} (random {r['keep_auc']:.3f}), unperturbed {g['original']:.3f}"
        )
    lines.append(f"written: {args.out / 'metrics.json'} and plots")
    sys.stdout.write("\n".join(lines) + "\n")
    return EXIT_OK


def _evaluate_robustness(args: argparse.Namespace) -> int:
    from chestaid.robustness import evaluate_robustness
    from chestaid.robustness_report import robustness_table

    if args.saliency:
        raise ConfigurationError("--robustness and --saliency are separate runs; choose one")
    result = evaluate_robustness(
        args.bundle,
        args.data_dir,
        args.out,
        split=args.split,
        n_boot=args.bootstrap,
        batch_size=args.batch_size,
    )
    sys.stdout.write(robustness_table(result) + "\n\n")
    sys.stdout.write(f"written: {args.out / 'robustness.json'}, robustness.md and plots\n")
    return EXIT_OK


def _cam_name(path: Path, used: set[str]) -> str:
    name = f"{path.stem}.cam.png"
    n = 1
    while name in used:
        n += 1
        name = f"{path.stem}.{n}.cam.png"
    used.add(name)
    return name


def _cmd_predict(args: argparse.Namespace) -> int:
    from PIL import Image

    from chestaid.bundle import default_bundle_path, load_bundle
    from chestaid.inference import Scorer
    from chestaid.overlay import default_lut, display_image, render_overlay

    if not 0.0 <= args.alpha <= 1.0:
        raise ConfigurationError(f"--alpha must be in [0, 1], got {args.alpha}")
    bundle = load_bundle(args.bundle if args.bundle is not None else default_bundle_path())
    if not bundle.manifest.is_calibrated:
        logger.warning(
            "bundle %s is not calibrated: scores are raw sigmoid outputs and no threshold is governed",
            bundle.path,
        )
    scorer = Scorer.from_bundle(bundle)
    calibration_version = (bundle.manifest.calibration or {}).get("calibration_version")
    if args.cam is not None:
        args.cam.mkdir(parents=True, exist_ok=True)
    lut = default_lut()
    used: set[str] = set()
    refused = 0
    for path in args.files:
        record: dict[str, Any] = {"file": str(path)}
        try:
            image, pred = scorer.score_file(path, max_pixels=args.max_pixels)
        except ChestAidError as exc:
            refused += 1
            record.update(error=str(exc), error_type=type(exc).__name__)
            if args.json:
                sys.stdout.write(json.dumps(record) + "\n")
            else:
                sys.stderr.write(f"{path}: refused ({type(exc).__name__}): {exc}\n")
            continue
        threshold = None if math.isnan(pred.threshold) else pred.threshold
        record.update(
            score=pred.score,
            threshold=threshold,
            above_threshold=pred.above_threshold,
            logit=pred.logit,
            model_version=pred.model_version,
            calibrator=scorer.calibrator.name,
            calibration_version=calibration_version,
            assessable=pred.assessment.assessable,
            assessment=pred.assessment.to_dict(),
        )
        if not pred.assessment.assessable:
            # Not a judgeable radiograph: no call, no overlay that would suggest one.
            record.update(above_threshold=None)
            if args.json:
                sys.stdout.write(json.dumps(record) + "\n")
            else:
                sys.stdout.write(
                    f"{path}: NOT ASSESSABLE ({pred.assessment.reason}): "
                    f"{pred.assessment.detail}; read it without ChestAid\n"
                )
            continue
        if args.cam is not None:
            grey = display_image(image.pixels)
            overlay = render_overlay(grey, pred.cam, alpha=args.alpha, lut=lut)
            cam_path = args.cam / _cam_name(path, used)
            Image.fromarray(overlay).save(cam_path)
            record["cam"] = str(cam_path)
        if args.json:
            sys.stdout.write(json.dumps(record) + "\n")
        else:
            flag = (
                "no governed threshold"
                if threshold is None
                else (
                    "ABOVE threshold: review first" if pred.above_threshold else "below threshold"
                )
            )
            score_shown, th = score_pair_text(pred.score, threshold)
            th = "-" if threshold is None else th
            cam = f"  cam {record['cam']}" if "cam" in record else ""
            sys.stdout.write(
                f"{path}: score {score_shown}  threshold {th}  {flag}  model {pred.model_version}{cam}\n"
            )
    if not args.json:
        sys.stdout.write(f"{DISCLAIMER}\n")
    return EXIT_SOME_REFUSED if refused else EXIT_OK


def _cmd_sample(args: argparse.Namespace) -> int:
    from chestaid.sample import synthetic_dx

    ds = synthetic_dx(args.out, rows=args.rows, cols=args.cols, seed=args.seed)
    sys.stdout.write(
        f"wrote {args.out}: synthetic DX {ds.Rows} x {ds.Columns}, 16-bit, "
        f"SOP Instance UID {ds.SOPInstanceUID} (made-up pixels, no patient)\n"
    )
    return EXIT_OK


COMMANDS = {
    "train": _cmd_train,
    "calibrate": _cmd_calibrate,
    "evaluate": _cmd_evaluate,
    "predict": _cmd_predict,
    "assess": _cmd_assess,
    "sample": _cmd_sample,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    _configure_logging(args)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        return COMMANDS[args.command](args)
    except ChestAidError as exc:
        sys.stderr.write(f"chestaid {args.command}: {type(exc).__name__}: {exc}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        sys.stderr.write(f"chestaid {args.command}: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
