"""Saved analyses: uploaded images a user asked to keep, with their score and map.

Only the display image (8-bit grey pixels, no DICOM header) is kept. A user sees and
deletes their own; an admin sees and deletes everyone's. Deletion is audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon import audit
from daemon.db.models import SavedAnalysis, utcnow

LISTED = 50  # the most recent analyses a list shows


@dataclass(frozen=True)
class Kept:
    """A kept analysis as the upload page lists it."""

    id: int
    filename: str
    score: float
    threshold: float
    at: datetime
    by: str


@dataclass(frozen=True)
class NewAnalysis:
    """What an analysis keeps: the result, its map (JSON rows) and the display image."""

    filename: str
    sha256: str
    logit: float
    score: float
    threshold: float
    model_version: str
    calibration_version: int
    cam: str
    image_png: bytes


def keep(session: Session, *, user_id: int, analysis: NewAnalysis) -> int:
    """Store an analysis for its user; its id."""
    row = SavedAnalysis(user_id=user_id, created_at=utcnow(), **analysis.__dict__)
    session.add(row)
    session.flush()
    return row.id


def listed(session: Session, *, user_id: int, everyone: bool) -> list[Kept]:
    """The most recent analyses the user kept (``everyone``: all users', for an admin)."""
    query = select(SavedAnalysis).order_by(SavedAnalysis.id.desc()).limit(LISTED)
    if not everyone:
        query = query.where(SavedAnalysis.user_id == user_id)
    return [
        Kept(a.id, a.filename, a.score, a.threshold, a.created_at, a.user.username)
        for a in session.scalars(query).all()
    ]


def visible(
    session: Session, *, analysis_id: int, user_id: int, everyone: bool
) -> SavedAnalysis | None:
    """A kept analysis the user may see (its owner, or anyone's for an admin)."""
    row = session.get(SavedAnalysis, analysis_id)
    if row is None or (row.user_id != user_id and not everyone):
        return None
    _ = row.user.username  # loaded while the session is open
    return row


def delete(session: Session, *, analysis_id: int, user_id: int, everyone: bool, actor: str) -> bool:
    """Delete a kept analysis the user may delete (audited); whether one was."""
    row = visible(session, analysis_id=analysis_id, user_id=user_id, everyone=everyone)
    if row is None:
        return False
    session.delete(row)
    audit.record(session, actor=actor, action="analysis.deleted", subject=str(analysis_id))
    return True
