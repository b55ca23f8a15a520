"""``chestaid dataset`` and ``chestaid compare``: the N-class layout, and backbones side by side."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from chestaid.cli.common import EXIT_OK
from chestaid.cli.train import add_recipe_options, patient_csv, recipe_config


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``dataset`` and ``compare``."""
    d = sub.add_parser(
        "dataset",
        help="lay out COVID-19 / viral / bacterial / normal as a folder per class",
        description="Link the pediatric pneumonia set (NORMAL/, PNEUMONIA/ with 'bacteria' or "
        "'virus' in the file names) and the adult COVID-19 set (images/, metadata.csv) into a "
        "folder per class, with patients.csv (file, patient, source) and layout.json.",
    )
    d.add_argument("--pediatric", type=Path, required=True, help="the pediatric pneumonia set")
    d.add_argument("--adult-covid", type=Path, required=True, help="the adult COVID-19 set")
    d.add_argument("--out", type=Path, required=True, help="the layout folder to write")
    d.add_argument(
        "--layout",
        choices=["four", "three"],
        default="four",
        help="four classes, or the reference system's three (no bacterial pneumonia)",
    )

    c = sub.add_parser(
        "compare",
        help="train and judge several backbones under one recipe; writes comparison.md",
        description="Each run is resumable: run the same command again to go on. A finished "
        "run is not trained again.",
    )
    c.add_argument("data_dir", type=Path, help="a folder per class (e.g. from 'chestaid dataset')")
    c.add_argument("--out", type=Path, required=True, help="folder for the runs and the table")
    c.add_argument(
        "--backbones",
        type=lambda text: tuple(b.strip() for b in text.split(",") if b.strip()),
        help="comma-separated (default: all of the comparison's backbones)",
    )
    c.add_argument(
        "--splits",
        type=lambda text: tuple(s.strip() for s in text.split(",") if s.strip()),
        default=("patient",),
        help="patient, image, or both (image,patient) to show the gap a split by image hides",
    )
    c.add_argument(
        "--init-from",
        type=Path,
        help="the bundle whose frozen body the linear-head run uses (default: the bundled model)",
    )
    c.add_argument(
        "--rejudge", action="store_true", help="judge finished runs again (e.g. to time them)"
    )
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_recipe_options(c, input_size=128, epochs=8)
    c.set_defaults(max_minutes=30.0, split="patient")


def run_dataset(args: argparse.Namespace) -> int:
    """Write the layout and summarise it."""
    from chestaid.findings_data import LAYOUTS, build_layout

    summary = build_layout(args.pediatric, args.adult_covid, args.out, classes=LAYOUTS[args.layout])
    sys.stdout.write(
        f"{args.out}: "
        + ", ".join(
            f"{c} {summary['images'].get(c, 0)} images / {summary['patients'][c]} patients"
            for c in summary["classes"]
        )
        + "\n"
    )
    return EXIT_OK


def run_compare(args: argparse.Namespace) -> int:
    """Train (or resume) and judge each run, then say where the table is."""
    from chestaid.comparison import DEFAULT_BACKBONES, plan_runs, run_comparison

    recipe = recipe_config(
        args, fractions={"train": 0.65, "validation": 0.10, "calibration": 0.05, "report": 0.20}
    )
    plans = plan_runs(args.backbones or DEFAULT_BACKBONES, args.splits)
    results = run_comparison(
        args.data_dir,
        args.out,
        recipe,
        plans,
        patient_csv=patient_csv(args),
        init_bundle=str(args.init_from) if args.init_from else None,
        progress=not args.no_progress,
        rejudge=args.rejudge,
    )
    for r in results:
        sys.stdout.write(
            f"{r['run']}: test accuracy {r['test_accuracy']:.3f}, "
            f"macro ROC-AUC {r['macro_roc_auc']:.3f}, {r['epochs']} epochs\n"
        )
    sys.stdout.write(f"table: {args.out / 'comparison.md'}\n")
    return EXIT_OK
