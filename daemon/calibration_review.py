"""A stored calibration version checked before activation: the guardrails, then the preview.

The checks use the row alone (its calibrator, threshold and the record of the cases it
was fitted on), so a version made any other way is held to the same rules as a fit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from chestaid.calibration.guardrails import (
    HARD_FLOORS,
    FitFacts,
    Floors,
    calibrator_reasons,
    fit_reasons,
)
from chestaid.errors import CalibrationError, ConfigurationError
from daemon.calibration_preview import Candidate, Preview, preview
from daemon.db.models import CalibrationVersion
from daemon.settings import Band, CalibrationSettings


def floors_of(settings: CalibrationSettings) -> Floors:
    """The minimums in force: the settings' (never below the hard floors)."""
    return Floors(
        cases=max(settings.min_cases, HARD_FLOORS.cases),
        positives=max(settings.min_positives, HARD_FLOORS.positives),
        negatives=max(settings.min_negatives, HARD_FLOORS.negatives),
    )


def version_reasons(row: CalibrationVersion, floors: Floors = HARD_FLOORS) -> list[str]:
    """Why a stored version must not be activated (empty when it may), from its row alone."""
    try:
        calibrator = json.loads(row.calibrator)
        report = json.loads(row.report)
    except ValueError:
        return ["the version's calibrator or report is not readable"]
    if not isinstance(calibrator, dict) or not isinstance(report, dict):
        return ["the version's calibrator or report is not readable"]
    reasons = calibrator_reasons(calibrator)
    try:
        facts = FitFacts.from_dict(report["guardrail_facts"])
    except (KeyError, TypeError, ValueError):
        return [
            *reasons,
            "the version has no record of the cases it was fitted on and its cross-validated "
            "sensitivity, so it cannot be checked; fit it again",
        ]
    if (facts.threshold, facts.cases, facts.target_sensitivity) != (
        row.threshold,
        row.n_cases,
        row.target_sensitivity,
    ):
        reasons.append("the version's threshold or cases differ from the record it was checked on")
    return reasons + fit_reasons(facts, floors)


@dataclass(frozen=True)
class Review:
    """A version as it would be activated now: the guardrails' reasons and the preview."""

    version: int
    reasons: list[str]
    preview: Preview | None  # None when refused: a refused version is never previewed

    def to_dict(self) -> dict[str, Any]:
        """Plain values."""
        return {
            "version": self.version,
            "refused": bool(self.reasons),
            "reasons": self.reasons,
            "preview": None if self.preview is None else self.preview.to_dict(),
        }


def review_row(
    session: Session,
    row: CalibrationVersion,
    *,
    bands: Sequence[Band],
    settings: CalibrationSettings,
    now: datetime | None = None,
) -> Review:
    """Check a version against the guardrails and, if it passes, preview it (reads only)."""
    reasons = version_reasons(row, floors_of(settings))
    if reasons:
        return Review(row.version, reasons, None)
    try:
        found = preview(
            session, Candidate.of_row(row), bands=bands, days=settings.preview_days, now=now
        )
    except (CalibrationError, ConfigurationError, ValueError) as exc:
        return Review(row.version, [f"the version cannot be applied: {exc}"], None)
    return Review(row.version, [], found)
