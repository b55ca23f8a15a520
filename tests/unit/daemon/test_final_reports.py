"""Final reports from the RIS: matched to a received study, closing it and labelling it."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select, update

from daemon.db.models import AuditEntry, Feedback, FeedbackLabel, FeedbackSource, Study, StudyRead
from daemon.db.session import SessionFactory, writing
from daemon.feedback import labelled_cases, record_feedback, report
from daemon.final_reports import (
    CLOSED_UNSCORED,
    KEPT_READERS_LABEL,
    LABELLED,
    NOT_FINAL,
    UNKNOWN_STUDY,
    TakenReport,
    take_final_report,
)
from daemon.hl7.reports import FinalReport
from tests.daemon_harness import record_received, record_scored

POSITIVE = "FINDINGS: Dense consolidation in the right lower lobe.\nIMPRESSION: Right lower lobe pneumonia."
NEGATIVE = "IMPRESSION: No evidence of pneumonia. Lungs are clear."


def _report(
    text: str, *, accession: str = "ACC-1", uid: str = "", status: str = "F"
) -> FinalReport:
    return FinalReport(
        control_id="MSG1",
        sending_application="RIS",
        sending_facility="HOSP",
        accession_number=accession,
        study_instance_uid=uid,
        status=status,
        text=text,
    )


def _scored_study(sessions: SessionFactory, uid: str, accession: str | None) -> str:
    study = record_scored(sessions, uid, logit=1.0, score=0.8, above=True)
    with writing(sessions) as s:
        s.execute(
            update(Study)
            .where(Study.study_instance_uid == study)
            .values(accession_number=accession)
        )
    return study


def _take(sessions: SessionFactory, report_: FinalReport) -> TakenReport:
    with writing(sessions) as s:
        return take_final_report(s, report_)


def test_a_final_report_labels_its_study_with_the_evidence_and_closes_it(
    sessions: SessionFactory,
) -> None:
    study = _scored_study(sessions, "1.1", "ACC-1")
    taken = _take(sessions, _report(POSITIVE))
    assert (taken.outcome, taken.study_instance_uid, taken.label) == (
        LABELLED,
        study,
        FeedbackLabel.PNEUMONIA,
    )
    with sessions() as s:
        feedback = s.scalars(select(Feedback)).one()
        read = s.scalars(select(StudyRead)).one()
        closed = s.scalars(select(Study).where(Study.study_instance_uid == study)).one()
    assert feedback.source == FeedbackSource.REPORT
    assert feedback.evidence is not None and feedback.evidence in POSITIVE
    assert "pneumonia" in feedback.evidence.lower()
    assert feedback.given_by == "report:RIS"
    assert (read.via, read.read_by) == ("report", "report:RIS")
    assert closed.closed_at is not None
    with sessions() as s:
        [case] = labelled_cases(s)
    assert case.source == FeedbackSource.REPORT and case.label == FeedbackLabel.PNEUMONIA
    assert case.to_dict()["evidence"] == feedback.evidence


def test_the_study_uid_in_the_message_wins_over_the_accession_number(
    sessions: SessionFactory,
) -> None:
    first = _scored_study(sessions, "2.1", "ACC-2")
    second = _scored_study(sessions, "2.2", "ACC-OTHER")
    taken = _take(sessions, _report(NEGATIVE, accession="ACC-2", uid=second))
    assert taken.study_instance_uid == second != first


def test_an_accession_number_on_two_studies_matches_neither(sessions: SessionFactory) -> None:
    _scored_study(sessions, "3.1", "ACC-3")
    _scored_study(sessions, "3.2", "ACC-3")
    assert _take(sessions, _report(NEGATIVE, accession="ACC-3")).outcome == UNKNOWN_STUDY
    with sessions() as s:
        assert s.scalars(select(Feedback)).all() == []


def test_unknown_studies_and_preliminary_reports_change_nothing(sessions: SessionFactory) -> None:
    _scored_study(sessions, "4.1", "ACC-4")
    assert _take(sessions, _report(POSITIVE, accession="NOT-HERE")).outcome == UNKNOWN_STUDY
    assert _take(sessions, _report(POSITIVE, accession="ACC-4", status="P")).outcome == NOT_FINAL
    with sessions() as s:
        assert s.scalars(select(Feedback)).all() == []
        assert s.scalars(select(StudyRead)).all() == []


def test_a_readers_own_label_is_kept_and_the_reports_is_audited(sessions: SessionFactory) -> None:
    study = _scored_study(sessions, "5.1", "ACC-5")
    with writing(sessions) as s:
        record_feedback(s, study_instance_uid=study, label=FeedbackLabel.NO_PNEUMONIA, user="dr")
    taken = _take(sessions, _report(POSITIVE, accession="ACC-5"))
    assert taken.outcome == KEPT_READERS_LABEL
    with sessions() as s:
        feedback = s.scalars(select(Feedback)).one()
        entry = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "report.label.not_applied")
        ).one()
    assert (feedback.label, feedback.source, feedback.given_by) == (
        FeedbackLabel.NO_PNEUMONIA,
        FeedbackSource.READER,
        "dr",
    )
    assert json.loads(entry.detail or "{}")["report_label"] == "pneumonia"


def test_a_corrected_report_replaces_the_earlier_reports_label(sessions: SessionFactory) -> None:
    _scored_study(sessions, "6.1", "ACC-6")
    _take(sessions, _report(POSITIVE, accession="ACC-6"))
    taken = _take(sessions, _report(NEGATIVE, accession="ACC-6", status="C"))
    assert (taken.outcome, taken.label) == (LABELLED, FeedbackLabel.NO_PNEUMONIA)
    with sessions() as s:
        feedback = s.scalars(select(Feedback)).one()
        assert len(feedback.history) == 2
    assert feedback.source == FeedbackSource.REPORT and feedback.label == FeedbackLabel.NO_PNEUMONIA


def test_a_received_study_never_scored_is_closed_without_a_label(sessions: SessionFactory) -> None:
    record_received(sessions, "7.1", spool_name="x/7.1.dcm")  # study "1.2.3", not scored
    with writing(sessions) as s:
        s.execute(
            update(Study)
            .where(Study.study_instance_uid == "1.2.3")
            .values(accession_number="ACC-7")
        )
    assert _take(sessions, _report(POSITIVE, accession="ACC-7")).outcome == CLOSED_UNSCORED
    with sessions() as s:
        assert s.scalars(select(Feedback)).all() == []
        assert s.scalars(select(StudyRead)).one().via == "report"


def test_the_report_counts_labels_by_source(sessions: SessionFactory) -> None:
    clicked = _scored_study(sessions, "8.1", "ACC-8")
    _scored_study(sessions, "8.2", "ACC-9")
    with writing(sessions) as s:
        record_feedback(s, study_instance_uid=clicked, label=FeedbackLabel.PNEUMONIA, user="dr")
    _take(sessions, _report(NEGATIVE, accession="ACC-9"))
    with sessions() as s:
        overall = report(labelled_cases(s))[0]
    assert overall.by_source == {"reader": 1, "report": 1}
    assert overall.to_dict()["by_source"] == {"reader": 1, "report": 1}
    assert (overall.confusion.tp, overall.confusion.fp) == (1, 1)  # both above the threshold


@pytest.mark.parametrize("status", ["F", "C"])
def test_final_and_corrected_reports_label(sessions: SessionFactory, status: str) -> None:
    _scored_study(sessions, "9.1", "ACC-10")
    assert _take(sessions, _report(NEGATIVE, accession="ACC-10", status=status)).outcome == LABELLED
