"""The worklist order, feedback with its history and audit, and the report (real SQLite)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DatabaseError

from chestaid.metrics import wilson_interval
from daemon import audit
from daemon.db.models import FeedbackChange, FeedbackLabel
from daemon.db.session import SessionFactory, writing
from daemon.feedback import (
    FeedbackError,
    LabelledCase,
    labelled_cases,
    parse_since,
    record_feedback,
    report,
    summarise,
)
from daemon.serving import PriorityBands
from daemon.settings import PrioritySettings
from daemon.worklist import StudyEntry, order_worklist, worklist
from tests.daemon_harness import record_scored

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
BANDS = PriorityBands.resolve(PrioritySettings().bands, 0.9)


def _entry(
    uid: str, score: float, minutes_ago: float, *, logit: float = 0.0, sender: str = "MEDIUM"
) -> StudyEntry:
    return StudyEntry(
        study_instance_uid=uid,
        score=score,
        logit=logit,
        threshold=0.9,
        band=BANDS.assign(score),
        result_id=1,
        arrived_at=NOW - timedelta(minutes=minutes_ago),
        requested_priority=sender,
        images=1,
        model_version="m",
        calibration_version=1,
    )


def _order(entries: list[StudyEntry]) -> list[str]:
    items = order_worklist(entries, BANDS, now=NOW, max_wait=timedelta(minutes=120))
    return [i.entry.study_instance_uid for i in items]


def test_worklist_orders_by_band_then_score_then_logit() -> None:
    entries = [
        _entry("routine-high", 0.8, 5),
        _entry("urgent", 0.95, 1),
        _entry("routine-low", 0.1, 10),
        _entry("urgent-saturated-a", 1.0, 3, logit=9.0),
        _entry("urgent-saturated-b", 1.0, 3, logit=12.0),
    ]
    assert _order(entries) == [
        "urgent-saturated-b",
        "urgent-saturated-a",
        "urgent",
        "routine-high",
        "routine-low",
    ]


def test_overdue_studies_go_first_oldest_first() -> None:
    entries = [_entry("urgent", 0.99, 1), _entry("old", 0.01, 300), _entry("older", 0.2, 400)]
    items = order_worklist(entries, BANDS, now=NOW, max_wait=timedelta(minutes=120))
    assert [i.entry.study_instance_uid for i in items] == ["older", "old", "urgent"]
    assert items[0].overdue and items[0].band == "URGENT"


def test_a_senders_high_priority_is_never_lowered() -> None:
    items = order_worklist(
        [_entry("ai-urgent", 0.95, 1), _entry("sender-high", 0.05, 1, sender="HIGH")],
        BANDS,
        now=NOW,
        max_wait=timedelta(minutes=120),
    )
    sender = next(i for i in items if i.entry.study_instance_uid == "sender-high")
    assert sender.band == "URGENT" and sender.raised_by_sender


def _scored(sessions: SessionFactory, uid: str, score: float, *, above: bool) -> str:
    return record_scored(
        sessions,
        uid,
        logit=0.0,
        score=score,
        above=above,
        model_version="m1",
        study_uid=f"study-{uid}",
    )


def test_feedback_marks_read_keeps_history_and_is_audited(sessions: SessionFactory) -> None:
    study = _scored(sessions, "1.1", 0.8, above=True)
    other = _scored(sessions, "1.2", 0.2, above=False)
    with writing(sessions) as s:
        assert {
            i.entry.study_instance_uid for i in worklist(s, BANDS, max_wait=timedelta(hours=2))
        } == {study, other}
        record_feedback(s, study_instance_uid=study, label=FeedbackLabel.NO_PNEUMONIA, user="dr.a")
    with writing(sessions) as s:
        assert [
            i.entry.study_instance_uid for i in worklist(s, BANDS, max_wait=timedelta(hours=2))
        ] == [other]
        record_feedback(
            s, study_instance_uid=study, label=FeedbackLabel.PNEUMONIA, user="dr.b", comment="RLL"
        )
    with writing(sessions) as s:
        changes = s.scalars(select(FeedbackChange).order_by(FeedbackChange.id)).all()
        assert [(c.changed_by, c.old_label, c.new_label) for c in changes] == [
            ("dr.a", None, "no_pneumonia"),
            ("dr.b", "no_pneumonia", "pneumonia"),
        ]
        actions = [(e.actor, e.action) for e in audit.entries(s)]
        assert actions == [
            ("dr.a", "feedback.given"),
            ("dr.a", "study.read"),
            ("dr.b", "feedback.changed"),
        ]
        cases = labelled_cases(s)
        assert len(cases) == 1 and cases[0].label == FeedbackLabel.PNEUMONIA
    with pytest.raises(FeedbackError, match="no scored study"), writing(sessions) as s:
        record_feedback(s, study_instance_uid="nope", label=FeedbackLabel.PNEUMONIA, user="dr.a")


def test_the_audit_log_refuses_changes(sessions: SessionFactory) -> None:
    with writing(sessions) as s:
        audit.record(s, actor="admin", action="threshold.changed", detail={"old": 0.9, "new": 0.8})
    for statement in ("UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"):
        with pytest.raises(DatabaseError, match="append-only"), writing(sessions) as s:
            s.execute(text(statement))
    with writing(sessions) as s:
        assert [e.actor for e in audit.entries(s)] == ["admin"]


def _case(label: FeedbackLabel, above: bool, score: float, version: int = 1) -> LabelledCase:
    return LabelledCase(
        study_instance_uid="s",
        label=label,
        score=score,
        logit=0.0,
        threshold=0.5,
        above_threshold=above,
        model_version="m",
        calibration_version=version,
        given_by="dr",
        given_at=NOW,
        comment=None,
    )


def test_the_report_counts_rates_intervals_and_groups() -> None:
    pos, neg, ind = FeedbackLabel.PNEUMONIA, FeedbackLabel.NO_PNEUMONIA, FeedbackLabel.INDETERMINATE
    cases = (
        [_case(pos, True, 0.9)] * 8
        + [_case(pos, False, 0.3)] * 2  # TP 8, FN 2
        + [_case(neg, True, 0.7)] * 3
        + [_case(neg, False, 0.1, version=2)] * 7  # FP 3, TN 7
        + [_case(ind, True, 0.6)]
    )
    overall = summarise(cases)
    c = overall.confusion
    assert (c.tp, c.fn, c.fp, c.tn) == (8, 2, 3, 7)
    assert overall.feedback == 21 and overall.indeterminate == 1 and overall.labelled == 20
    assert overall.intervals["sensitivity"] == wilson_interval(8, 10)
    assert overall.intervals["ppv"] == wilson_interval(8, 11)
    assert 0.0 < overall.ece < 1.0
    groups = report(cases)
    assert [(g.model_version, g.calibration_version, g.feedback) for g in groups] == [
        ("all", None, 21),
        ("m", 1, 14),
        ("m", 2, 7),
    ]
    as_dict = groups[2].to_dict()
    assert as_dict["sensitivity"]["value"] is None  # no positives in that group: undefined
    assert as_dict["specificity"]["value"] == 1.0


def test_since_parses_spans_and_dates() -> None:
    assert parse_since("30d", now=NOW) == NOW - timedelta(days=30)
    assert parse_since("90m", now=NOW) == NOW - timedelta(minutes=90)
    assert parse_since("2026-11-01", now=NOW) == datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(FeedbackError):
        parse_since("last week", now=NOW)


def test_csv_cells_a_spreadsheet_would_run_are_defused() -> None:
    from daemon.feedback import csv_text

    text = csv_text(
        [
            {"comment": '=HYPERLINK("http://x")', "score": 0.5},
            {"comment": "-2+3", "score": -0.0},
            {"comment": "fine, RLL", "score": 1.0},
        ]
    )
    lines = text.splitlines()
    assert lines[0] == "comment,score"
    assert lines[1].startswith("\"'=HYPERLINK(")
    assert lines[2] == "'-2+3,-0.0"  # numbers are left as they are
    assert lines[3] == '"fine, RLL",1.0'
