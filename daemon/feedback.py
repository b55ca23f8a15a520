"""Radiologists' feedback, reads, and the report admins query.

Feedback is per study: pneumonia confirmed, no pneumonia, or indeterminate, with an
optional comment. It is linked to the study's prediction (its highest-scored image),
and so to the model and calibration versions that made it. Editing keeps every old
value (who, when, old, new); every change is also in the audit log, in the same
transaction. Giving feedback marks the study read.

The report compares labels with predictions at the threshold that was in force for
each prediction (the governed threshold of its calibration version): counts, the
confusion matrix, sensitivity, specificity, PPV and NPV with Wilson 95% intervals, and
the ECE of the calibrated scores on the labelled cases, overall and per model and
calibration version. Indeterminate studies are counted but not scored. Studies whose
prediction was "not assessable" (ChestAid gave no call: the image was not a judgeable
frontal chest radiograph) take feedback like any other, but are counted separately
and never enter the confusion matrix, the rates or the ECE: their score means nothing.

A label has a source: a reader's own click here, or the radiologist's final report
received from the RIS (:mod:`daemon.final_reports`), whose label is derived from the
report's text and kept with the phrase that decided it. Both count alike in the
report, monitoring and recalibration; the report says how many came from each.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from chestaid.metrics import ConfusionMatrix, ece, wilson_interval
from daemon import audit, exports
from daemon.db import studies
from daemon.db.models import (
    Feedback,
    FeedbackChange,
    FeedbackLabel,
    FeedbackSource,
    Instance,
    Result,
    Study,
    StudyRead,
    utcnow,
)
from daemon.errors import DaemonError
from daemon.worklist import study_entries

TRUTH = {
    FeedbackLabel.PNEUMONIA: 1,
    FeedbackLabel.NO_PNEUMONIA: 0,
    FeedbackLabel.INDETERMINATE: None,
}
MAX_COMMENT = 2000


class FeedbackError(DaemonError):
    """Feedback that cannot be recorded (no such scored study, a bad value)."""


class UnknownStudyError(FeedbackError):
    """No study of that UID was received (or none of its images was scored)."""


def csv_text(rows: Sequence[dict[str, Any]]) -> str:
    """Feedback rows as CSV for spreadsheets (formula-like cells neutralised, see
    :func:`daemon.exports.csv_text`)."""
    return exports.csv_text(rows, empty_fields=("study_instance_uid", "label", "score"))


MAX_SINCE_DAYS = 36_600  # about a century: older than any record this node keeps


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """A start time from ``30d``, ``12h``, ``90m`` or an ISO date/time (UTC when naive).

    Raises:
        FeedbackError: none of these, or a span beyond :data:`MAX_SINCE_DAYS`.
    """
    now = now or utcnow()
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dhm])\s*", text)
    if match:
        amount, unit = float(match.group(1)), match.group(2)
        per_day = {"d": 1, "h": 24, "m": 24 * 60}[unit]
        # Bounded before the subtraction, which overflows a date far short of a float's range.
        if amount > MAX_SINCE_DAYS * per_day:
            raise FeedbackError(
                f"since {text.strip()!r}: a span may reach at most {MAX_SINCE_DAYS} days back"
            )
        units = {"d": "days", "h": "hours", "m": "minutes"}
        return now - timedelta(**{units[unit]: amount})
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise FeedbackError(f"--since {text!r}: use 30d, 12h, 90m or an ISO date") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=now.tzinfo)


def mark_read(
    session: Session,
    *,
    study_instance_uid: str,
    user: str,
    via: str = "explicit",
    now: datetime | None = None,
) -> bool:
    """Mark a study read (it leaves the worklist); False when it already was.

    Raises:
        UnknownStudyError: no image of the study was received (a read recorded ahead
            of the study would keep it off the worklist when it arrives).
    """
    received = session.scalar(
        select(Instance.id).where(Instance.study_instance_uid == study_instance_uid).limit(1)
    )
    if received is None:
        raise UnknownStudyError(f"no study {study_instance_uid}")
    exists = session.scalar(
        select(StudyRead.id).where(StudyRead.study_instance_uid == study_instance_uid)
    )
    if exists is not None:
        return False
    now = now or utcnow()
    session.add(
        StudyRead(study_instance_uid=study_instance_uid, read_by=user, read_at=now, via=via)
    )
    studies.close_study(
        session, study_instance_uid=study_instance_uid, reason="read", by=user, now=now
    )
    audit.record(
        session,
        actor=user,
        action="study.read",
        subject=study_instance_uid,
        detail={"via": via},
        now=now,
    )
    return True


def record_feedback(
    session: Session,
    *,
    study_instance_uid: str,
    label: FeedbackLabel,
    user: str,
    comment: str | None = None,
    source: FeedbackSource = FeedbackSource.READER,
    evidence: str | None = None,
    now: datetime | None = None,
) -> Feedback:
    """Give or change the feedback on a scored study; marks the study read.

    Args:
        source: a reader's own label, or one derived from the final report.
        evidence: for a label from a report, the phrase that decided it.

    Raises:
        FeedbackError: the study has no scored image, or the comment is too long.
    """
    if comment is not None and len(comment) > MAX_COMMENT:
        raise FeedbackError(f"the comment is longer than {MAX_COMMENT} characters")
    if not user.strip():
        raise FeedbackError("feedback needs the user who gives it")
    now = now or utcnow()
    feedback = session.scalar(
        select(Feedback).where(Feedback.study_instance_uid == study_instance_uid)
    )
    if feedback is None:
        studies = study_entries(session, open_only=False, study_instance_uid=study_instance_uid)
        if not studies:
            raise UnknownStudyError(f"no scored study {study_instance_uid}")
        feedback = Feedback(
            study_instance_uid=study_instance_uid,
            result_id=studies[0].result_id,
            label=label,
            comment=comment,
            given_by=user,
            source=source,
            evidence=evidence,
            created_at=now,
            updated_at=now,
        )
        session.add(feedback)
        session.flush()
        old_label, old_comment, action = None, None, "feedback.given"
    else:
        if (feedback.label, feedback.comment, feedback.source, feedback.evidence) == (
            label,
            comment,
            source,
            evidence,
        ):
            return feedback
        old_label, old_comment, action = feedback.label.value, feedback.comment, "feedback.changed"
        feedback.label, feedback.comment, feedback.updated_at = label, comment, now
        feedback.given_by, feedback.source, feedback.evidence = user, source, evidence
    session.add(
        FeedbackChange(
            feedback_id=feedback.id,
            changed_by=user,
            changed_at=now,
            old_label=old_label,
            new_label=label.value,
            old_comment=old_comment,
            new_comment=comment,
        )
    )
    audit.record(
        session,
        actor=user,
        action=action,
        subject=study_instance_uid,
        detail={
            "old": old_label,
            "new": label.value,
            "comment_changed": old_comment != comment,
            "source": source.value,
        },
        now=now,
    )
    via = "report" if source == FeedbackSource.REPORT else "feedback"
    mark_read(session, study_instance_uid=study_instance_uid, user=user, via=via, now=now)
    session.flush()
    return feedback


@dataclass(frozen=True)
class LabelledCase:
    """One study's feedback beside its prediction."""

    study_instance_uid: str
    label: FeedbackLabel
    score: float
    logit: float
    threshold: float
    above_threshold: bool
    model_version: str
    calibration_version: int
    given_by: str
    given_at: datetime
    comment: str | None
    # False when the study's prediction was "not assessable": its score is for audit only.
    assessable: bool = True
    not_assessable_reason: str | None = None
    source: FeedbackSource = FeedbackSource.READER  # a reader's click, or the final report
    evidence: str | None = None  # the report's phrase that decided a label from a report
    # The prediction was made in shadow mode (nothing was sent): see daemon.shadow.
    shadow: bool = False

    def to_dict(self) -> dict[str, Any]:
        """As plain values (for CSV and JSON)."""
        return {
            "study_instance_uid": self.study_instance_uid,
            "label": self.label.value,
            "assessable": self.assessable,
            "not_assessable_reason": self.not_assessable_reason or "",
            "score": self.score,
            "logit": self.logit,
            "threshold": self.threshold,
            "above_threshold": self.above_threshold,
            "model_version": self.model_version,
            "calibration_version": self.calibration_version,
            "given_by": self.given_by,
            "given_at": self.given_at.isoformat(timespec="seconds"),
            "comment": self.comment or "",
            "source": self.source.value,
            "evidence": self.evidence or "",
            "shadow": self.shadow,
        }


# The identifying fields an identified export adds (kept out of every other export).
IDENTIFIED_COLUMNS = ("patient_name", "patient_id", "accession_number", "study_date")


def export_rows(
    session: Session,
    cases: Sequence[LabelledCase],
    *,
    identified: bool = False,
    actor: str | None = None,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """The export's rows: without identifying fields, or, when an admin asks for an
    identified export, with them (empty where retention blanked them), audited.

    Raises:
        FeedbackError: an identified export without the actor who asks for it.
    """
    rows = [case.to_dict() for case in cases]
    if not identified:
        return rows
    if not (actor or "").strip():
        raise FeedbackError("an identified export needs the user who asks for it (audited)")
    uids = [case.study_instance_uid for case in cases]
    found: dict[str, Study] = {}
    for start in range(0, len(uids), 500):
        chunk = uids[start : start + 500]
        found.update(
            (study.study_instance_uid, study)
            for study in session.scalars(select(Study).where(Study.study_instance_uid.in_(chunk)))
        )
    for row in rows:
        study = found.get(row["study_instance_uid"])
        for name in IDENTIFIED_COLUMNS:
            row[name] = (getattr(study, name) if study is not None else None) or ""
    audit.record(
        session,
        actor=actor or "",
        action="feedback.exported.identified",
        detail={"rows": len(rows), "columns": list(IDENTIFIED_COLUMNS)},
        now=now,
    )
    return rows


def labelled_cases(session: Session, *, since: datetime | None = None) -> list[LabelledCase]:
    """Every feedback (last given ``since`` or later) with its prediction."""
    query = select(Feedback, Result).join(Result, Result.id == Feedback.result_id)
    if since is not None:
        query = query.where(Feedback.updated_at >= since)
    return [
        LabelledCase(
            study_instance_uid=f.study_instance_uid,
            label=f.label,
            score=r.score,
            logit=r.logit,
            threshold=r.threshold,
            above_threshold=r.above_threshold,
            model_version=r.model_version,
            calibration_version=r.calibration_version,
            given_by=f.given_by,
            given_at=f.updated_at,
            comment=f.comment,
            assessable=r.assessable,
            not_assessable_reason=r.not_assessable_reason,
            source=f.source,
            evidence=f.evidence,
            shadow=r.shadow,
        )
        for f, r in session.execute(query.order_by(Feedback.id)).all()
    ]


@dataclass(frozen=True)
class GroupReport:
    """The figures of one group of cases (all, or one model and calibration version)."""

    model_version: str
    calibration_version: int | None
    feedback: int
    indeterminate: int
    confusion: ConfusionMatrix
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    ece: float = float("nan")
    not_assessable: int = 0  # feedback on studies ChestAid could not assess: not scored
    # The feedback by where its label came from (every source named, 0 when none).
    by_source: dict[str, int] = field(default_factory=dict)

    @property
    def labelled(self) -> int:
        """Cases with a definite label."""
        c = self.confusion
        return c.tp + c.fp + c.tn + c.fn

    def to_dict(self) -> dict[str, Any]:
        """As plain values; undefined rates are None."""
        rates = self.confusion.to_dict()

        def clean(value: float) -> float | None:
            return None if math.isnan(value) else round(value, 6)

        return {
            "model_version": self.model_version,
            "calibration_version": self.calibration_version,
            "feedback": self.feedback,
            "labelled": self.labelled,
            "indeterminate": self.indeterminate,
            "not_assessable": self.not_assessable,
            "by_source": dict(self.by_source),
            **{k: rates[k] for k in ("tp", "fp", "tn", "fn")},
            **{
                name: {
                    "value": clean(float(rates[name])),
                    "ci95": [clean(lo), clean(hi)],
                }
                for name, (lo, hi) in self.intervals.items()
            },
            "ece": clean(self.ece),
        }


def summarise(
    cases: Sequence[LabelledCase],
    *,
    model_version: str = "all",
    calibration_version: int | None = None,
) -> GroupReport:
    """Counts, confusion at each prediction's threshold, rates with Wilson intervals, ECE.

    Cases whose prediction was not assessable are counted (``not_assessable``) and left
    out of everything else; ``feedback`` = labelled + indeterminate + not assessable.
    """
    judged = [c for c in cases if c.assessable]
    definite = [c for c in judged if TRUTH[c.label] is not None]
    truth = [TRUTH[c.label] == 1 for c in definite]
    called = [c.above_threshold for c in definite]
    confusion = ConfusionMatrix(
        tp=sum(t and p for t, p in zip(truth, called, strict=True)),
        fp=sum((not t) and p for t, p in zip(truth, called, strict=True)),
        tn=sum((not t) and (not p) for t, p in zip(truth, called, strict=True)),
        fn=sum(t and (not p) for t, p in zip(truth, called, strict=True)),
    )
    c = confusion
    intervals = {
        "sensitivity": wilson_interval(c.tp, c.tp + c.fn),
        "specificity": wilson_interval(c.tn, c.tn + c.fp),
        "ppv": wilson_interval(c.tp, c.tp + c.fp),
        "npv": wilson_interval(c.tn, c.tn + c.fn),
    }
    calibration_error = (
        ece(np.array([x.score for x in definite]), np.array(truth, dtype=int), n_bins=10)
        if definite
        else float("nan")
    )
    return GroupReport(
        model_version=model_version,
        calibration_version=calibration_version,
        feedback=len(cases),
        indeterminate=len(judged) - len(definite),
        confusion=confusion,
        intervals=intervals,
        ece=calibration_error,
        not_assessable=len(cases) - len(judged),
        by_source={
            source.value: sum(c.source == source for c in cases) for source in FeedbackSource
        },
    )


def report(cases: Sequence[LabelledCase]) -> list[GroupReport]:
    """The overall figures, then one group per model and calibration version."""
    groups: dict[tuple[str, int], list[LabelledCase]] = {}
    for case in cases:
        groups.setdefault((case.model_version, case.calibration_version), []).append(case)
    return [summarise(cases)] + [
        summarise(members, model_version=model, calibration_version=version)
        for (model, version), members in sorted(groups.items())
    ]
