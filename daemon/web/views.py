"""Data shaped for pages and the API: worklist rows, labels, durations."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import Path

from daemon import placement
from daemon.db.models import FeedbackLabel, utcnow
from daemon.db.session import Session
from daemon.web.context import WebContext
from daemon.worklist import (
    NOT_ASSESSED_BAND,
    WorklistFilters,
    WorklistItem,
    WorklistQueryError,
    worklist_page,
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
    # Identifying fields from the header (empty for studies received before they were
    # kept, or past retention); shown to signed-in users only, never logged.
    patient_name: str | None = None
    patient_id: str | None = None
    accession_number: str | None = None
    study_date: str | None = None  # YYYY-MM-DD
    study_time: str | None = None  # HH:MM
    patient_age: str | None = None
    patient_sex: str | None = None
    study_description: str | None = None
    modality: str | None = None

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


@dataclass(frozen=True)
class WorklistView:
    """One page of the worklist: its rows, the total and where the page is."""

    rows: list[WorklistRow]
    total: int
    offset: int
    limit: int
    filters: WorklistFilters = field(default_factory=WorklistFilters)
    query: dict[str, str] = field(default_factory=dict)  # the filters as URL parameters

    @property
    def first(self) -> int:
        """The first row's position (0 when the page is empty)."""
        return self.offset + 1 if self.rows else 0

    @property
    def last(self) -> int:
        """The last row's position."""
        return self.offset + len(self.rows)

    @property
    def page(self) -> int:
        """The page's number, from 1."""
        return self.offset // self.limit + 1

    @property
    def pages(self) -> int:
        """How many pages there are (at least 1)."""
        return max(1, -(-self.total // self.limit))

    def link(self, page: int) -> str:
        """The query string of another page with the same filters."""
        return "?" + urlencode({**self.query, "page": str(page)})


def parse_filters(
    *,
    band: str | None = None,
    waiting: str | None = None,
    modality: str | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    q: str | None = None,
) -> WorklistFilters:
    """The worklist's filters from request parameters (a GET form leaves empty ones).

    Raises:
        WorklistQueryError: a value that cannot be read, saying which and how.
    """

    def text(value: str | None, limit: int) -> str | None:
        value = (value or "").strip()
        if len(value) > limit:
            raise WorklistQueryError(f"a filter is longer than {limit} characters")
        return value or None

    def day(value: str | None, name: str) -> date | None:
        value = text(value, 10)
        if value is None:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError as exc:
            raise WorklistQueryError(f"{name} must be a date (YYYY-MM-DD)") from exc

    minutes = text(waiting, 8)
    if minutes is not None and not minutes.isdigit():
        raise WorklistQueryError("waiting must be a whole number of minutes")
    return WorklistFilters(
        band=(text(band, 16) or "").upper() or None,
        waiting_minutes=None if minutes is None else float(minutes),
        modality=text(modality, 16),
        study_date_from=day(date_from, "from"),
        study_date_to=day(date_to, "to"),
        search=text(q, 64),
    )


def filter_query(filters: WorklistFilters) -> dict[str, str]:
    """The filters as URL parameters (the form's names), empty ones left out."""
    values = {
        "band": filters.band,
        "waiting": None if filters.waiting_minutes is None else str(int(filters.waiting_minutes)),
        "modality": filters.modality,
        "from": None if filters.study_date_from is None else filters.study_date_from.isoformat(),
        "to": None if filters.study_date_to is None else filters.study_date_to.isoformat(),
        "q": filters.search,
    }
    return {key: value for key, value in values.items() if value}


def worklist_view(
    session: Session,
    ctx: WebContext,
    *,
    filters: WorklistFilters | None = None,
    offset: int = 0,
    limit: int | None = None,
    now: datetime | None = None,
) -> WorklistView:
    """A page of the open studies in reading order, ready to show.

    Raises:
        WorklistQueryError: a filter or page out of bounds.
    """
    now = now or utcnow()
    filters = filters or WorklistFilters()
    limit = limit or ctx.settings.web.worklist_rows
    bands = ctx.serving.current(session).bands
    names = [name for name, _ in bands.cutoffs]
    hours = ctx.settings.worklist.close_after_hours
    page = worklist_page(
        session,
        bands,
        max_wait=timedelta(minutes=ctx.settings.worklist.max_wait_minutes),
        filters=filters,
        offset=offset,
        limit=limit,
        close_after=timedelta(hours=hours) if hours > 0 else None,
        now=now,
    )
    template = ctx.settings.web.viewer_url_template
    rows = [
        _row(index, item, names, template)
        for index, item in enumerate(page.items, start=offset + 1)
    ]
    return WorklistView(
        rows=rows,
        total=page.total,
        offset=offset,
        limit=limit,
        filters=filters,
        query=filter_query(filters),
    )


def band_choices(ctx: WebContext, session: Session) -> list[str]:
    """The band filter's choices: the site's bands and "not assessed"."""
    return [name for name, _ in ctx.serving.current(session).bands.cutoffs] + [NOT_ASSESSED_BAND]


def _day(value: str | None) -> str | None:
    """A DICOM date (YYYYMMDD) as YYYY-MM-DD; anything else as it came."""
    if value and len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value


def _time(value: str | None) -> str | None:
    """A DICOM time (HHMMSS.FFFFFF) as HH:MM; anything else as it came."""
    if value and len(value) >= 4 and value[:4].isdigit():
        return f"{value[:2]}:{value[2:4]}"
    return value


@dataclass(frozen=True)
class StudyPlace:
    """Whether a study is open, the band of its score, why it stands where it does, and
    its accession number (for the viewer link)."""

    open: bool
    band: str | None
    reasons: tuple[str, ...]
    accession_number: str | None = None


def _close_after(ctx: WebContext) -> timedelta | None:
    hours = ctx.settings.worklist.close_after_hours
    return timedelta(hours=hours) if hours > 0 else None


def study_place(
    session: Session, ctx: WebContext, study_instance_uid: str, *, now: datetime | None = None
) -> StudyPlace:
    """The study's own flags in the reading order (its study row alone: no worklist)."""
    bands = ctx.serving.current(session).bands
    study, mine = placement.study_item(
        session,
        bands,
        study_instance_uid,
        max_wait=timedelta(minutes=ctx.settings.worklist.max_wait_minutes),
        close_after=_close_after(ctx),
        now=now,
    )
    accession = None if study is None else study.accession_number
    if mine is None:
        return StudyPlace(open=False, band=None, reasons=(), accession_number=accession)
    return StudyPlace(
        open=True,
        band=None if mine.not_assessed else mine.entry.band,
        reasons=placement.placement_reasons(mine, bands.cutoffs[0][0]),
        accession_number=accession,
    )


def next_study(
    session: Session, ctx: WebContext, study_instance_uid: str, *, now: datetime | None = None
) -> str | None:
    """The open study to read after this one, in the worklist's order (the first open
    one when this one is no longer open)."""
    return placement.next_after(
        session,
        ctx.serving.current(session).bands,
        study_instance_uid,
        max_wait=timedelta(minutes=ctx.settings.worklist.max_wait_minutes),
        close_after=_close_after(ctx),
        now=now,
    )


def _row(position: int, item: WorklistItem, names: list[str], template: str) -> WorklistRow:
    # A study standing as not assessed shows no score, even that of another image.
    score = None if item.not_assessed else item.entry.score
    band = None if item.not_assessed else item.entry.band
    unjudged = item.entry.not_assessed
    identity = item.entry.identity
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
        patient_name=_person(identity.patient_name),
        patient_id=identity.patient_id,
        accession_number=identity.accession_number,
        study_date=_day(identity.study_date),
        study_time=_time(identity.study_time),
        patient_age=identity.patient_age,
        patient_sex=identity.patient_sex,
        study_description=identity.study_description,
        modality=identity.modality,
        reasons=placement.placement_reasons(item, names[0]),
        viewer_url=viewer_url(
            template,
            study_instance_uid=item.entry.study_instance_uid,
            accession_number=identity.accession_number,
        ),
    )


def _person(value: str | None) -> str | None:
    """A DICOM person name (Family^Given^Middle^Prefix^Suffix) as "Family, Given Middle"."""
    if not value:
        return value
    parts = [p.strip() for p in value.split("=")[0].split("^")]
    family, given = parts[0], " ".join(p for p in parts[1:3] if p)
    return f"{family}, {given}" if family and given else family or given or value
