"""The ``chestaid`` command line: train, calibrate, evaluate, predict, sample.

Errors of the ChestAid hierarchy become a one-line message on stderr and a non-zero
exit status (2 for a failed command, 1 when ``predict`` refused some of its files).
Each subcommand lives in a module by group (:mod:`chestaid.cli.train`,
:mod:`chestaid.cli.evaluate`, :mod:`chestaid.cli.predict`) that imports the heavy
ML modules only when its command runs, so ``chestaid --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

import chestaid
from chestaid.cli import audit, compare, evaluate, predict, train
from chestaid.cli.common import (
    DISCLAIMER,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_SOME_REFUSED,
    positive_int,
)
from chestaid.errors import ChestAidError

__all__ = [
    "COMMANDS",
    "DISCLAIMER",
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_SOME_REFUSED",
    "build_parser",
    "main",
]

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": train.run_train,
    "calibrate": evaluate.run_calibrate,
    "evaluate": evaluate.run_evaluate,
    "predict": predict.run_predict,
    "assess": evaluate.run_assess,
    "sample": predict.run_sample,
    "dataset": compare.run_dataset,
    "compare": compare.run_compare,
    "audit": audit.run_audit,
}


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
    parser.add_argument("--threads", type=positive_int, help="CPU threads for PyTorch")
    sub = parser.add_subparsers(dest="command", required=True)
    train.add_parser(sub)
    evaluate.add_parsers(sub)
    predict.add_parsers(sub)
    compare.add_parsers(sub)
    audit.add_parser(sub)
    return parser


def _configure_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )


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
