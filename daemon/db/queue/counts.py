"""How many jobs and deliveries are in each state (the queue report, the dashboard)."""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from daemon.db.models import Delivery, DeliveryState, Job, JobState


def _state_counts(
    session: Session, column: InstrumentedAttribute[Any], states: type[enum.StrEnum]
) -> dict[str, int]:
    rows = session.execute(select(column, func.count()).group_by(column)).all()
    counts = {state.value: 0 for state in states}
    counts.update({states(state).value: int(n) for state, n in rows})
    return counts


def job_counts(session: Session) -> dict[str, int]:
    """How many jobs are in each state."""
    return _state_counts(session, Job.state, JobState)


def delivery_counts(session: Session) -> dict[str, int]:
    """How many deliveries are in each state."""
    return _state_counts(session, Delivery.state, DeliveryState)
