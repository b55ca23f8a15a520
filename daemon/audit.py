"""The audit trail: who changed what, appended in the same transaction as the change."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.db.models import AuditEntry, utcnow


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
