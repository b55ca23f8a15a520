"""Studies leaving the open list by the site's rule, besides a read here (which
:func:`daemon.feedback.mark_read` records): reported read elsewhere, or open longer
than ``worklist.close_after_hours``. A closed study keeps why, when and by whom."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon import audit
from daemon.db import studies
from daemon.db.models import Instance, utcnow
from daemon.errors import DaemonError
from daemon.worklist import WorklistQueryError

# Why a study left the open list.
CLOSED_READ = "read"
CLOSED_ELSEWHERE = "reported-elsewhere"
CLOSED_AGED = "aged-out"
CLOSE_REASONS = (CLOSED_READ, CLOSED_ELSEWHERE, CLOSED_AGED)


class UnknownStudyToCloseError(DaemonError):
    """A study to close that was never received."""


class ClosingNotAllowedError(DaemonError):
    """The site's rule does not let a study leave the list this way."""


def close_study(
    session: Session,
    *,
    study_instance_uid: str,
    reason: str,
    actor: str,
    allowed: bool = True,
    now: datetime | None = None,
) -> bool:
    """Take a study off the open list for a reason other than a read here (audited).

    For a read reported from elsewhere (a PACS, and later an HL7 feed): the study
    leaves the list, saying why, and the audit trail says who said so.

    Args:
        reason: one of :data:`CLOSE_REASONS`.
        allowed: whether the site's rule lets studies leave this way.

    Returns:
        False when the study had already left the list.

    Raises:
        ClosingNotAllowedError: ``allowed`` is false.
        UnknownStudyToCloseError: no image of the study was received.
        WorklistQueryError: an unknown reason.
    """
    if reason not in CLOSE_REASONS:
        raise WorklistQueryError(f"the reason must be one of {', '.join(CLOSE_REASONS)}")
    if not allowed:
        raise ClosingNotAllowedError(
            f"this site does not close studies as {reason!r} (see the [worklist] settings)"
        )
    received = session.scalar(
        select(Instance.id).where(Instance.study_instance_uid == study_instance_uid).limit(1)
    )
    if received is None:
        raise UnknownStudyToCloseError(f"no study {study_instance_uid}")
    now = now or utcnow()
    closed = studies.close_study(
        session, study_instance_uid=study_instance_uid, reason=reason, by=actor, now=now
    )
    if closed:
        audit.record(
            session,
            actor=actor,
            action="study.closed",
            subject=study_instance_uid,
            detail={"reason": reason},
            now=now,
        )
    return closed


def close_aged_studies(
    session: Session, *, older_than: timedelta, now: datetime | None = None
) -> dict[str, Any]:
    """Close the studies open longer than the site's limit (the scheduled job)."""
    now = now or utcnow()
    closed = studies.close_arrived_before(
        session, before=now - older_than, reason=CLOSED_AGED, by="scheduler", now=now
    )
    return {"closed": closed}
