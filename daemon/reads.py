"""Reads: dismissing a study without feedback, undoing a read, and the recent reads.

A read takes a study off the worklist, so a misclick must not lose it:

- dismissing a study without feedback when it stands in the top band (its score's band
  is the top one, or its sender asked for HIGH priority) needs an explicit
  confirmation, checked here and not only in the browser;
- any read can be undone for a while (``worklist.undo_minutes``) by the person who read
  it, or by an admin; the study comes back on the worklist. Undoing an explicit read
  removes the read alone (a finding given afterwards stays). Undoing a read made by
  giving feedback removes the read and that feedback with its history, since the
  feedback is what took the study off the list and a finding given by mistake must not
  reach the report; the audit entry keeps everything removed;
- the recent reads, everyone's, are listed with whether each may still be undone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon import audit, feedback
from daemon.closing import CLOSED_READ
from daemon.db import studies
from daemon.db.models import Feedback, FeedbackLabel, StudyRead, utcnow
from daemon.errors import DaemonError
from daemon.worklist import study_entries

EXPLICIT = "explicit"
VIA_FEEDBACK = "feedback"


class ReadError(DaemonError):
    """A read that cannot be recorded or undone."""


class ConfirmationRequiredError(ReadError):
    """The study stands in the top band: dismissing it without feedback needs a confirmation."""


class NotReadError(ReadError):
    """The study is not marked read (never was, or its read was already undone)."""


class UndoNotAllowedError(ReadError):
    """Someone else read the study, and only they or an admin may undo the read."""


class UndoExpiredError(ReadError):
    """The read is older than the undo window."""


RECENT_LIMIT = 200  # reads the recently-read list looks at, newest first


def urgent(session: Session, *, study_instance_uid: str, top_band: str) -> bool:
    """Whether the study stands in the top band: by its score's band or its sender's HIGH."""
    for entry in study_entries(session, open_only=False, study_instance_uid=study_instance_uid):
        if entry.band == top_band or entry.requested_priority == "HIGH":
            return True
    return False


def mark_read(
    session: Session,
    *,
    study_instance_uid: str,
    user: str,
    top_band: str,
    confirmed: bool,
    now: datetime | None = None,
) -> bool:
    """Mark a study read without feedback; False when it already was.

    Raises:
        ConfirmationRequiredError: the study stands in the top band and ``confirmed`` is false.
        feedback.UnknownStudyError: no image of the study was received.
    """
    if _read(session, study_instance_uid) is not None:
        return False
    if not confirmed and urgent(session, study_instance_uid=study_instance_uid, top_band=top_band):
        raise ConfirmationRequiredError(
            f"study {study_instance_uid} is in the {top_band} band: confirm that it is to be "
            "marked read without feedback"
        )
    return feedback.mark_read(
        session, study_instance_uid=study_instance_uid, user=user, via=EXPLICIT, now=now
    )


@dataclass(frozen=True)
class UndoneRead:
    """What an undo put back: the read's author and way, and whether feedback went with it."""

    study_instance_uid: str
    read_by: str
    via: str
    feedback_removed: bool


def may_undo(
    read_by: str, read_at: datetime, *, user: str, admin: bool, window: timedelta, now: datetime
) -> bool:
    """Whether ``user`` may undo a read by ``read_by`` at ``read_at`` now."""
    return (admin or read_by == user) and now - read_at <= window


def undo_read(
    session: Session,
    *,
    study_instance_uid: str,
    user: str,
    admin: bool,
    window: timedelta,
    now: datetime | None = None,
) -> UndoneRead:
    """Undo a study's read: it comes back on the worklist (audited).

    Raises:
        NotReadError: the study is not marked read.
        UndoNotAllowedError: ``user`` neither read it nor is an admin.
        UndoExpiredError: the read is older than ``window``.
    """
    now = now or utcnow()
    read = _read(session, study_instance_uid)
    if read is None:
        raise NotReadError(f"study {study_instance_uid} is not marked read")
    if not (admin or read.read_by == user):
        raise UndoNotAllowedError(
            f"{read.read_by} read study {study_instance_uid}: only they or an admin may undo it"
        )
    if now - read.read_at > window:
        raise UndoExpiredError(
            f"study {study_instance_uid} was read at {read.read_at:%Y-%m-%d %H:%M} UTC; a read "
            f"can be undone for {_minutes(window)} minutes"
        )
    removed = _remove_feedback(session, study_instance_uid) if read.via == VIA_FEEDBACK else None
    undone = UndoneRead(
        study_instance_uid=study_instance_uid,
        read_by=read.read_by,
        via=read.via,
        feedback_removed=removed is not None,
    )
    audit.record(
        session,
        actor=user,
        action="study.read_undone",
        subject=study_instance_uid,
        detail={
            "read_by": read.read_by,
            "read_at": read.read_at.isoformat(timespec="seconds"),
            "via": read.via,
            "feedback_removed": removed,
        },
        now=now,
    )
    session.delete(read)
    # The read closed the study in the study table; it goes back on the list (unless it
    # left the list for another reason too, which an undo of the read does not undo).
    study = studies.find_study(session, study_instance_uid=study_instance_uid)
    if study is not None and study.closed_reason == CLOSED_READ:
        studies.reopen_study(session, study_instance_uid=study_instance_uid)
    session.flush()
    return undone


def _read(session: Session, study_instance_uid: str) -> StudyRead | None:
    return session.scalar(
        select(StudyRead).where(StudyRead.study_instance_uid == study_instance_uid)
    )


def _minutes(window: timedelta) -> str:
    return f"{window.total_seconds() / 60:g}"


def _remove_feedback(session: Session, study_instance_uid: str) -> dict[str, Any] | None:
    """Delete the study's feedback and its history; what was deleted, for the audit."""
    given = session.scalar(
        select(Feedback).where(Feedback.study_instance_uid == study_instance_uid)
    )
    if given is None:
        return None
    kept = {
        "label": given.label.value,
        "comment": given.comment,
        "given_by": given.given_by,
        "created_at": given.created_at.isoformat(timespec="seconds"),
        "updated_at": given.updated_at.isoformat(timespec="seconds"),
        "result_id": given.result_id,
        "history": [
            {
                "changed_by": change.changed_by,
                "changed_at": change.changed_at.isoformat(timespec="seconds"),
                "old_label": change.old_label,
                "new_label": change.new_label,
                "old_comment": change.old_comment,
                "new_comment": change.new_comment,
            }
            for change in given.history
        ],
    }
    for change in given.history:
        session.delete(change)
    session.flush()
    session.delete(given)
    session.flush()
    return kept


@dataclass(frozen=True)
class RecentRead:
    """A read of the last hours, with what the study was and whether it may be undone."""

    study_instance_uid: str
    read_by: str
    read_at: datetime
    via: str
    feedback_label: str | None
    band: str | None  # the study's score band; None when no image was assessable
    score: float | None
    threshold: float | None
    undo_until: datetime
    undoable: bool  # by the user asking, now


def recent_reads(
    session: Session,
    *,
    user: str,
    admin: bool,
    window: timedelta,
    since: datetime,
    now: datetime | None = None,
    limit: int = RECENT_LIMIT,
) -> list[RecentRead]:
    """Everyone's reads since ``since``, newest first (at most ``limit``)."""
    now = now or utcnow()
    rows = session.execute(
        select(StudyRead, Feedback.label)
        .outerjoin(Feedback, Feedback.study_instance_uid == StudyRead.study_instance_uid)
        .where(StudyRead.read_at >= since)
        .order_by(StudyRead.read_at.desc(), StudyRead.id.desc())
        .limit(limit)
    ).all()
    return [
        _recent(session, read, label, user=user, admin=admin, window=window, now=now)
        for read, label in rows
    ]


def recent_read(
    session: Session,
    *,
    study_instance_uid: str,
    user: str,
    admin: bool,
    window: timedelta,
    now: datetime | None = None,
) -> RecentRead | None:
    """The study's read when ``user`` may still undo it; None otherwise."""
    now = now or utcnow()
    read = _read(session, study_instance_uid)
    if read is None:
        return None
    label = session.scalar(
        select(Feedback.label).where(Feedback.study_instance_uid == study_instance_uid)
    )
    found = _recent(session, read, label, user=user, admin=admin, window=window, now=now)
    return found if found.undoable else None


def _recent(
    session: Session,
    read: StudyRead,
    label: FeedbackLabel | None,
    *,
    user: str,
    admin: bool,
    window: timedelta,
    now: datetime,
) -> RecentRead:
    entries = study_entries(session, open_only=False, study_instance_uid=read.study_instance_uid)
    entry = entries[0] if entries else None
    return RecentRead(
        study_instance_uid=read.study_instance_uid,
        read_by=read.read_by,
        read_at=read.read_at,
        via=read.via,
        feedback_label=None if label is None else label.value,
        band=entry.band if entry is not None else None,
        score=entry.score if entry is not None else None,
        threshold=entry.threshold if entry is not None else None,
        undo_until=read.read_at + window,
        undoable=may_undo(
            read.read_by, read.read_at, user=user, admin=admin, window=window, now=now
        ),
    )
