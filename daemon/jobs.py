"""Scheduled maintenance jobs: plain functions, listed in one registry with their interval.

Each job takes the process's session factory and returns a small dict that the
scheduler logs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from daemon.db import repo
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
    ]
