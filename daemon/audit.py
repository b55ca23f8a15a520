"""The audit trail: who changed what, appended in the same transaction as the change.

Admins search it by days, actor and action, a page at a time, and export it (CSV or
JSON); an export is itself recorded.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from daemon import exports
from daemon.days import DayRange
from daemon.db.models import AuditEntry, utcnow

EXPORT_MAX_ROWS = 100_000
EXPORT_FIELDS = ("id", "at", "actor", "action", "subject", "detail")


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    subject: str | None = None,
    detail: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> AuditEntry:
    """Append an entry (flushed with the caller's transaction, never on its own)."""
    entry = AuditEntry(
        at=now or utcnow(),
        actor=actor,
        action=action,
        subject=subject,
        detail=json.dumps(detail, sort_keys=True, default=str) if detail is not None else None,
    )
    session.add(entry)
    session.flush()
    return entry


def entries(
    session: Session,
    *,
    since: datetime | None = None,
    limit: int = 1000,
    action_prefix: str = "",
    newest_first: bool = False,
) -> list[AuditEntry]:
    """Entries oldest first (or newest first), optionally from ``since`` or of some actions."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc() if newest_first else AuditEntry.id)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if action_prefix:
        query = query.where(AuditEntry.action.startswith(action_prefix, autoescape=True))
    return list(session.scalars(query.limit(limit)).all())


def search(
    session: Session,
    *,
    days: DayRange | None = None,
    actor: str = "",
    action_prefix: str = "",
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[AuditEntry], int]:
    """Entries newest first within ``days``, by one actor (exact name) and of actions
    starting with ``action_prefix``: one page (``limit`` from ``offset``) and how many
    match in all."""
    where = _conditions(days=days, actor=actor, action_prefix=action_prefix)
    total = session.scalar(select(func.count()).select_from(AuditEntry).where(*where)) or 0
    rows = session.scalars(
        select(AuditEntry).where(*where).order_by(AuditEntry.id.desc()).limit(limit).offset(offset)
    ).all()
    return list(rows), int(total)


def _conditions(
    *, days: DayRange | None, actor: str, action_prefix: str
) -> list[ColumnElement[bool]]:
    """The WHERE conditions of a search."""
    where: list[ColumnElement[bool]] = []
    if days is not None and days.since is not None:
        where.append(AuditEntry.at >= days.since)
    if days is not None and days.until is not None:
        where.append(AuditEntry.at < days.until)
    if actor:
        where.append(AuditEntry.actor == actor)
    if action_prefix:
        where.append(AuditEntry.action.startswith(action_prefix, autoescape=True))
    return where


def export_rows(
    session: Session, *, days: DayRange, by: str = "", action_prefix: str = ""
) -> tuple[list[dict[str, Any]], int]:
    """The entries of a search as plain rows (up to :data:`EXPORT_MAX_ROWS`, newest
    first), and how many match in all. Read as columns, not entities: an export of
    100,000 entries is a few hundred milliseconds of reading, not seconds."""
    where = _conditions(days=days, actor=by, action_prefix=action_prefix)
    total = session.scalar(select(func.count()).select_from(AuditEntry).where(*where)) or 0
    found = session.execute(
        select(
            AuditEntry.id,
            AuditEntry.at,
            AuditEntry.actor,
            AuditEntry.action,
            AuditEntry.subject,
            AuditEntry.detail,
        )
        .where(*where)
        .order_by(AuditEntry.id.desc())
        .limit(EXPORT_MAX_ROWS)
    ).all()
    rows = [
        {
            "id": entry_id,
            "at": at.isoformat(timespec="seconds"),
            "actor": actor,
            "action": action,
            "subject": subject or "",
            "detail": detail or "",
        }
        for entry_id, at, actor, action, subject, detail in found
    ]
    return rows, int(total)


def record_export(
    session: Session,
    *,
    actor: str,
    fmt: str,
    days: DayRange,
    rows: int,
    matching: int,
    by: str = "",
    action_prefix: str = "",
) -> AuditEntry:
    """Record that ``actor`` exported ``rows`` entries of a search as ``fmt``."""
    return record(
        session,
        actor=actor,
        action="audit.exported",
        detail={
            "format": fmt,
            "rows": rows,
            "matching": matching,
            **days.as_text(),
            "actor": by,
            "action": action_prefix,
        },
    )


def export_text(rows: list[dict[str, Any]], fmt: str) -> str:
    """Rows of :func:`export_rows` as CSV (formula-like cells neutralised) or JSON.

    Raises:
        ValueError: ``fmt`` is neither ``csv`` nor ``json``.
    """
    if fmt == "json":
        return json.dumps(rows, indent=1)
    if fmt == "csv":
        return exports.csv_text(rows, empty_fields=EXPORT_FIELDS)
    raise ValueError(f"unknown export format {fmt!r}")


def export(
    session: Session,
    *,
    actor: str,
    fmt: str,
    days: DayRange,
    by: str = "",
    action_prefix: str = "",
) -> str:
    """The entries of a search as CSV or JSON text, the export recorded as
    ``audit.exported`` by ``actor``, in one unit of work (the command line's way; the
    web reads first and records in a short writing unit of its own).

    Raises:
        ValueError: ``fmt`` is neither ``csv`` nor ``json``.
    """
    rows, matching = export_rows(session, days=days, by=by, action_prefix=action_prefix)
    text = export_text(rows, fmt)
    record_export(
        session,
        actor=actor,
        fmt=fmt,
        days=days,
        rows=len(rows),
        matching=matching,
        by=by,
        action_prefix=action_prefix,
    )
    return text
