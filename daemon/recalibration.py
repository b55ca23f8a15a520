"""Recalibration on local feedback: fit, review, activate, roll back.

A fit uses the labelled studies (pneumonia confirmed or not; indeterminate left out)
scored by the model in service; a study whose prediction was "not assessable" is
never fitted on (its score means nothing). It compares temperature, Platt and (with enough
cases) isotonic by cross-validated NLL on those cases (see
:func:`chestaid.calibration.select_local_calibration`), re-derives the governed
threshold for the target sensitivity by the bundle's own rule
(:func:`chestaid.threshold.governed_threshold`), and stores the result as a new calibration
version, pending. Nothing changes for new studies until an admin activates it; the
worker then uses it for the next study without a restart. Any earlier version can be
activated again, or the bundle's own calibration restored (``deactivate``). Every
step is in the audit log.

Guardrails (:mod:`chestaid.calibration.guardrails`) hold here, for the web, the API
and the command line alike: a fit on too few cases, or a degenerate one, is refused
with its reasons (audited, not stored: the schema has no state for it), and a version
is checked again from its row before it is activated, however the row was made.
Activation also needs the number of recent studies that would change band
(:mod:`daemon.calibration_preview`) confirmed, counted again at that moment.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chestaid.calibration import select_local_calibration
from chestaid.calibration.guardrails import (
    HARD_FLOORS,
    FitFacts,
    Floors,
    calibrator_reasons,
    count_reasons,
    fit_reasons,
)
from chestaid.errors import CalibrationError, ConfigurationError
from chestaid.metrics import confusion_at, ece, wilson_interval
from chestaid.threshold import RULE, governed_threshold
from daemon import audit
from daemon.calibration_preview import Candidate, Preview, preview
from daemon.calibration_review import Review, review_row
from daemon.db.models import CalibrationState, CalibrationVersion, utcnow
from daemon.db.session import SessionFactory, reading, writing
from daemon.errors import DaemonError
from daemon.feedback import TRUTH, labelled_cases, summarise
from daemon.settings import Band, CalibrationSettings

logger = logging.getLogger(__name__)


class RecalibrationError(DaemonError):
    """A calibration cannot be fitted or activated (too few cases, no such version)."""


class NoSuchVersionError(RecalibrationError):
    """No calibration version has that number."""


class CalibrationRefusedError(RecalibrationError):
    """A fit or a version fails the guardrails; ``reasons`` says each way it fails."""

    def __init__(self, what: str, reasons: Sequence[str]) -> None:
        self.reasons = list(reasons)
        super().__init__(f"{what} refused: " + "; ".join(self.reasons))


class ConfirmationMismatchError(RecalibrationError):
    """The number confirmed is not the number of studies that would change band now."""

    def __init__(self, confirmed: int | None, found: Preview) -> None:
        self.confirmed, self.preview = confirmed, found
        given = "no number was confirmed" if confirmed is None else f"{confirmed} was confirmed"
        super().__init__(
            f"activating v{found.version} would now change the band of {found.changed} "
            f"studies of the last {found.days} days, but {given}; review the preview and "
            f"confirm {found.changed}"
        )


@dataclass(frozen=True)
class Fitted:
    """A calibration fitted on local cases, not yet stored."""

    model_version: str
    bundle_calibration_version: int
    method: str
    calibrator: str  # JSON
    threshold: float
    target_sensitivity: float
    n_cases: int
    report: dict[str, Any]


def fit_local_calibration(
    session: Session,
    *,
    model_version: str,
    bundle_calibration_version: int,
    target_sensitivity: float,
    min_cases: int | None = None,
    floors: Floors = HARD_FLOORS,
    user: str,
) -> CalibrationVersion:
    """Fit a pending calibration version on this site's labelled studies and store it.

    In one unit of work; the web and the CLI use :func:`fit_version`, which fits in a
    reading unit and stores in a short writing one, so the cross-validation and the
    bootstrap never hold the write lock.

    Raises:
        RecalibrationError: as for :func:`fit`.
    """
    fitted = fit(
        session,
        model_version=model_version,
        bundle_calibration_version=bundle_calibration_version,
        target_sensitivity=target_sensitivity,
        min_cases=min_cases,
        floors=floors,
    )
    return store(session, fitted, user=user)


def fit_version(
    sessions: SessionFactory,
    *,
    model_version: str,
    bundle_calibration_version: int,
    target_sensitivity: float,
    min_cases: int | None,
    floors: Floors,
    user: str,
) -> int:
    """Fit (reading) and store (writing) a pending version; returns its number.

    A refused fit is recorded in the audit log with its reasons, then raised.

    Raises:
        CalibrationRefusedError: too few cases or a degenerate fit (with the reasons).
        RecalibrationError: the fit cannot be made at all.
    """
    try:
        with reading(sessions) as session:
            fitted = fit(
                session,
                model_version=model_version,
                bundle_calibration_version=bundle_calibration_version,
                target_sensitivity=target_sensitivity,
                min_cases=min_cases,
                floors=floors,
            )
    except CalibrationRefusedError as exc:
        with writing(sessions) as session:
            audit.record(
                session,
                actor=user,
                action="calibration.refused",
                subject=model_version,
                detail={"reasons": exc.reasons, "target_sensitivity": target_sensitivity},
            )
        raise
    with writing(sessions) as session:
        return store(session, fitted, user=user).version


def fit(
    session: Session,
    *,
    model_version: str,
    bundle_calibration_version: int,
    target_sensitivity: float,
    min_cases: int | None = None,
    floors: Floors = HARD_FLOORS,
) -> Fitted:
    """Fit a calibration on this site's labelled studies (reads only).

    Args:
        min_cases: the admin's minimum for this fit; it may raise ``floors.cases``,
            never lower it.
        floors: the minimums in force (:func:`floors_of` the settings).

    Raises:
        CalibrationRefusedError: too few labelled studies, or too few of either class,
            or a degenerate fit (:mod:`chestaid.calibration.guardrails`).
        RecalibrationError: ``min_cases`` below the floor, or a fit that cannot be made.
    """
    if min_cases is not None and min_cases < floors.cases:
        raise RecalibrationError(
            f"the minimum number of labelled studies cannot be set below {floors.cases}"
        )
    floors = Floors(max(min_cases or 0, floors.cases), floors.positives, floors.negatives)
    cases = [
        c
        for c in labelled_cases(session)
        if c.model_version == model_version and c.assessable and TRUTH[c.label] is not None
    ]
    logits = np.array([c.logit for c in cases])
    labels = np.array([TRUTH[c.label] for c in cases], dtype=int)
    n_pos = int(labels.sum())
    too_few = count_reasons(len(cases), n_pos, len(cases) - n_pos, floors)
    if too_few:
        raise CalibrationRefusedError(f"a fit for model {model_version}", too_few)
    before = np.array([c.score for c in cases])
    try:
        local = select_local_calibration(logits, labels)
        after = local.calibrator.predict_proba(logits)
        governed = governed_threshold(after, labels, target_sensitivity)
    except CalibrationError as exc:
        raise RecalibrationError(str(exc)) from exc
    # Out-of-fold scores at the new threshold: estimates for studies not yet seen.
    estimate = confusion_at(local.out_of_fold, labels, governed.threshold)
    facts = FitFacts(
        cases=len(cases),
        positives=n_pos,
        negatives=len(cases) - n_pos,
        threshold=governed.threshold,
        target_sensitivity=target_sensitivity,
        lowest_score=float(after.min()),
        highest_score=float(after.max()),
        oof_true_positives=int(estimate.tp),
        oof_false_negatives=int(estimate.fn),
    )
    calibrator = local.calibrator.to_dict()
    refused = calibrator_reasons(calibrator) + fit_reasons(facts, floors)
    if refused:
        raise CalibrationRefusedError(f"the {local.chosen} fit", refused)
    # Before: the decisions the calibration in force actually made on these studies.
    was = summarise(cases).confusion
    report: dict[str, Any] = {
        "comparison": local.to_dict(),
        "ece_before": float(ece(before, labels, n_bins=10)),
        "ece_after_cross_validated": local.cv_ece[local.chosen],
        "threshold": governed.threshold,
        # Bootstrap interval of the threshold the rule picks on these studies.
        "threshold_ci95": governed.threshold_ci95,
        "threshold_rule": RULE,
        "target_sensitivity": target_sensitivity,
        # In-sample: the rates on the studies the threshold was set on, with Wilson intervals.
        "governed": governed.to_dict(),
        "sensitivity_estimate": estimate.sensitivity,
        "sensitivity_ci95": wilson_interval(estimate.tp, estimate.tp + estimate.fn),
        "specificity_estimate": estimate.specificity,
        "specificity_ci95": wilson_interval(estimate.tn, estimate.tn + estimate.fp),
        "sensitivity_before": was.sensitivity,
        "specificity_before": was.specificity,
        "positives": n_pos,
        "negatives": len(cases) - n_pos,
        # Where the labels came from: readers' clicks, or final reports' text.
        "by_source": summarise(cases).by_source,
        # What the guardrails are checked on again before activation.
        "guardrail_facts": facts.to_dict(),
    }
    return Fitted(
        model_version=model_version,
        bundle_calibration_version=bundle_calibration_version,
        method=local.chosen,
        calibrator=json.dumps(calibrator),
        threshold=governed.threshold,
        target_sensitivity=target_sensitivity,
        n_cases=len(cases),
        report=report,
    )


def store(session: Session, fitted: Fitted, *, user: str) -> CalibrationVersion:
    """Store a fitted calibration as the next version, pending (audited)."""
    latest = session.scalar(select(func.max(CalibrationVersion.version)))
    version = max(int(latest or 0), fitted.bundle_calibration_version) + 1
    row = CalibrationVersion(
        version=version,
        model_version=fitted.model_version,
        method=fitted.method,
        calibrator=fitted.calibrator,
        threshold=fitted.threshold,
        target_sensitivity=fitted.target_sensitivity,
        n_cases=fitted.n_cases,
        report=json.dumps(fitted.report, default=float),
        state=CalibrationState.PENDING,
        fitted_by=user,
        fitted_at=utcnow(),
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=user,
        action="calibration.fitted",
        subject=f"v{version}",
        detail={"method": fitted.method, "threshold": fitted.threshold, "cases": fitted.n_cases},
    )
    return row


def _row(session: Session, version: int) -> CalibrationVersion:
    row = session.scalar(select(CalibrationVersion).where(CalibrationVersion.version == version))
    if row is None:
        raise NoSuchVersionError(f"no calibration version {version}")
    return row


def review(
    session: Session,
    *,
    version: int,
    bands: Sequence[Band],
    settings: CalibrationSettings,
    now: datetime | None = None,
) -> Review:
    """Check a version against the guardrails and, if it passes, preview it (reads only).

    Raises:
        NoSuchVersionError: no such version.
    """
    return review_row(session, _row(session, version), bands=bands, settings=settings, now=now)


def activate(
    session: Session,
    *,
    version: int,
    user: str,
    bands: Sequence[Band],
    settings: CalibrationSettings,
    confirm_changes: int | None,
    now: datetime | None = None,
) -> tuple[CalibrationVersion, Preview]:
    """Make a version the one in use (the previous one is retired); audited.

    The version is checked against the guardrails again, from its row, and the preview
    counted again: ``confirm_changes`` must be the number of recent studies that would
    change band now.

    Returns:
        The version, now active, and the preview it was activated on.

    Raises:
        NoSuchVersionError: no such version.
        CalibrationRefusedError: the version fails the guardrails.
        ConfirmationMismatchError: ``confirm_changes`` is not the count found now.
    """
    found = review(session, version=version, bands=bands, settings=settings, now=now)
    if found.preview is None:
        raise CalibrationRefusedError(f"activating v{version}", found.reasons)
    if confirm_changes != found.preview.changed:
        raise ConfirmationMismatchError(confirm_changes, found.preview)
    row = _row(session, version)
    previous = active_version(session, model_version=row.model_version)
    if previous is not None and previous.id != row.id:
        previous.state = CalibrationState.RETIRED
    row.state = CalibrationState.ACTIVE
    row.activated_by, row.activated_at = user, utcnow()
    counts = found.preview.to_dict()
    audit.record(
        session,
        actor=user,
        action="calibration.activated",
        subject=f"v{version}",
        detail={
            "version": version,
            "previous": previous.version if previous is not None else "bundle",
            "threshold": row.threshold,
            "previous_threshold": previous.threshold if previous is not None else None,
            "confirmed_changes": confirm_changes,
            "preview": {k: counts[k] for k in counts if k != "version"},
        },
    )
    return row, found.preview


def deactivate(
    session: Session,
    *,
    model_version: str,
    user: str,
    bundle: Candidate | None = None,
    bands: Sequence[Band] = (),
    settings: CalibrationSettings | None = None,
    now: datetime | None = None,
) -> int | None:
    """Go back to the bundle's own calibration; returns the version retired, if any.

    Never refused, nor held for a confirmation: it is the way back. With the bundle's
    calibration (``bundle``), the bands and the settings, the audit entry also counts
    the recent studies whose band it changes.
    """
    current = active_version(session, model_version=model_version)
    if current is None:
        return None
    current.state = CalibrationState.RETIRED
    detail: dict[str, Any] = {"version": "bundle", "previous": current.version, "now": "bundle"}
    if bundle is not None and bands and settings is not None:
        try:
            found = preview(session, bundle, bands=bands, days=settings.preview_days, now=now)
        except (CalibrationError, ConfigurationError) as exc:
            # The way back is never blocked; the entry says why it has no counts.
            detail["preview"] = f"not counted: {exc}"
        else:
            counts = found.to_dict()
            detail["preview"] = {k: counts[k] for k in counts if k != "version"}
    audit.record(
        session,
        actor=user,
        action="calibration.deactivated",
        subject=f"v{current.version}",
        detail=detail,
    )
    return current.version


def versions(session: Session) -> list[CalibrationVersion]:
    """Every local calibration version, newest first."""
    return list(
        session.scalars(select(CalibrationVersion).order_by(CalibrationVersion.version.desc()))
    )


def active_version(session: Session, *, model_version: str) -> CalibrationVersion | None:
    return session.scalar(
        select(CalibrationVersion).where(
            CalibrationVersion.model_version == model_version,
            CalibrationVersion.state == CalibrationState.ACTIVE,
        )
    )
