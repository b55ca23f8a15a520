"""The scheduler role: runs the registry of :mod:`daemon.maintenance` on APScheduler."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from daemon.db.session import SessionFactory
from daemon.maintenance import ScheduledJob

logger = logging.getLogger(__name__)


def _run_logged(job: ScheduledJob, sessions: SessionFactory) -> None:
    summary = job.function(sessions)
    logger.info("scheduled job ran", extra={"scheduled_job": job.name, "summary": summary})


def start_scheduler(jobs: Sequence[ScheduledJob], sessions: SessionFactory) -> BackgroundScheduler:
    """Start a background scheduler running each job at its interval (one at a time each)."""
    scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(2)}, timezone=UTC)
    for job in jobs:
        scheduler.add_job(
            _run_logged,
            "interval",
            seconds=job.seconds,
            args=(job, sessions),
            id=job.name,
            max_instances=1,
            coalesce=True,
        )
    scheduler.start()
    logger.info("scheduler started", extra={"jobs": {j.name: j.seconds for j in jobs}})
    return scheduler
