"""The scheduler role: runs the registry of :mod:`daemon.maintenance` on APScheduler.

More than one process may run the role (one on each node, so that the jobs go on when
a node is down). Each job's last start is kept in the database (``scheduled_runs``):
a process starts a job only when it finds, under that row's lock, that the job's
interval has passed since it last started anywhere, and notes the new start in the
same transaction. So across the processes each job runs about once an interval.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from daemon.db.models import ScheduledRun, utcnow
from daemon.db.session import SessionFactory, insert_ignoring_conflicts, writing
from daemon.maintenance import ScheduledJob

logger = logging.getLogger(__name__)

# A start that comes this much before the interval is up still counts as on time: the
# timers of two processes drift, and a job must not be skipped for a round by a hair.
EARLY_FRACTION = 0.1


def take_turn(
    session: Session, *, name: str, seconds: float, owner: str, now: datetime | None = None
) -> bool:
    """Whether this process starts job ``name`` now; if so, its start is noted.

    False when the job started in any process less than ``seconds`` (less
    :data:`EARLY_FRACTION` of it) ago. The job's row is locked until the caller's
    transaction ends (PostgreSQL: ``FOR UPDATE``; SQLite's writers are one at a time),
    so of two processes asking at once one starts the job and the other sees its start.
    """
    now = now or utcnow()
    if insert_ignoring_conflicts(
        session, ScheduledRun, ScheduledRun.name, name=name, started_at=now, owner=owner
    ):
        return True  # the job's first start anywhere
    run = session.scalars(
        select(ScheduledRun).where(ScheduledRun.name == name).with_for_update()
    ).one()
    if now - run.started_at < timedelta(seconds=seconds * (1 - EARLY_FRACTION)):
        return False
    run.started_at, run.owner = now, owner
    return True


def _run_logged(job: ScheduledJob, sessions: SessionFactory, owner: str) -> None:
    try:
        with writing(sessions) as session:
            turn = take_turn(session, name=job.name, seconds=job.seconds, owner=owner)
    except SQLAlchemyError as exc:
        # The database is away: the job could not run anyway; the next round asks again.
        logger.error(
            "scheduled job not started: database error",
            extra={"scheduled_job": job.name, "error": str(exc)},
        )
        return
    if not turn:
        logger.debug("scheduled job ran elsewhere", extra={"scheduled_job": job.name})
        return
    summary = job.function(sessions)
    logger.info("scheduled job ran", extra={"scheduled_job": job.name, "summary": summary})


def start_scheduler(jobs: Sequence[ScheduledJob], sessions: SessionFactory) -> BackgroundScheduler:
    """Start a background scheduler running each job at its interval (one at a time each)."""
    owner = f"{socket.gethostname()}:{os.getpid()}:scheduler"
    scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(2)}, timezone=UTC)
    for job in jobs:
        scheduler.add_job(
            _run_logged,
            "interval",
            seconds=job.seconds,
            args=(job, sessions, owner),
            id=job.name,
            max_instances=1,
            coalesce=True,
        )
    scheduler.start()
    logger.info("scheduler started", extra={"jobs": {j.name: j.seconds for j in jobs}})
    return scheduler
