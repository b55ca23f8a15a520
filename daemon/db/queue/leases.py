"""Leases on jobs and deliveries: owner names, taking, holding and dropping, backoff.

A job or a delivery is claimed under a lease held by one process
(:func:`process_owner`) until ``lease_expires_at``; another process may take it over
once the lease runs out, or at once when the owner is known dead
(:func:`expire_leases_of_dead_owners`). A failed attempt waits :func:`backoff`
before the next.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.db.models import Delivery, DeliveryState, Job, JobState, utcnow

Leased = TypeVar("Leased", Job, Delivery)


def process_owner(role: str) -> str:
    """A lease owner name unique to this process and role: host, pid, role, random."""
    return f"{socket.gethostname()}:{os.getpid()}:{role}:{uuid.uuid4().hex[:8]}"


def backoff(attempt: int, *, initial: float, maximum: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): doubling, capped."""
    return float(min(initial * 2 ** max(0, attempt - 1), maximum))


def take_lease(row: Job | Delivery, *, owner: str, lease_seconds: float, now: datetime) -> None:
    """Give ``owner`` the row for ``lease_seconds``; the claim counts as an attempt."""
    row.lease_owner = owner
    row.lease_expires_at = now + timedelta(seconds=lease_seconds)
    row.attempts += 1


def drop_lease(row: Job | Delivery, *, count_attempt: bool = True) -> None:
    """End the row's lease; a claim not counted (a clean stop) gives its attempt back."""
    row.lease_owner = None
    row.lease_expires_at = None
    if not count_attempt:
        row.attempts = max(0, row.attempts - 1)


def held(
    session: Session,
    model: type[Leased],
    row_id: int,
    *,
    owner: str,
    state: JobState | DeliveryState,
) -> Leased | None:
    """The row, locked, if ``owner`` still holds it in ``state``; else None (the lease was
    taken over)."""
    row = session.get(model, row_id, with_for_update=True)
    if row is None or row.state != state or row.lease_owner != owner:
        return None
    return row


def expire_leases_of_dead_owners(
    session: Session, *, host: str, alive: Callable[[int], bool], now: datetime | None = None
) -> int:
    """End the leases held by processes of ``host`` that no longer run (a crash restart).

    Lease owners are ``host:pid:role:random``; a claim by a dead process on this host
    need not wait for its lease to run out. The claim still counts as an attempt.

    Returns:
        How many job and delivery leases were ended.
    """
    now = now or utcnow()
    prefix = f"{host}:"
    ended = 0
    holders: list[Job | Delivery] = [
        *session.scalars(
            select(Job).where(
                Job.lease_owner.startswith(prefix, autoescape=True), Job.lease_expires_at > now
            )
        ),
        *session.scalars(
            select(Delivery).where(
                Delivery.lease_owner.startswith(prefix, autoescape=True),
                Delivery.lease_expires_at > now,
            )
        ),
    ]
    for row in holders:
        pid_text = (row.lease_owner or "").split(":")[1:2]
        if pid_text and pid_text[0].isdigit() and not alive(int(pid_text[0])):
            row.lease_expires_at = now
            ended += 1
    return ended
