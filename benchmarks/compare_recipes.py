"""Compare model bundles on robustness, side by side: what a training recipe is chosen on.

Runs the robustness report (as ``chestaid evaluate --robustness``) of each bundle on
DATA, writing it to DIR/<bundle name>/, and prints one markdown table with a column
per bundle (also written to DIR/comparison.md, with bar charts DIR/comparison_*.png).
A robustness.json already in DIR/<bundle name>/ is reused when it is of the same
weights, threshold and protocol; ``--force`` runs again regardless.

    python benchmarks/compare_recipes.py BUNDLE [BUNDLE ...] --data DATA --out DIR
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch

from chestaid.bundle import read_manifest
from chestaid.errors import ChestAidError
from chestaid.robustness import evaluate_robustness
from chestaid.robustness_report import (
    PROTOCOL_VERSION,
    compare_robustness,
    write_comparison_plots,
)

logger = logging.getLogger("compare_recipes")


def folder_names(bundles: list[Path]) -> list[str]:
    """One output folder name per bundle: its own name, numbered when names repeat."""
    names = [b.resolve().name for b in bundles]
    return [f"{n}-{i + 1}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def reusable(path: Path, bundle: Path) -> dict[str, Any] | None:
    """The stored result at ``path`` if it is of this bundle's weights, threshold and protocol."""
    if not path.is_file():
        return None
    try:
        stored: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        manifest = read_manifest(bundle)
        threshold = (manifest.threshold or {}).get("threshold")
        same = (
            stored["bundle"]["weights_sha256"] == manifest.weights.get("sha256")
            and stored["protocol"]["version"] == PROTOCOL_VERSION
            and stored["threshold"]["value"] == threshold
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("ignoring %s: %s", path, exc)
        return None
    return stored if same else None


def main() -> int:
    """Evaluate (or reuse) each bundle's robustness and print the comparison table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", type=Path, help="model bundle folders")
    parser.add_argument("--data", type=Path, required=True, help="data folder (folder per class)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the reports")
    parser.add_argument("--split", default="auto", help="as for chestaid evaluate")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, help="CPU threads for PyTorch")
    parser.add_argument("--force", action="store_true", help="never reuse a stored result")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    names = folder_names(args.bundles)
    for bundle, name in zip(args.bundles, names, strict=True):
        out = args.out / name
        stored = None if args.force else reusable(out / "robustness.json", bundle)
        if stored is not None:
            logger.info("%s: reusing %s", bundle, out / "robustness.json")
            results.append(stored)
            continue
        started = time.perf_counter()
        try:
            results.append(
                evaluate_robustness(
                    bundle,
                    args.data,
                    out,
                    split=args.split,
                    n_boot=args.bootstrap,
                    batch_size=args.batch_size,
                )
            )
        except ChestAidError as exc:
            print(f"{bundle}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
        logger.info("%s: evaluated in %.1f min", bundle, (time.perf_counter() - started) / 60)
    columns = [f"{r['bundle']['version']} ({n})" for r, n in zip(results, names, strict=True)]
    table = compare_robustness(results, columns)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "comparison.md").write_text(table + "\n", encoding="utf-8")
    write_comparison_plots(results, columns, args.out)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
