"""What every ``chestaid`` subcommand shares: exit statuses, argument types, output."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from chestaid.display import interval_text, score_text

EXIT_OK = 0
EXIT_SOME_REFUSED = 1
EXIT_ERROR = 2
DISCLAIMER = "ChestAid supports triage and double reading; it does not diagnose."

CONFUSION_RATES = ("sensitivity", "specificity", "ppv", "npv", "f1")


def positive_int(text: str) -> int:
    """An argument that must be a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def probability(text: str) -> float:
    """An argument that must lie strictly between 0 and 1."""
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def write_json(record: Any, *, default: Callable[[Any], Any] | None = None) -> None:
    """Write ``record`` as one line of JSON on stdout."""
    sys.stdout.write(json.dumps(record, default=default) + "\n")


def write_lines(lines: Sequence[str]) -> None:
    """Write ``lines`` on stdout, one a line."""
    sys.stdout.write("\n".join(lines) + "\n")


def write_outcome(
    as_json: bool,
    record: Any,
    text: Callable[[], Sequence[str]],
    *,
    default: Callable[[Any], Any] | None = None,
) -> int:
    """Write a command's outcome: ``record`` as JSON, or the lines ``text()`` makes.

    Returns :data:`EXIT_OK`, so a command can end with ``return write_outcome(...)``.
    """
    if as_json:
        write_json(record, default=default)
    else:
        write_lines(text())
    return EXIT_OK


def confusion_text(counts: Mapping[str, Any]) -> str:
    """The rates and counts of a confusion record: ``sensitivity 0.900, ...; TP 9 FP 1 ...``."""
    return (
        ", ".join(f"{k} {counts[k]:.3f}" for k in CONFUSION_RATES)
        + f"; TP {counts['tp']} FP {counts['fp']} TN {counts['tn']} FN {counts['fn']}"
    )


def threshold_lines(
    threshold: dict[str, Any], report_at_threshold: dict[str, Any], *, of: str = ""
) -> list[str]:
    """The governed threshold (``of`` names the score it applies to) and the report cases at it."""
    from chestaid.threshold import GovernedThreshold

    governed = GovernedThreshold.from_dict(threshold)
    spread = governed.threshold_ci95
    return [
        f"governed threshold{' on ' + of if of else ''} {score_text(governed.threshold)} "
        f"(95% bootstrap interval {interval_text(*spread) if spread else interval_text(None, None)}) "
        f"for sensitivity >= {governed.target_sensitivity:.2f}; on the calibration cases "
        f"sensitivity {governed.achieved_sensitivity:.3f} {interval_text(*governed.sensitivity_ci95)}, "
        f"specificity {governed.specificity:.3f} {interval_text(*governed.specificity_ci95)} "
        "(95% Wilson)",
        "report cases at threshold: " + confusion_text(report_at_threshold),
    ]
