"""Data shaped for pages and the API: worklist rows, labels, durations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Path

from daemon.db.models import FeedbackLabel, utcnow
from daemon.db.session import Session
from daemon.web.context import WebContext
from daemon.worklist import WorklistItem, worklist

# A database id in a path: bounded, so a huge number is a 422, not an overflow.
Id = Annotated[int, Path(ge=1, le=2**62)]

LABEL_TEXT = {
    FeedbackLabel.PNEUMONIA: "Pneumonia confirmed",
    FeedbackLabel.NO_PNEUMONIA: "No pneumonia",
    FeedbackLabel.INDETERMINATE: "Indeterminate",
}


def waited(delta: timedelta) -> str:
    """A waiting time as a reader says it: 45 s, 12 min, 3 h 05 min, 2 d 4 h."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


@dataclass(frozen=True)
class WorklistRow:
    """One worklist line as shown.

    A study placed as not assessed has no band (unless overdue or raised by its
    sender) and shows no score: ``not_assessed`` with the reason and its sentence.
    """

    position: int
    study_instance_uid: str
    band: str | None
    band_rank: int  # 0 is the top band; the page colours by it
    score: float | None  # None when the study stands as not assessed
    threshold: float
    above_threshold: bool | None
    arrived_at: datetime
    waiting: str
    waiting_seconds: int
    overdue: bool
    raised_by_sender: bool
    images: int
    model_version: str
    calibration_version: int
    not_assessed: bool = False
    not_assessed_reason: str | None = None
    not_assessed_detail: str | None = None
    not_assessed_images: int = 0  # images of the study ChestAid could not assess


def worklist_rows(
    session: Session, ctx: WebContext, *, now: datetime | None = None
) -> list[WorklistRow]:
    """The open studies in reading order, ready to show."""
    now = now or utcnow()
    bands = ctx.serving.current(session).bands
    names = [name for name, _ in bands.cutoffs]
    items = worklist(
        session,
        bands,
        max_wait=timedelta(minutes=ctx.settings.worklist.max_wait_minutes),
        now=now,
    )
    return [_row(index, item, names) for index, item in enumerate(items, start=1)]


def _row(position: int, item: WorklistItem, names: list[str]) -> WorklistRow:
    # A study standing as not assessed shows no score, even that of another image.
    score = None if item.not_assessed else item.entry.score
    unjudged = item.entry.not_assessed
    return WorklistRow(
        position=position,
        study_instance_uid=item.entry.study_instance_uid,
        band=item.band,
        band_rank=names.index(item.band) if item.band in names else len(names) - 1,
        score=score,
        threshold=item.entry.threshold,
        above_threshold=None if score is None else score >= item.entry.threshold,
        arrived_at=item.entry.arrived_at,
        waiting=waited(item.waiting),
        waiting_seconds=int(item.waiting.total_seconds()),
        overdue=item.overdue,
        raised_by_sender=item.raised_by_sender,
        images=item.entry.images,
        model_version=item.entry.model_version,
        calibration_version=item.entry.calibration_version,
        not_assessed=item.not_assessed,
        not_assessed_reason=unjudged.reason if unjudged else None,
        not_assessed_detail=unjudged.detail if unjudged else None,
        not_assessed_images=unjudged.count if unjudged else 0,
    )
