"""Data shaped for pages and the API: worklist rows, labels, durations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated
from urllib.parse import quote

from fastapi import Path

from daemon.db.models import FeedbackLabel, utcnow
from daemon.db.session import Session
from daemon.web.context import WebContext
from daemon.worklist import (
    WorklistItem,
    next_open_after,
    order_worklist,
    placement_reasons,
    study_entries,
    worklist,
)

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

    ``band`` is the band of the study's score (None when it stands as not assessed, with
    no score shown: ``not_assessed`` with the reason and its sentence); ``reasons`` say
    why it stands where it does (see :func:`daemon.worklist.placement_reasons`): an
    overdue study with a low score keeps its low band and is badged overdue.
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
    reasons: tuple[str, ...] = ()
    viewer_url: str | None = None  # the study in the site's PACS viewer, when configured


def viewer_url(
    template: str, *, study_instance_uid: str, accession_number: str | None = None
) -> str | None:
    """The site's viewer link for a study (values URL-quoted); None without a template, or
    when the template names an accession number the study does not have."""
    if not template:
        return None
    if "{accession_number}" in template and not accession_number:
        return None
    return template.format(
        study_instance_uid=quote(study_instance_uid, safe=""),
        accession_number=quote(accession_number or "", safe=""),
    )


def _items(
    session: Session, ctx: WebContext, now: datetime
) -> tuple[list[WorklistItem], list[str]]:
    bands = ctx.serving.current(session).bands
    names = [name for name, _ in bands.cutoffs]
    items = worklist(
        session,
        bands,
        max_wait=timedelta(minutes=ctx.settings.worklist.max_wait_minutes),
        now=now,
    )
    return items, names


@dataclass(frozen=True)
class StudyPlace:
    """Whether a study is open, the band of its score and why it stands where it does."""

    open: bool
    band: str | None
    reasons: tuple[str, ...]


def study_place(
    session: Session, ctx: WebContext, study_instance_uid: str, *, now: datetime | None = None
) -> StudyPlace:
    """The study's own flags in the reading order (its entry alone: no whole worklist)."""
    bands = ctx.serving.current(session).bands
    entries = study_entries(session, study_instance_uid=study_instance_uid)
    items = order_worklist(
        entries,
        bands,
        now=now or utcnow(),
        max_wait=timedelta(minutes=ctx.settings.worklist.max_wait_minutes),
    )
    if not items:
        return StudyPlace(open=False, band=None, reasons=())
    mine = items[0]
    return StudyPlace(
        open=True,
        band=None if mine.not_assessed else mine.entry.band,
        reasons=placement_reasons(mine, bands.cutoffs[0][0]),
    )


def next_study(
    session: Session, ctx: WebContext, study_instance_uid: str, *, now: datetime | None = None
) -> str | None:
    """The open study to read after this one, in the current reading order."""
    items, _ = _items(session, ctx, now or utcnow())
    return next_open_after(items, study_instance_uid)


def worklist_rows(
    session: Session, ctx: WebContext, *, now: datetime | None = None
) -> list[WorklistRow]:
    """The open studies in reading order, ready to show."""
    items, names = _items(session, ctx, now or utcnow())
    template = ctx.settings.web.viewer_url_template
    return [_row(index, item, names, template) for index, item in enumerate(items, start=1)]


def _row(position: int, item: WorklistItem, names: list[str], template: str) -> WorklistRow:
    # A study standing as not assessed shows no score, even that of another image.
    score = None if item.not_assessed else item.entry.score
    band = None if item.not_assessed else item.entry.band
    unjudged = item.entry.not_assessed
    return WorklistRow(
        position=position,
        study_instance_uid=item.entry.study_instance_uid,
        band=band,
        band_rank=names.index(band) if band in names else len(names) - 1,
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
        reasons=placement_reasons(item, names[0]),
        viewer_url=viewer_url(template, study_instance_uid=item.entry.study_instance_uid),
    )
