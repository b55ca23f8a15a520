"""Reads: the URGENT confirmation, undo (window, who, audit) and the recent reads (real SQLite)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from daemon import audit, reads
from daemon.db.models import Feedback, FeedbackChange, FeedbackLabel, StudyRead
from daemon.db.session import SessionFactory, writing
from daemon.feedback import UnknownStudyError, labelled_cases, record_feedback
from daemon.serving import PriorityBands
from daemon.settings import PrioritySettings
from daemon.worklist import worklist
from tests.daemon_harness import record_scored

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=10)
BANDS = PriorityBands.resolve(PrioritySettings().bands, 0.5)
TOP = BANDS.cutoffs[0][0]


def _study(sessions: SessionFactory, uid: str, score: float, **kwargs: object) -> str:
    return record_scored(
        sessions, uid, logit=0.0, score=score, above=score >= 0.5, when=NOW, **kwargs
    )


def _open(sessions: SessionFactory) -> set[str]:
    with writing(sessions) as s:
        return {
            i.entry.study_instance_uid
            for i in worklist(s, BANDS, max_wait=timedelta(hours=2), now=NOW)
        }


def _mark(sessions: SessionFactory, uid: str, *, user: str = "dr.a", confirmed: bool) -> bool:
    with writing(sessions) as s:
        return reads.mark_read(
            s, study_instance_uid=uid, user=user, top_band=TOP, confirmed=confirmed, now=NOW
        )


def _undo(
    sessions: SessionFactory, uid: str, *, user: str, admin: bool = False, at: datetime = NOW
) -> reads.UndoneRead:
    with writing(sessions) as s:
        return reads.undo_read(
            s, study_instance_uid=uid, user=user, admin=admin, window=WINDOW, now=at
        )


def test_an_urgent_study_is_not_dismissed_without_a_confirmation(sessions: SessionFactory) -> None:
    urgent = _study(sessions, "1.1", 0.97)
    routine = _study(sessions, "1.2", 0.1)
    sender_high = _study(sessions, "1.3", 0.1, requested_priority="HIGH")
    for uid in (urgent, sender_high):
        with pytest.raises(reads.ConfirmationRequiredError, match=TOP):
            _mark(sessions, uid, confirmed=False)
    assert _open(sessions) == {urgent, routine, sender_high}
    assert _mark(sessions, routine, confirmed=False)  # a routine study needs none
    assert _mark(sessions, urgent, confirmed=True)
    assert not _mark(sessions, urgent, confirmed=False)  # already read: nothing to confirm
    assert _open(sessions) == {sender_high}
    with pytest.raises(UnknownStudyError):
        _mark(sessions, "never-received", confirmed=True)


def test_the_reader_undoes_an_explicit_read_within_the_window(sessions: SessionFactory) -> None:
    uid = _study(sessions, "1.1", 0.97)
    _mark(sessions, uid, confirmed=True)
    assert uid not in _open(sessions)
    undone = _undo(sessions, uid, user="dr.a", at=NOW + WINDOW)
    assert (undone.read_by, undone.via, undone.feedback_removed) == ("dr.a", "explicit", False)
    assert uid in _open(sessions)
    with writing(sessions) as s:
        entry = audit.entries(s, action_prefix="study.read_undone")[-1]
        assert (entry.actor, entry.subject) == ("dr.a", uid)
        detail = json.loads(entry.detail or "{}")
        assert detail["read_by"] == "dr.a" and detail["via"] == "explicit"
        assert detail["feedback_removed"] is None
    with pytest.raises(reads.NotReadError):
        _undo(sessions, uid, user="dr.a")


def test_only_the_reader_or_an_admin_may_undo_and_only_within_the_window(
    sessions: SessionFactory,
) -> None:
    uid = _study(sessions, "1.1", 0.2)
    _mark(sessions, uid, confirmed=False)
    with pytest.raises(reads.UndoNotAllowedError, match=r"dr\.a"):
        _undo(sessions, uid, user="dr.b")
    with pytest.raises(reads.UndoExpiredError, match="10 minutes"):
        _undo(sessions, uid, user="dr.a", at=NOW + WINDOW + timedelta(seconds=1))
    with pytest.raises(reads.UndoExpiredError):
        _undo(sessions, uid, user="admin", admin=True, at=NOW + timedelta(hours=1))
    with writing(sessions) as s:
        assert s.query(StudyRead).count() == 1  # every refusal left the read in place
        assert audit.entries(s, action_prefix="study.read_undone") == []
    undone = _undo(sessions, uid, user="admin", admin=True, at=NOW + timedelta(minutes=5))
    assert undone.read_by == "dr.a"
    assert uid in _open(sessions)


def test_undoing_a_read_made_by_feedback_removes_the_feedback_and_the_audit_keeps_it(
    sessions: SessionFactory,
) -> None:
    uid = _study(sessions, "1.1", 0.97)
    with writing(sessions) as s:
        record_feedback(
            s, study_instance_uid=uid, label=FeedbackLabel.NO_PNEUMONIA, user="dr.a", now=NOW
        )
        record_feedback(
            s,
            study_instance_uid=uid,
            label=FeedbackLabel.PNEUMONIA,
            user="dr.a",
            comment="RLL",
            now=NOW + timedelta(minutes=1),
        )
    undone = _undo(sessions, uid, user="dr.a", at=NOW + timedelta(minutes=2))
    assert undone.via == "feedback" and undone.feedback_removed
    assert uid in _open(sessions)
    with writing(sessions) as s:
        assert s.query(Feedback).count() == 0 and s.query(FeedbackChange).count() == 0
        assert labelled_cases(s) == []  # a finding given by mistake leaves the report
        entry = audit.entries(s, action_prefix="study.read_undone")[-1]
        removed = json.loads(entry.detail or "{}")["feedback_removed"]
        assert (removed["label"], removed["comment"], removed["given_by"]) == (
            "pneumonia",
            "RLL",
            "dr.a",
        )
        assert [c["new_label"] for c in removed["history"]] == ["no_pneumonia", "pneumonia"]
    # Given again, it is a new finding with a new history.
    with writing(sessions) as s:
        record_feedback(
            s, study_instance_uid=uid, label=FeedbackLabel.PNEUMONIA, user="dr.a", now=NOW
        )
        assert s.query(FeedbackChange).count() == 1


def test_undoing_an_explicit_read_keeps_a_finding_given_afterwards(
    sessions: SessionFactory,
) -> None:
    uid = _study(sessions, "1.1", 0.3)
    _mark(sessions, uid, confirmed=False)
    with writing(sessions) as s:
        record_feedback(
            s, study_instance_uid=uid, label=FeedbackLabel.NO_PNEUMONIA, user="dr.a", now=NOW
        )
    assert not _undo(sessions, uid, user="dr.a").feedback_removed
    with writing(sessions) as s:
        assert s.query(Feedback).count() == 1


def test_recent_reads_say_who_may_still_undo(sessions: SessionFactory) -> None:
    mine = _study(sessions, "1.1", 0.97)
    theirs = _study(sessions, "1.2", 0.2)
    old = _study(sessions, "1.3", 0.2)
    with writing(sessions) as s:
        for uid, user, at in (
            (old, "dr.a", NOW - timedelta(minutes=30)),
            (mine, "dr.a", NOW - timedelta(minutes=1)),
            (theirs, "dr.b", NOW),
        ):
            s.add(StudyRead(study_instance_uid=uid, read_by=user, read_at=at, via="explicit"))

    def listed(user: str, admin: bool) -> list[tuple[str, bool]]:
        with writing(sessions) as s:
            found = reads.recent_reads(
                s,
                user=user,
                admin=admin,
                window=WINDOW,
                since=NOW - timedelta(hours=24),
                now=NOW,
            )
        return [(r.study_instance_uid, r.undoable) for r in found]

    assert listed("dr.a", admin=False) == [(theirs, False), (mine, True), (old, False)]
    assert listed("admin", admin=True) == [(theirs, True), (mine, True), (old, False)]
    with writing(sessions) as s:
        found = reads.recent_reads(
            s, user="dr.a", admin=False, window=WINDOW, since=NOW - timedelta(minutes=5), now=NOW
        )
        assert [r.study_instance_uid for r in found] == [theirs, mine]
        assert found[1].band == TOP and found[1].score == pytest.approx(0.97)
        assert found[1].undo_until == NOW - timedelta(minutes=1) + WINDOW
