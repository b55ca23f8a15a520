"""``chestaid predict`` and ``sample``: score files with Grad-CAM, or make one to score."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path
from typing import Any

from chestaid.cli.common import (
    DISCLAIMER,
    EXIT_OK,
    EXIT_SOME_REFUSED,
    positive_int,
    write_json,
)
from chestaid.display import class_probabilities_text, score_pair_text
from chestaid.errors import ChestAidError, ConfigurationError
from chestaid.imaging import DEFAULT_MAX_PIXELS

logger = logging.getLogger(__name__)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``predict`` and ``sample`` and their options."""
    p = sub.add_parser("predict", help="score files and write Grad-CAM overlays")
    p.add_argument("files", nargs="+", type=Path, help="DICOM, PNG or JPEG files")
    p.add_argument("--bundle", type=Path, help="model bundle (default: the bundled model)")
    p.add_argument(
        "--builtin",
        choices=["pneumonia", "findings"],
        default="pneumonia",
        help="which bundled model when no --bundle: pneumonia (default) or findings "
        "(COVID-19, viral and bacterial pneumonia, normal)",
    )
    p.add_argument("--cam", type=Path, help="folder for Grad-CAM overlay PNGs")
    p.add_argument("--alpha", type=float, default=0.4, help="overlay opacity 0..1")
    p.add_argument("--json", action="store_true", help="one JSON object per line and file")
    p.add_argument(
        "--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS, help="refuse larger images"
    )
    p.add_argument(
        "--runtime",
        choices=("auto", "torch", "openvino", "onnxruntime"),
        default="torch",
        help="what runs the network: torch (default), a named runtime, or auto (measure the "
        "installed ones and use the fastest that agrees with PyTorch float32)",
    )
    p.add_argument(
        "--precision",
        choices=("auto", "f32", "bf16"),
        default="f32",
        help="f32 (default), or bf16 / auto: bfloat16 where this CPU has it natively",
    )

    s = sub.add_parser(
        "sample", help="write a synthetic DX chest radiograph (DICOM) for trying ChestAid"
    )
    s.add_argument("out", type=Path, help="DICOM file to write")
    s.add_argument("--rows", type=positive_int, default=2500)
    s.add_argument("--cols", type=positive_int, default=2048)
    s.add_argument("--seed", type=int, default=0)


def _cam_name(path: Path, used: set[str]) -> str:
    name = f"{path.stem}.cam.png"
    n = 1
    while name in used:
        n += 1
        name = f"{path.stem}.{n}.cam.png"
    used.add(name)
    return name


def _classes_text(classes: tuple[tuple[str, float], ...]) -> str:
    """``class probabilities: NORMAL 0.120, BACTERIAL 0.700, ...`` (calibrated)."""
    return "class probabilities: " + class_probabilities_text(classes)


def run_predict(args: argparse.Namespace) -> int:
    """Score each file; 1 when some were refused, 0 otherwise."""
    from PIL import Image

    from chestaid.bundle import builtin_bundle_path, load_bundle
    from chestaid.inference import Scorer
    from chestaid.overlay import default_lut, display_image, render_overlay

    if not 0.0 <= args.alpha <= 1.0:
        raise ConfigurationError(f"--alpha must be in [0, 1], got {args.alpha}")
    bundle = load_bundle(
        args.bundle if args.bundle is not None else builtin_bundle_path(args.builtin)
    )
    if not bundle.manifest.is_calibrated:
        logger.warning(
            "bundle %s is not calibrated: scores are raw sigmoid outputs and no threshold is governed",
            bundle.path,
        )
    scorer = Scorer.from_bundle(bundle, runtime=args.runtime, precision=args.precision)
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
                write_json(record)
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
            runtime=scorer.runtime_name,
            calibrator=scorer.calibrator.name,
            calibration_version=calibration_version,
            assessable=pred.assessment.assessable,
            assessment=pred.assessment.to_dict(),
        )
        if pred.class_probabilities:
            # An N-class bundle: the calibrated probability of each class, in its order.
            record["class_probabilities"] = dict(pred.class_probabilities)
        if not pred.assessment.assessable:
            # Not a judgeable radiograph: no call, no overlay that would suggest one.
            record.update(above_threshold=None)
            if args.json:
                write_json(record)
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
            write_json(record)
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
            if pred.class_probabilities:
                sys.stdout.write(f"  {_classes_text(pred.class_probabilities)}\n")
    if not args.json:
        sys.stdout.write(f"{DISCLAIMER}\n")
    return EXIT_SOME_REFUSED if refused else EXIT_OK


def run_sample(args: argparse.Namespace) -> int:
    """Write a synthetic DX radiograph and say what it is."""
    from chestaid.sample import synthetic_dx

    ds = synthetic_dx(args.out, rows=args.rows, cols=args.cols, seed=args.seed)
    sys.stdout.write(
        f"wrote {args.out}: synthetic DX {ds.Rows} x {ds.Columns}, 16-bit, "
        f"SOP Instance UID {ds.SOPInstanceUID} (made-up pixels, no patient)\n"
    )
    return EXIT_OK
