"""Scheduled maintenance jobs: plain functions, listed in one registry with their interval.

Each job takes the process's session factory and returns a small dict that the
scheduler logs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from daemon import accounts, closing
from daemon.db import queue
from daemon.db.models import utcnow
from daemon.db.session import SessionFactory, reading, writing
from daemon.monitoring import evaluate_windows, send_alerts, store_runs
from daemon.retention import blank_old_identities, purge_old_files
from daemon.serving import Serving
from daemon.settings import Settings
from daemon.spool import FileStore

JobFunction = Callable[[SessionFactory], dict[str, Any]]


def queue_report(sessions: SessionFactory) -> dict[str, Any]:
    """How many jobs and deliveries are in each state."""
    with reading(sessions) as session:
        return {
            "jobs": queue.job_counts(session),
            "deliveries": queue.delivery_counts(session),
        }


def monitor(sessions: SessionFactory, *, settings: Settings, serving: Serving) -> dict[str, Any]:
    """Figures over the rolling windows for the model in service; alerts.

    The target sensitivity is the one in use now: a local calibration's when active.
    """
    served = serving.current()
    now = utcnow()
    # The figures are computed while reading (no lock); the write lock is held only to
    # store them, and released before any webhook is called.
    with reading(sessions) as session:
        results = evaluate_windows(
            session,
            settings=settings.monitoring,
            model_version=served.model_version,
            target_sensitivity=served.target_sensitivity,
            now=now,
        )
    with writing(sessions) as session:
        summary = store_runs(session, results, model_version=served.model_version, now=now)
    # After the commit: a slow or unreachable webhook must not hold the database.
    send_alerts(settings.monitoring, summary["raised"])
    return summary


def retention(sessions: SessionFactory, *, settings: Settings) -> dict[str, Any]:
    """Delete old spooled images and outputs and blank their studies' identifying
    fields; the rows stay."""
    days = settings.monitoring.retention_days
    purged = purge_old_files(
        sessions,
        spool=FileStore(settings.storage.spool),
        outbox=FileStore(settings.storage.outbox),
        older_than_days=days,
    )
    return {**purged, **blank_old_identities(sessions, older_than_days=days)}


def close_aged_studies(sessions: SessionFactory, *, settings: Settings) -> dict[str, Any]:
    """Take studies open longer than ``worklist.close_after_hours`` off the worklist."""
    with writing(sessions) as session:
        return closing.close_aged_studies(
            session, older_than=timedelta(hours=settings.worklist.close_after_hours)
        )


def sign_in_housekeeping(sessions: SessionFactory, *, settings: Settings) -> dict[str, Any]:
    """Delete ended web sessions and sign-in attempts older than the rate-limit window."""
    with writing(sessions) as session:
        return accounts.purge_expired(session, settings=settings.web)


@dataclass(frozen=True)
class ScheduledJob:
    """A registry entry: a job function and how often it runs."""

    name: str
    function: JobFunction
    seconds: float


def registry(settings: Settings, serving: Serving) -> list[ScheduledJob]:
    """Every scheduled job of the scheduler role, with its interval from the settings."""
    return [
        ScheduledJob("queue-report", queue_report, settings.scheduler.queue_report_seconds),
        ScheduledJob(
            "monitoring",
            partial(monitor, settings=settings, serving=serving),
            settings.monitoring.interval_minutes * 60,
        ),
        ScheduledJob("retention", partial(retention, settings=settings), 3600.0),
        ScheduledJob(
            "sign-in-housekeeping", partial(sign_in_housekeeping, settings=settings), 3600.0
        ),
    ] + (
        [ScheduledJob("close-aged-studies", partial(close_aged_studies, settings=settings), 300.0)]
        if settings.worklist.close_after_hours > 0
        else []
    )
