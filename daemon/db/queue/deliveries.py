"""Deliveries of outputs to destinations (the outbox): claim, mark, give back, retry, list."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.orm import Session, joinedload

from daemon.db.models import Delivery, DeliveryState, Output, utcnow
from daemon.db.queue.leases import drop_lease, held, take_lease


@dataclass(frozen=True)
class DeliveryClaim:
    """A delivery a sender holds, with the file to send."""

    delivery_id: int
    destination: str
    attempts: int
    file_name: str
    sop_instance_uid: str
    sop_class_uid: str
    received_at: datetime | None = None  # when the image the output is of was received


def claim_deliveries(
    session: Session,
    *,
    owner: str,
    lease_seconds: float,
    destinations: Iterable[str],
    limit: int,
    now: datetime | None = None,
) -> list[DeliveryClaim]:
    """Claim due deliveries (pending and due, or sending with an expired lease)."""
    now = now or utcnow()
    due = or_(
        and_(Delivery.state == DeliveryState.PENDING, Delivery.next_attempt_at <= now),
        and_(Delivery.state == DeliveryState.SENDING, Delivery.lease_expires_at < now),
    )
    rows = session.scalars(
        select(Delivery)
        .where(due, Delivery.destination.in_(list(destinations)))
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=Delivery)
        .options(joinedload(Delivery.output).joinedload(Output.job))
    ).all()
    claims = []
    for delivery in rows:
        delivery.state = DeliveryState.SENDING
        take_lease(delivery, owner=owner, lease_seconds=lease_seconds, now=now)
        claims.append(
            DeliveryClaim(
                delivery_id=delivery.id,
                destination=delivery.destination,
                attempts=delivery.attempts,
                file_name=delivery.output.file_name,
                sop_instance_uid=delivery.output.sop_instance_uid,
                sop_class_uid=delivery.output.sop_class_uid,
                received_at=delivery.output.job.created_at,
            )
        )
    session.flush()
    return claims


def _owned_delivery(session: Session, *, delivery_id: int, owner: str) -> Delivery | None:
    return held(session, Delivery, delivery_id, owner=owner, state=DeliveryState.SENDING)


def mark_delivered(
    session: Session,
    *,
    delivery_id: int,
    owner: str,
    status: int,
    now: datetime | None = None,
) -> bool:
    """Record a successful C-STORE; False when the lease was lost."""
    delivery = _owned_delivery(session, delivery_id=delivery_id, owner=owner)
    if delivery is None:
        return False
    delivery.state = DeliveryState.DELIVERED
    delivery.delivered_at = now or utcnow()
    delivery.last_status = status
    delivery.last_error = None
    drop_lease(delivery)
    return True


def mark_attempt_failed(
    session: Session,
    *,
    delivery_id: int,
    owner: str,
    error: str,
    status: int | None,
    retry_in: float | None,
    now: datetime | None = None,
) -> DeliveryState | None:
    """Record a failed attempt: pending again after ``retry_in`` seconds, or dead when None.

    Returns:
        The new state, or None when the lease was lost.
    """
    delivery = _owned_delivery(session, delivery_id=delivery_id, owner=owner)
    if delivery is None:
        return None
    now = now or utcnow()
    delivery.last_error = error
    delivery.last_status = status
    drop_lease(delivery)
    if retry_in is None:
        delivery.state = DeliveryState.DEAD
    else:
        delivery.state = DeliveryState.PENDING
        delivery.next_attempt_at = now + timedelta(seconds=retry_in)
    return delivery.state


def release_owned_deliveries(session: Session, *, owner: str) -> int:
    """Give back every delivery ``owner`` still holds, uncounted (a clean stop)."""
    rows = session.scalars(
        select(Delivery).where(
            Delivery.state == DeliveryState.SENDING, Delivery.lease_owner == owner
        )
    ).all()
    for delivery in rows:
        delivery.state = DeliveryState.PENDING
        drop_lease(delivery, count_attempt=False)
    return len(rows)


def list_deliveries(
    session: Session, *, state: DeliveryState | None = None, limit: int = 100
) -> list[Delivery]:
    """Deliveries (newest first), optionally in one state, with their outputs."""
    query = select(Delivery).options(joinedload(Delivery.output)).order_by(Delivery.id.desc())
    if state is not None:
        query = query.where(Delivery.state == state)
    return list(session.scalars(query.limit(limit)).all())


def delivery_page(
    session: Session,
    *,
    states: Sequence[DeliveryState],
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Delivery], int]:
    """Deliveries in ``states`` created in ``[since, until)``, newest first, with their
    outputs: one page (``limit`` from ``offset``) and how many there are in all."""
    where: list[ColumnElement[bool]] = [Delivery.state.in_(list(states))]
    if since is not None:
        where.append(Delivery.created_at >= since)
    if until is not None:
        where.append(Delivery.created_at < until)
    total = session.scalar(select(func.count()).select_from(Delivery).where(*where)) or 0
    rows = session.scalars(
        select(Delivery)
        .where(*where)
        .options(joinedload(Delivery.output))
        .order_by(Delivery.created_at.desc(), Delivery.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), int(total)


def retry_deliveries(
    session: Session,
    *,
    ids: Sequence[int] | None = None,
    all_dead: bool = False,
    now: datetime | None = None,
) -> list[int]:
    """Put dead deliveries (those of ``ids``, or every one) back in the queue with fresh
    attempts; returns the ids queued again (a delivery not dead is left as it is)."""
    if not ids and not all_dead:
        return []
    chosen = select(Delivery.id).where(Delivery.state == DeliveryState.DEAD)
    if ids:
        chosen = chosen.where(Delivery.id.in_(list(ids)))
    queued = sorted(session.scalars(chosen).all())
    if not queued:
        return []
    session.execute(
        update(Delivery)
        .where(Delivery.id.in_(queued), Delivery.state == DeliveryState.DEAD)
        .values(
            state=DeliveryState.PENDING,
            attempts=0,
            next_attempt_at=now or utcnow(),
            last_error=None,
        )
    )
    return queued
