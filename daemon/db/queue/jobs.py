"""Received instances and their scoring jobs: record, claim, finish, give back.

A job is queued when its instance is recorded, claimed by a worker under a lease,
and ends done (see :func:`daemon.db.queue.results.complete_job`), skipped or failed,
or goes back to the queue.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session, joinedload

from daemon.db.models import Instance, Job, JobState, utcnow
from daemon.db.queue.leases import drop_lease, held, take_lease
from daemon.db.studies import StudyIdentity, note_received

TERMINAL_JOB_STATES = (JobState.DONE, JobState.SKIPPED, JobState.FAILED)


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
    identity: StudyIdentity | None = None,
    now: datetime | None = None,
) -> Job:
    """Add a received instance and its queued job (flushed, not committed), and note
    the study (with the identifying fields of its header, when given).

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
    note_received(
        session,
        study_instance_uid=study_instance_uid,
        identity=identity,
        requested_priority=requested_priority,
        now=now,
    )
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
    received_at: datetime | None = None  # when the job was queued (the image received)


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
            finish(job, JobState.FAILED, f"abandoned by its worker {job.attempts} times", now)
            session.flush()
            continue
        job.state = JobState.RUNNING
        take_lease(job, owner=owner, lease_seconds=lease_seconds, now=now)
        job.updated_at = now
        session.flush()
        return Claim(
            job_id=job.id,
            attempts=job.attempts,
            instance_id=job.instance_id,
            sop_instance_uid=job.instance.sop_instance_uid,
            spool_name=job.instance.spool_name,
            received_at=job.created_at,
        )


def finish(job: Job, state: JobState, reason: str | None, now: datetime) -> None:
    """Put a job in ``state`` for good, its lease ended."""
    job.state = state
    job.reason = reason
    drop_lease(job)
    job.updated_at = now
    job.finished_at = now


def owned_job(session: Session, *, job_id: int, owner: str) -> Job | None:
    """The job if ``owner`` still holds it, else None (its lease was taken over)."""
    return held(session, Job, job_id, owner=owner, state=JobState.RUNNING)


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
    job = owned_job(session, job_id=job_id, owner=owner)
    if job is None:
        return False
    finish(job, state, reason, now or utcnow())
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
    job = owned_job(session, job_id=job_id, owner=owner)
    if job is None:
        return False
    now = now or utcnow()
    job.state = JobState.QUEUED
    drop_lease(job, count_attempt=count_attempt)
    job.lease_expires_at = now + timedelta(seconds=retry_after) if retry_after > 0 else None
    job.reason = reason
    job.updated_at = now
    return True


def release_owned_jobs(session: Session, *, owner: str, now: datetime | None = None) -> int:
    """Give back every job ``owner`` still holds, uncounted (a clean stop); returns how many."""
    now = now or utcnow()
    jobs = session.scalars(
        select(Job).where(Job.state == JobState.RUNNING, Job.lease_owner == owner)
    ).all()
    for job in jobs:
        job.state = JobState.QUEUED
        drop_lease(job, count_attempt=False)
        job.updated_at = now
    return len(jobs)


def list_jobs(session: Session, *, state: JobState | None = None, limit: int = 100) -> list[Job]:
    """Jobs (newest first), optionally in one state, with their instances."""
    query = select(Job).options(joinedload(Job.instance)).order_by(Job.id.desc())
    if state is not None:
        query = query.where(Job.state == state)
    return list(session.scalars(query.limit(limit)).all())


def job_page(
    session: Session,
    *,
    states: Sequence[JobState],
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Job], int]:
    """Jobs in ``states`` last changed in ``[since, until)``, newest change first, with
    their instances: one page (``limit`` from ``offset``) and how many there are in all."""
    where: list[ColumnElement[bool]] = [Job.state.in_(list(states))]
    if since is not None:
        where.append(Job.updated_at >= since)
    if until is not None:
        where.append(Job.updated_at < until)
    total = session.scalar(select(func.count()).select_from(Job).where(*where)) or 0
    rows = session.scalars(
        select(Job)
        .where(*where)
        .options(joinedload(Job.instance))
        .order_by(Job.updated_at.desc(), Job.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), int(total)


def _requeue(job: Job, now: datetime) -> None:
    """Put a failed job back in the queue with fresh attempts."""
    job.state = JobState.QUEUED
    job.attempts = 0
    drop_lease(job)
    job.reason = None
    job.updated_at = now
    job.finished_at = None


def retry_failed_jobs(
    session: Session,
    *,
    ids: Sequence[int] | None = None,
    all_failed: bool = False,
    now: datetime | None = None,
) -> list[int]:
    """Put failed jobs (those of ``ids``, or every one) back in the queue with fresh
    attempts; returns the ids queued again. A job not failed is left as it is, and so is
    one whose image retention has deleted: queued again, it could only fail again."""
    if not ids and not all_failed:
        return []
    now = now or utcnow()
    query = (
        select(Job)
        .join(Instance, Job.instance_id == Instance.id)
        .where(Job.state == JobState.FAILED, Instance.spool_name.is_not(None))
        .order_by(Job.id)
    )
    if ids:
        query = query.where(Job.id.in_(list(ids)))
    jobs = session.scalars(query.with_for_update(of=Job)).all()
    for job in jobs:
        _requeue(job, now)
    session.flush()
    return [job.id for job in jobs]


class Duplicate(enum.Enum):
    """What to do with an instance received again (:func:`receive_again`)."""

    NEW = "new"  # never received: store it
    KEPT = "kept"  # received before: the first copy is kept and nothing more happens
    REQUEUED = "requeued"  # its job had failed: queued again, on the first copy


def receive_again(
    session: Session, *, sop_instance_uid: str, now: datetime | None = None
) -> Duplicate:
    """Decide what a received instance's SOP Instance UID means for the queue.

    An instance received before is kept as first received, except that one whose job
    failed (storage trouble outlasted its retries, say) and whose spooled file is still
    there is scored again: its job is queued again with fresh attempts. Sending an
    image again is what a PACS administrator does to have it processed.
    """
    job = session.scalar(
        select(Job)
        .join(Instance, Job.instance_id == Instance.id)
        .where(Instance.sop_instance_uid == sop_instance_uid)
        .options(joinedload(Job.instance))
        .limit(1)
    )
    if job is None:  # every recorded instance has its job
        return Duplicate.NEW
    if job.state != JobState.FAILED or job.instance.spool_name is None:
        return Duplicate.KEPT
    _requeue(job, now or utcnow())
    session.flush()
    return Duplicate.REQUEUED
