"""The work queue: received instances and their scoring jobs, deliveries of outputs, leases.

Each function works inside the caller's session and transaction (one unit of work),
takes keyword arguments and never commits. A job or a delivery is claimed under a
lease held by one process (:func:`process_owner`); a failed attempt waits
:func:`backoff` before the next. Claims (of jobs and of deliveries) lock the row with
``FOR UPDATE SKIP LOCKED`` on PostgreSQL; on SQLite every transaction is begun
IMMEDIATE (see :mod:`daemon.db.session`), which serialises claimers the same way.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, joinedload

from daemon.db.models import (
    Delivery,
    DeliveryState,
    Instance,
    Job,
    JobState,
    Output,
    OutputKind,
    Result,
    utcnow,
)

TERMINAL_JOB_STATES = (JobState.DONE, JobState.SKIPPED, JobState.FAILED)


class ImageStatistics(Protocol):
    """Figures of the decoded image kept on a result (see :mod:`daemon.heatmaps`)."""

    @property
    def mean(self) -> float: ...
    @property
    def std(self) -> float: ...
    @property
    def rows(self) -> int: ...
    @property
    def cols(self) -> int: ...


def process_owner(role: str) -> str:
    """A lease owner name unique to this process and role: host, pid, role, random."""
    return f"{socket.gethostname()}:{os.getpid()}:{role}:{uuid.uuid4().hex[:8]}"


def backoff(attempt: int, *, initial: float, maximum: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): doubling, capped."""
    return float(min(initial * 2 ** max(0, attempt - 1), maximum))


# -- instances and jobs ------------------------------------------------------------------


def instance_exists(session: Session, *, sop_instance_uid: str) -> bool:
    """Whether an instance with this SOP Instance UID was already received."""
    found = session.scalar(
        select(Instance.id).where(Instance.sop_instance_uid == sop_instance_uid).limit(1)
    )
    return found is not None


def record_instance(
    session: Session,
    *,
    sop_instance_uid: str,
    sop_class_uid: str,
    study_instance_uid: str,
    series_instance_uid: str,
    transfer_syntax_uid: str,
    modality: str | None,
    spool_name: str,
    size_bytes: int,
    calling_ae_title: str,
    peer_address: str,
    requested_priority: str,
    now: datetime | None = None,
) -> Job:
    """Add a received instance and its queued job (flushed, not committed).

    Raises:
        sqlalchemy.exc.IntegrityError: the SOP Instance UID is already recorded.
    """
    now = now or utcnow()
    instance = Instance(
        sop_instance_uid=sop_instance_uid,
        sop_class_uid=sop_class_uid,
        study_instance_uid=study_instance_uid,
        series_instance_uid=series_instance_uid,
        transfer_syntax_uid=transfer_syntax_uid,
        modality=modality,
        spool_name=spool_name,
        size_bytes=size_bytes,
        calling_ae_title=calling_ae_title,
        peer_address=peer_address,
        requested_priority=requested_priority,
        received_at=now,
    )
    job = Job(instance=instance, state=JobState.QUEUED, attempts=0, created_at=now, updated_at=now)
    session.add_all([instance, job])
    session.flush()
    return job


@dataclass(frozen=True)
class Claim:
    """A job a worker holds, with what it needs to process it."""

    job_id: int
    attempts: int
    instance_id: int
    sop_instance_uid: str
    spool_name: str | None


def claim_job(
    session: Session,
    *,
    owner: str,
    lease_seconds: float,
    max_attempts: int,
    now: datetime | None = None,
) -> Claim | None:
    """Claim the oldest queued job, or one whose lease expired (its worker died).

    A job already claimed ``max_attempts`` times whose lease expired is failed instead
    (it may be what kills the worker) and the next one is tried.
    """
    now = now or utcnow()
    claimable = or_(
        # A queued job's lease_expires_at, when set, is when it may be retried.
        and_(
            Job.state == JobState.QUEUED,
            or_(Job.lease_expires_at.is_(None), Job.lease_expires_at <= now),
        ),
        and_(Job.state == JobState.RUNNING, Job.lease_expires_at < now),
    )
    while True:
        job = session.scalar(
            select(Job)
            .where(claimable)
            .order_by(Job.id)
            .limit(1)
            .with_for_update(skip_locked=True, of=Job)
            .options(joinedload(Job.instance))
        )
        if job is None:
            return None
        if job.state == JobState.RUNNING and job.attempts >= max_attempts:
            _finish(job, JobState.FAILED, f"abandoned by its worker {job.attempts} times", now)
            session.flush()
            continue
        job.state = JobState.RUNNING
        job.lease_owner = owner
        job.lease_expires_at = now + timedelta(seconds=lease_seconds)
        job.attempts += 1
        job.updated_at = now
        session.flush()
        return Claim(
            job_id=job.id,
            attempts=job.attempts,
            instance_id=job.instance_id,
            sop_instance_uid=job.instance.sop_instance_uid,
            spool_name=job.instance.spool_name,
        )


def _finish(job: Job, state: JobState, reason: str | None, now: datetime) -> None:
    job.state = state
    job.reason = reason
    job.lease_owner = None
    job.lease_expires_at = None
    job.updated_at = now
    job.finished_at = now


def _owned_job(session: Session, *, job_id: int, owner: str) -> Job | None:
    """The job if ``owner`` still holds it, else None (its lease was taken over)."""
    job = session.get(Job, job_id, with_for_update=True)
    if job is None or job.state != JobState.RUNNING or job.lease_owner != owner:
        return None
    return job


def finish_job(
    session: Session,
    *,
    job_id: int,
    owner: str,
    state: JobState,
    reason: str | None,
    now: datetime | None = None,
) -> bool:
    """Put a held job in a terminal state; False when the lease was lost."""
    if state not in TERMINAL_JOB_STATES:
        raise ValueError(f"{state} is not a terminal job state")
    job = _owned_job(session, job_id=job_id, owner=owner)
    if job is None:
        return False
    _finish(job, state, reason, now or utcnow())
    return True


def release_job(
    session: Session,
    *,
    job_id: int,
    owner: str,
    reason: str | None = None,
    count_attempt: bool = False,
    retry_after: float = 0.0,
    now: datetime | None = None,
) -> bool:
    """Give a held job back to the queue; False when the lease was lost.

    Args:
        count_attempt: keep the claim counted as an attempt (it failed); a job given
            back on a clean stop does not count.
        retry_after: seconds before the job may be claimed again.
    """
    job = _owned_job(session, job_id=job_id, owner=owner)
    if job is None:
        return False
    now = now or utcnow()
    job.state = JobState.QUEUED
    job.lease_owner = None
    job.lease_expires_at = now + timedelta(seconds=retry_after) if retry_after > 0 else None
    job.reason = reason
    job.updated_at = now
    if not count_attempt:
        job.attempts = max(0, job.attempts - 1)
    return True


@dataclass(frozen=True)
class NotAssessable:
    """Why an image could not be judged: a reason code of ``chestaid.assessment`` and
    its sentence for people. A result recorded with one has no priority band."""

    reason: str
    detail: str


@dataclass(frozen=True)
class NewOutput:
    """A generated object written to the outbox, to be recorded with its result."""

    kind: OutputKind
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    file_name: str
    size_bytes: int


def complete_job(
    session: Session,
    *,
    job_id: int,
    owner: str,
    logit: float,
    score: float,
    threshold: float,
    above_threshold: bool,
    priority: str | None,
    model_version: str,
    calibration_version: int,
    outputs: Sequence[NewOutput],
    destinations: Iterable[str],
    cam: str | None = None,
    image: ImageStatistics | None = None,
    not_assessable: NotAssessable | None = None,
    quarter_turns: int = 0,
    now: datetime | None = None,
) -> bool:
    """Record a held job's result, its outputs and one delivery per output per destination.

    Args:
        priority: the band; None exactly when the image was not assessable.
        cam: the Grad-CAM map as text from :func:`daemon.heatmaps.encode_cam`;
            None leaves the result without one.
        image: statistics of the decoded image, for label-free drift; None leaves
            them empty.
        not_assessable: set when the image could not be judged: the result keeps
            the reason, no band, and its score for audit only.
        quarter_turns: counter-clockwise quarter turns given to the image before scoring.

    Returns:
        False (nothing written) when the lease was lost to another worker.

    Raises:
        ValueError: a band given with ``not_assessable``, none without it, or a
            not-assessable result said to be above the threshold.
    """
    if (priority is None) != (not_assessable is not None):
        raise ValueError("a result has a priority band exactly when it is assessable")
    if not_assessable is not None and above_threshold:
        raise ValueError("a not-assessable result is never above the threshold")
    now = now or utcnow()
    job = _owned_job(session, job_id=job_id, owner=owner)
    if job is None:
        return False
    session.add(
        Result(
            job_id=job_id,
            logit=logit,
            score=score,
            threshold=threshold,
            above_threshold=above_threshold,
            priority=priority,
            assessable=not_assessable is None,
            not_assessable_reason=None if not_assessable is None else not_assessable.reason,
            not_assessable_detail=None if not_assessable is None else not_assessable.detail,
            quarter_turns=quarter_turns,
            model_version=model_version,
            calibration_version=calibration_version,
            scored_at=now,
            cam=cam,
            image_mean=None if image is None else image.mean,
            image_std=None if image is None else image.std,
            image_rows=None if image is None else image.rows,
            image_cols=None if image is None else image.cols,
        )
    )
    names = list(destinations)
    for new in outputs:
        output = Output(
            job_id=job_id,
            kind=new.kind,
            sop_class_uid=new.sop_class_uid,
            sop_instance_uid=new.sop_instance_uid,
            series_instance_uid=new.series_instance_uid,
            file_name=new.file_name,
            size_bytes=new.size_bytes,
            created_at=now,
        )
        session.add(output)
        for name in names:
            session.add(
                Delivery(
                    output=output,
                    destination=name,
                    state=DeliveryState.PENDING,
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
    _finish(job, JobState.DONE, None, now)
    session.flush()
    return True


def release_owned_jobs(session: Session, *, owner: str, now: datetime | None = None) -> int:
    """Give back every job ``owner`` still holds, uncounted (a clean stop); returns how many."""
    now = now or utcnow()
    jobs = session.scalars(
        select(Job).where(Job.state == JobState.RUNNING, Job.lease_owner == owner)
    ).all()
    for job in jobs:
        job.state = JobState.QUEUED
        job.lease_owner = None
        job.lease_expires_at = None
        job.attempts = max(0, job.attempts - 1)
        job.updated_at = now
    return len(jobs)


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


def job_counts(session: Session) -> dict[str, int]:
    """How many jobs are in each state."""
    rows = session.execute(select(Job.state, func.count()).group_by(Job.state)).all()
    counts = {state.value: 0 for state in JobState}
    counts.update({JobState(state).value: int(n) for state, n in rows})
    return counts


# -- deliveries (the outbox) -------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryClaim:
    """A delivery a sender holds, with the file to send."""

    delivery_id: int
    destination: str
    attempts: int
    file_name: str
    sop_instance_uid: str
    sop_class_uid: str


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
        .options(joinedload(Delivery.output))
    ).all()
    claims = []
    for delivery in rows:
        delivery.state = DeliveryState.SENDING
        delivery.lease_owner = owner
        delivery.lease_expires_at = now + timedelta(seconds=lease_seconds)
        delivery.attempts += 1
        claims.append(
            DeliveryClaim(
                delivery_id=delivery.id,
                destination=delivery.destination,
                attempts=delivery.attempts,
                file_name=delivery.output.file_name,
                sop_instance_uid=delivery.output.sop_instance_uid,
                sop_class_uid=delivery.output.sop_class_uid,
            )
        )
    session.flush()
    return claims


def _owned_delivery(session: Session, *, delivery_id: int, owner: str) -> Delivery | None:
    delivery = session.get(Delivery, delivery_id, with_for_update=True)
    if delivery is None or delivery.state != DeliveryState.SENDING or delivery.lease_owner != owner:
        return None
    return delivery


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
    delivery.lease_owner = None
    delivery.lease_expires_at = None
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
    delivery.lease_owner = None
    delivery.lease_expires_at = None
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
        delivery.attempts = max(0, delivery.attempts - 1)
        delivery.lease_owner = None
        delivery.lease_expires_at = None
    return len(rows)


def list_deliveries(
    session: Session, *, state: DeliveryState | None = None, limit: int = 100
) -> list[Delivery]:
    """Deliveries (newest first), optionally in one state, with their outputs."""
    query = select(Delivery).options(joinedload(Delivery.output)).order_by(Delivery.id.desc())
    if state is not None:
        query = query.where(Delivery.state == state)
    return list(session.scalars(query.limit(limit)).all())


def retry_deliveries(
    session: Session,
    *,
    ids: Sequence[int] | None = None,
    all_dead: bool = False,
    now: datetime | None = None,
) -> int:
    """Put dead deliveries back in the queue with fresh attempts; returns how many."""
    if not ids and not all_dead:
        return 0
    query = update(Delivery).where(Delivery.state == DeliveryState.DEAD)
    if ids:
        query = query.where(Delivery.id.in_(list(ids)))
    result = session.execute(
        query.values(
            state=DeliveryState.PENDING,
            attempts=0,
            next_attempt_at=now or utcnow(),
            last_error=None,
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def delivery_counts(session: Session) -> dict[str, int]:
    """How many deliveries are in each state."""
    rows = session.execute(select(Delivery.state, func.count()).group_by(Delivery.state)).all()
    counts = {state.value: 0 for state in DeliveryState}
    counts.update({DeliveryState(state).value: int(n) for state, n in rows})
    return counts
