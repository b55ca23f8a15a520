"""What an admin mends by hand: images that failed or were skipped, and dead-lettered
deliveries; the lists (a page at a time) and the retries, audited.

The command line (``chestaid-daemon jobs retry``, ``outbox retry``) and the web pages
and API call the same functions, so a retry behaves, and is recorded, the same way
whoever asks. Only a failed image is queued again: a skipped one was skipped for what
it is (its SOP class, modality, body part, view), which scoring it again would not
change; sending it again does not either. The lists carry UIDs, the calling AE title
and the reason, never patient data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from daemon import audit
from daemon.days import DayRange
from daemon.db import queue
from daemon.db.models import Delivery, DeliveryState, Job, JobState
from daemon.db.session import Session
from daemon.errors import DaemonError
from daemon.paging import Page

PROBLEM_STATES = (JobState.FAILED, JobState.SKIPPED)
MAX_PAGE = 500


class OperationsError(DaemonError):
    """A list or a retry asked for in a way that cannot be done (an unknown state)."""


@dataclass(frozen=True)
class ImageProblem:
    """A received image that was not scored: failed (retryable) or skipped (not)."""

    job_id: int
    state: str
    at: datetime  # when the job ended
    received_at: datetime
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    calling_ae_title: str
    reason: str
    attempts: int
    retryable: bool


@dataclass(frozen=True)
class DeadDelivery:
    """An output that could not be delivered to a destination after its last attempt."""

    delivery_id: int
    kind: str  # sc or sr
    destination: str
    attempts: int
    last_status: int | None
    last_error: str
    created_at: datetime
    sop_instance_uid: str


def _bounded(limit: int, offset: int) -> tuple[int, int]:
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise OperationsError(f"a page holds 1 to {MAX_PAGE} items from an offset of 0 or more")
    return limit, offset


def problem_states(state: str) -> tuple[JobState, ...]:
    """The job states an admin's ``state`` choice means: failed, skipped, or both ("").

    Raises:
        OperationsError: any other state.
    """
    if not state:
        return PROBLEM_STATES
    for choice in PROBLEM_STATES:
        if state == choice.value:
            return (choice,)
    raise OperationsError("state: choose failed or skipped (or both)")


def _problem(job: Job) -> ImageProblem:
    instance = job.instance
    return ImageProblem(
        job_id=job.id,
        state=job.state.value,
        at=job.finished_at or job.updated_at,
        received_at=instance.received_at,
        study_instance_uid=instance.study_instance_uid,
        series_instance_uid=instance.series_instance_uid,
        sop_instance_uid=instance.sop_instance_uid,
        calling_ae_title=instance.calling_ae_title,
        reason=job.reason or "",
        attempts=job.attempts,
        retryable=job.state == JobState.FAILED,
    )


def image_problems(
    session: Session,
    *,
    state: str = "",
    days: DayRange | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page[ImageProblem]:
    """Failed and skipped images (or one of the two), newest first, ended within ``days``.

    Raises:
        OperationsError: an unknown state or a page out of bounds.
    """
    states = problem_states(state)
    limit, offset = _bounded(limit, offset)
    days = days or DayRange()
    jobs, total = queue.job_page(
        session, states=states, since=days.since, until=days.until, limit=limit, offset=offset
    )
    return Page([_problem(job) for job in jobs], total, limit, offset)


def retry_images(
    session: Session,
    *,
    actor: str,
    via: str,
    ids: Sequence[int] = (),
    all_failed: bool = False,
) -> list[int]:
    """Queue failed images' jobs again with fresh attempts (those of ``ids``, or every one);
    a job that is not failed is left as it is. Recorded as ``jobs.retried`` when any was.

    Args:
        actor: who asks (a user name, or the login name at the command line).
        via: where from ("cli", "web" or "api"), kept in the audit detail.

    Returns:
        The ids of the jobs queued again.
    """
    queued = queue.retry_failed_jobs(session, ids=list(ids), all_failed=all_failed)
    if queued:
        audit.record(
            session,
            actor=actor,
            action="jobs.retried",
            subject=_subject(queued),
            detail={"jobs": queued, "via": via, "all_failed": all_failed},
        )
    return queued


def _dead(delivery: Delivery) -> DeadDelivery:
    return DeadDelivery(
        delivery_id=delivery.id,
        kind=delivery.output.kind.value,
        destination=delivery.destination,
        attempts=delivery.attempts,
        last_status=delivery.last_status,
        last_error=delivery.last_error or "",
        created_at=delivery.created_at,
        sop_instance_uid=delivery.output.sop_instance_uid,
    )


def dead_deliveries(
    session: Session, *, days: DayRange | None = None, limit: int = 50, offset: int = 0
) -> Page[DeadDelivery]:
    """Dead-lettered deliveries, newest first, created within ``days``.

    Raises:
        OperationsError: a page out of bounds.
    """
    limit, offset = _bounded(limit, offset)
    days = days or DayRange()
    rows, total = queue.delivery_page(
        session,
        states=(DeliveryState.DEAD,),
        since=days.since,
        until=days.until,
        limit=limit,
        offset=offset,
    )
    return Page([_dead(row) for row in rows], total, limit, offset)


def retry_deliveries(
    session: Session,
    *,
    actor: str,
    via: str,
    ids: Sequence[int] = (),
    all_dead: bool = False,
) -> list[int]:
    """Queue dead deliveries again with fresh attempts (those of ``ids``, or every one);
    one that is not dead is left as it is. Recorded as ``deliveries.retried`` when any was.

    Returns:
        The ids of the deliveries queued again.
    """
    queued = queue.retry_deliveries(session, ids=list(ids), all_dead=all_dead)
    if queued:
        audit.record(
            session,
            actor=actor,
            action="deliveries.retried",
            subject=_subject(queued),
            detail={"deliveries": queued, "via": via, "all_dead": all_dead},
        )
    return queued


def trouble_counts(session: Session) -> dict[str, int]:
    """How many images are failed and skipped, and how many deliveries dead."""
    jobs = queue.job_counts(session)
    return {
        "failed": jobs[JobState.FAILED.value],
        "skipped": jobs[JobState.SKIPPED.value],
        "dead": queue.delivery_counts(session)[DeliveryState.DEAD.value],
    }


def _subject(ids: list[int]) -> str:
    """The ids as the audit's subject (128 characters at most: a long list is cut)."""
    text = ",".join(map(str, ids))
    return text if len(text) <= 128 else text[:120].rsplit(",", 1)[0] + ",..."
