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
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chestaid.calibration import select_local_calibration
from chestaid.errors import CalibrationError
from chestaid.metrics import confusion_at, ece, wilson_interval
from chestaid.threshold import RULE, governed_threshold
from daemon import audit
from daemon.db.models import CalibrationState, CalibrationVersion, utcnow
from daemon.errors import DaemonError
from daemon.feedback import TRUTH, labelled_cases, summarise

logger = logging.getLogger(__name__)


class RecalibrationError(DaemonError):
    """A calibration cannot be fitted or activated (too few cases, no such version)."""


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
    min_cases: int,
    user: str,
) -> CalibrationVersion:
    """Fit a pending calibration version on this site's labelled studies and store it.

    In one unit of work; the web and the CLI fit in a reading unit (:func:`fit`) and
    store in a short writing one (:func:`store`), so the cross-validation and the
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
    )
    return store(session, fitted, user=user)


def fit(
    session: Session,
    *,
    model_version: str,
    bundle_calibration_version: int,
    target_sensitivity: float,
    min_cases: int,
) -> Fitted:
    """Fit a calibration on this site's labelled studies (reads only).

    Raises:
        RecalibrationError: fewer than ``min_cases`` labelled studies, or too few of
            one class to cross-validate.
    """
    cases = [
        c
        for c in labelled_cases(session)
        if c.model_version == model_version and c.assessable and TRUTH[c.label] is not None
    ]
    if len(cases) < min_cases:
        raise RecalibrationError(
            f"{len(cases)} labelled studies for model {model_version}; {min_cases} are needed"
        )
    logits = np.array([c.logit for c in cases])
    labels = np.array([TRUTH[c.label] for c in cases], dtype=int)
    before = np.array([c.score for c in cases])
    try:
        local = select_local_calibration(logits, labels)
        governed = governed_threshold(
            local.calibrator.predict_proba(logits), labels, target_sensitivity
        )
    except CalibrationError as exc:
        raise RecalibrationError(str(exc)) from exc
    # Out-of-fold scores at the new threshold: estimates for studies not yet seen.
    estimate = confusion_at(local.out_of_fold, labels, governed.threshold)
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
        "positives": int(labels.sum()),
        "negatives": int((1 - labels).sum()),
    }
    return Fitted(
        model_version=model_version,
        bundle_calibration_version=bundle_calibration_version,
        method=local.chosen,
        calibrator=json.dumps(local.calibrator.to_dict()),
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


def activate(session: Session, *, version: int, user: str) -> CalibrationVersion:
    """Make a version the one in use (the previous one is retired).

    Raises:
        RecalibrationError: no such version.
    """
    row = session.scalar(select(CalibrationVersion).where(CalibrationVersion.version == version))
    if row is None:
        raise RecalibrationError(f"no calibration version {version}")
    previous = active_version(session, model_version=row.model_version)
    if previous is not None and previous.id != row.id:
        previous.state = CalibrationState.RETIRED
    row.state = CalibrationState.ACTIVE
    row.activated_by, row.activated_at = user, utcnow()
    audit.record(
        session,
        actor=user,
        action="calibration.activated",
        subject=f"v{version}",
        detail={
            "previous": previous.version if previous is not None else "bundle",
            "threshold": row.threshold,
            "previous_threshold": previous.threshold if previous is not None else None,
        },
    )
    return row


def deactivate(session: Session, *, model_version: str, user: str) -> int | None:
    """Go back to the bundle's own calibration; returns the version retired, if any."""
    current = active_version(session, model_version=model_version)
    if current is None:
        return None
    current.state = CalibrationState.RETIRED
    audit.record(
        session,
        actor=user,
        action="calibration.deactivated",
        subject=f"v{current.version}",
        detail={"now": "bundle"},
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
