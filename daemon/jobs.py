"""Scheduled maintenance jobs: plain functions, listed in one registry with their interval.

Each job takes the process's session factory and returns a small dict that the
scheduler logs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import update

from daemon.db import repo
from daemon.db.models import Job, JobState, utcnow
from daemon.db.session import SessionFactory, unit_of_work
from daemon.settings import Settings

JobFunction = Callable[[SessionFactory], dict[str, Any]]


def queue_report(sessions: SessionFactory) -> dict[str, Any]:
    """How many jobs and deliveries are in each state."""
    with unit_of_work(sessions) as session:
        return {
            "jobs": repo.job_counts(session),
            "deliveries": repo.delivery_counts(session),
        }


def requeue_expired_leases(
    sessions: SessionFactory, *, now: datetime | None = None
) -> dict[str, Any]:
    """Put jobs whose worker died (lease expired) back in the queue, so they show as queued.

    Workers also claim expired jobs directly; this makes the state visible when no
    worker is running (for example a node running only the SCP role).
    """
    with unit_of_work(sessions) as session:
        result = session.execute(
            update(Job)
            .where(Job.state == JobState.RUNNING, Job.lease_expires_at < (now or utcnow()))
            .values(state=JobState.QUEUED, lease_owner=None, lease_expires_at=None)
        )
        return {"requeued": int(getattr(result, "rowcount", 0) or 0)}


@dataclass(frozen=True)
class ScheduledJob:
    """A registry entry: a job function and how often it runs."""

    name: str
    function: JobFunction
    seconds: float


def registry(settings: Settings) -> list[ScheduledJob]:
    """Every scheduled job of the scheduler role, with its interval from the settings."""
    return [
        ScheduledJob("queue-report", queue_report, settings.scheduler.queue_report_seconds),
        ScheduledJob(
            "requeue-expired-leases", requeue_expired_leases, settings.worker.lease_seconds
        ),
    ]
