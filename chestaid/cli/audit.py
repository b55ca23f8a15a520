"""``chestaid audit``: the source-shortcut audit of the data and of an N-class bundle."""

from __future__ import annotations

import argparse
from pathlib import Path

from chestaid.cli.common import EXIT_OK, positive_int, write_lines


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``audit`` and its options."""
    a = sub.add_parser(
        "audit",
        help="can the source (adult Hannover vs pediatric Guangzhou) be told instead of the "
        "disease? borders, lung-masked images, Grad-CAM outside the lungs, masked scoring",
    )
    a.add_argument("--pediatric", type=Path, help="the pediatric data (NORMAL/, PNEUMONIA/)")
    a.add_argument(
        "--adult-covid", type=Path, help="the adult COVID-19 data (images/, metadata.csv)"
    )
    a.add_argument("--bundle", type=Path, help="an N-class model bundle (parts b and c)")
    a.add_argument("--data", type=Path, help="the bundle's N-class data folder (parts b and c)")
    a.add_argument("--out", type=Path, required=True, help="folder for audit.json, .md, masks.png")
    a.add_argument("--size", type=positive_int, default=64, help="working size of part (a)")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--bootstrap", type=positive_int, default=1000, help="bootstrap resamples")
    a.add_argument("--batch-size", type=positive_int, default=16)
    a.add_argument(
        "--max-per-class",
        type=positive_int,
        help="parts b and c on at most this many images of each class (a seeded sample; "
        "each image is scored four times)",
    )


def run_audit(args: argparse.Namespace) -> int:
    """Run the audit and print where the report went, with its conclusion."""
    from chestaid.audit.report import conclusion
    from chestaid.audit.run import FIGURE_NAME, JSON_NAME, MARKDOWN_NAME
    from chestaid.audit.run import run_audit as audit

    record = audit(
        args.out,
        pediatric_dir=args.pediatric,
        adult_dir=args.adult_covid,
        bundle=args.bundle,
        data_dir=args.data,
        size=args.size,
        seed=args.seed,
        n_boot=args.bootstrap,
        batch_size=args.batch_size,
        max_per_class=args.max_per_class,
    )
    write_lines(
        [
            conclusion(record),
            "",
            f"written: {args.out / JSON_NAME}, {MARKDOWN_NAME} and {FIGURE_NAME}",
        ]
    )
    return EXIT_OK
