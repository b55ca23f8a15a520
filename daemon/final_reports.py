"""The radiologist's final report, received from the RIS, closes the study and labels it.

A final (or corrected) report is matched to a study ChestAid received, by Study
Instance UID when the message carries one, else by accession number. The study leaves
the worklist (read, via "report"), and a label is derived from the report's text
(:func:`chestaid.report_labels.label_report`: pneumonia, no pneumonia or
indeterminate, with the phrase that decided it). The label is kept as feedback whose
source is "report", beside the evidence phrase, and counts in the FP/FN report,
monitoring and recalibration like a reader's click, with its source shown.

A reader's own label is never replaced by one read from a report: a person's
explicit judgement on this study beats a text rule's. The report's label is then
recorded in the audit trail only. A later report (a correction) replaces an earlier
report's label.

Reports of studies ChestAid never received (most of a RIS's feed: CT, MR, other
wards) are acknowledged and ignored; so are preliminary ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from chestaid.report_labels import ReportLabel, label_report
from daemon import audit
from daemon.db.models import (
    Feedback,
    FeedbackLabel,
    FeedbackSource,
    Instance,
    Study,
    utcnow,
)
from daemon.feedback import UnknownStudyError, mark_read, record_feedback
from daemon.hl7.reports import FinalReport

logger = logging.getLogger(__name__)

# What became of a report.
LABELLED = "labelled"  # the study is closed and labelled from the report
KEPT_READERS_LABEL = "kept-readers-label"  # closed; a reader's own label stays
CLOSED_UNSCORED = "closed-unscored"  # closed; the study has no scored image to label
UNKNOWN_STUDY = "unknown-study"  # not a study ChestAid received
NOT_FINAL = "not-final"  # a preliminary report: nothing done


@dataclass(frozen=True)
class TakenReport:
    """What :func:`take_final_report` did."""

    outcome: str
    study_instance_uid: str | None = None
    label: FeedbackLabel | None = None


def find_study_uid(session: Session, report: FinalReport) -> str | None:
    """The received study the report is about: by its UID, else by accession number."""
    if report.study_instance_uid:
        found = session.scalar(
            select(Instance.study_instance_uid)
            .where(Instance.study_instance_uid == report.study_instance_uid)
            .limit(1)
        )
        if found is not None:
            return str(found)
    if report.accession_number:
        matches = session.scalars(
            select(Study.study_instance_uid)
            .where(Study.accession_number == report.accession_number)
            .limit(2)
        ).all()
        if len(matches) == 1:
            return str(matches[0])
        if len(matches) > 1:
            # One accession number on two studies: which one the report reads is unknown.
            logger.warning("a report's accession number names several studies; not matched")
    return None


def take_final_report(
    session: Session,
    report: FinalReport,
    *,
    derived: ReportLabel | None = None,
    labeller: Callable[[str], ReportLabel] = label_report,
    now: datetime | None = None,
) -> TakenReport:
    """Close and label the study a final report is about (audited; in the caller's unit).

    Args:
        report: what the message said.
        derived: the text's label, when the caller made it before opening the
            transaction (so no write lock waits on the labeller); else made here.
        labeller: the text's label and its evidence.

    Returns:
        What was done (see the module's outcomes).
    """
    if not report.labels:
        return TakenReport(NOT_FINAL)
    study_uid = find_study_uid(session, report)
    if study_uid is None:
        return TakenReport(UNKNOWN_STUDY)
    now = now or utcnow()
    actor = f"report:{report.sending_application or 'unnamed'}"[:64]
    derived = derived or labeller(report.text)
    label = FeedbackLabel(derived.label.value)
    existing = session.scalar(select(Feedback).where(Feedback.study_instance_uid == study_uid))
    if existing is not None and existing.source == FeedbackSource.READER:
        mark_read(session, study_instance_uid=study_uid, user=actor, via="report", now=now)
        audit.record(
            session,
            actor=actor,
            action="report.label.not_applied",
            subject=study_uid,
            detail={
                "report_label": label.value,
                "readers_label": existing.label.value,
                "why": "a reader's own label is kept",
            },
            now=now,
        )
        return TakenReport(KEPT_READERS_LABEL, study_uid, existing.label)
    try:
        record_feedback(
            session,
            study_instance_uid=study_uid,
            label=label,
            user=actor,
            source=FeedbackSource.REPORT,
            evidence=derived.evidence,
            now=now,
        )
    except UnknownStudyError:
        # Received but never scored (a failed or refused image): closed, not labelled.
        mark_read(session, study_instance_uid=study_uid, user=actor, via="report", now=now)
        return TakenReport(CLOSED_UNSCORED, study_uid)
    return TakenReport(LABELLED, study_uid, label)
