"""Where one study stands on the worklist: why (its reasons), its own place read from
its study row, and the open study to read after it.

The reasons say why a study stands where it does, so a reader can tell an urgent score
from a long wait: an overdue study with a low score is badged overdue, not urgent.
The study after this one is found from the study table's two orders (overdue studies
by arrival, then the others by rank, score, logit and arrival), by the indexes, without
building the list.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, bindparam, select, true, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from daemon.db import studies
from daemon.db.models import Study, utcnow
from daemon.priority import PriorityBands
from daemon.worklist import OVERDUE_ORDER, RANKED_ORDER, WorklistItem, item_of

# Why a study stands where it does, as stable codes (the API's ``reasons``).
URGENT_BY_SCORE = "urgent_by_score"
OVERDUE = "overdue"
SENDER_HIGH = "sender_high"
NOT_ASSESSED = "not_assessed"


def placement_reasons(item: WorklistItem, top_band: str) -> tuple[str, ...]:
    """Why the study stands where it does: its score's band is the top one, it waited
    too long, its sender asked for HIGH priority, or an image was not assessed.

    An overdue study with a low score is overdue, not urgent by score: its place comes
    from its wait alone.
    """
    reasons = []
    if not item.not_assessed and item.entry.band == top_band:
        reasons.append(URGENT_BY_SCORE)
    if item.overdue:
        reasons.append(OVERDUE)
    if item.entry.requested_priority == "HIGH":
        reasons.append(SENDER_HIGH)
    if item.not_assessed:
        reasons.append(NOT_ASSESSED)
    return tuple(reasons)


def _listed(study: Study | None, open_since: datetime | None) -> bool:
    return (
        study is not None
        and study.listed
        and (open_since is None or study.arrived_at >= open_since)
    )


def study_item(
    session: Session,
    bands: PriorityBands,
    study_instance_uid: str,
    *,
    max_wait: timedelta,
    close_after: timedelta | None = None,
    now: datetime | None = None,
) -> tuple[Study | None, WorklistItem | None]:
    """The study's row, and its place when it is on the open list (None when it is not)."""
    now = now or utcnow()
    study = studies.find_study(session, study_instance_uid=study_instance_uid)
    if study is None or not _listed(study, None if close_after is None else now - close_after):
        return study, None
    return study, item_of(study, [name for name, _ in bands.cutoffs], now=now, max_wait=max_wait)


def next_after(
    session: Session,
    bands: PriorityBands,
    study_instance_uid: str,
    *,
    max_wait: timedelta,
    close_after: timedelta | None = None,
    now: datetime | None = None,
) -> str | None:
    """The open study to read after this one, in the worklist's order; the first open
    one when this study is not open (just read); None when there is none after it."""
    now = now or utcnow()
    open_since = None if close_after is None else now - close_after
    listed: list[ColumnElement[bool]] = [Study.listed == true()]
    if open_since is not None:
        listed.append(Study.arrived_at >= open_since)
    cutoff = now - max_wait
    overdue, fresh = Study.arrived_at < cutoff, Study.arrived_at >= cutoff
    study = studies.find_study(session, study_instance_uid=study_instance_uid)
    if study is None or not _listed(study, open_since):
        return _first(session, [*listed, overdue], OVERDUE_ORDER) or _first(
            session, [*listed, fresh], RANKED_ORDER
        )
    if study.arrived_at < cutoff:
        later = _after(study, OVERDUE_ORDER)
        return _first(session, [*listed, overdue, later], OVERDUE_ORDER) or _first(
            session, [*listed, fresh], RANKED_ORDER
        )
    return _first(session, [*listed, fresh, _after(study, RANKED_ORDER)], RANKED_ORDER)


def _after(study: Study, order: Sequence[InstrumentedAttribute[Any]]) -> ColumnElement[bool]:
    """Rows after ``study`` in ``order`` (the order ends with the unique id)."""
    mine = [bindparam(None, getattr(study, column.key), type_=column.type) for column in order]
    return tuple_(*order) > tuple_(*mine)


def _first(
    session: Session,
    conditions: Sequence[ColumnElement[bool]],
    order: Sequence[InstrumentedAttribute[Any]],
) -> str | None:
    return session.scalar(
        select(Study.study_instance_uid).where(*conditions).order_by(*order).limit(1)
    )
