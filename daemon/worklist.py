"""The reading worklist: open studies, most urgent first, and nobody starved.

A study is open from its first scored image until it is read (feedback given, or
marked read). Its place is decided by, in order:

1. overdue first: a study waiting longer than ``max_wait`` goes to the top, oldest
   first, whatever its score (simulations of AI-prioritised worklists found routine
   studies starved without such a cap);
2. its priority band, never lower than the sender asked for (a C-STORE sent with
   HIGH priority is at least in the top band); a study ChestAid could not assess
   stands between the top band and the next (see below);
3. the calibrated score, then the raw logit (this model's scores saturate near 0 and
   1, where the logit still orders them), then arrival (not-assessed studies, which
   have no score, by arrival alone, after the scored ones of their rank).

Not assessed: an image that is not a judgeable frontal chest radiograph has no band
and no meaningful score, and must be looked at by a person, so it is never left among
the routine studies: it stands after overdue studies and the top band (URGENT: a
flagged study is the likelier emergency) and before every other band. A study is
placed like the highest of its frontal images, with "not assessed" ranked there: a
study with an URGENT image stays URGENT (its reader sees the other image too), but a
study whose assessable images are all below the top band stands as not assessed,
because one of its images was not judged at all.

The open list is read from the study table (:mod:`daemon.db.studies`), where each
study's rank, score and logit are kept up to date as its images are scored. Only
overdue-ness depends on the clock, so a page is two indexed queries: the overdue
studies by arrival, then the others by rank, score, logit and arrival.

A study leaves the open list when it is read here, when it is reported read elsewhere
(:func:`daemon.closing.close_study`), or, where the site chose so, when it has been
open longer than ``worklist.close_after_hours`` (cut at query time and closed by a
scheduled job); a closed study keeps why and when it left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import ColumnElement, func, select, true
from sqlalchemy.orm import Session

from daemon.db import studies
from daemon.db.models import Instance, Job, JobState, Result, Study, StudyRead, utcnow
from daemon.db.studies import NOT_ASSESSED_RANK as NOT_ASSESSED_RANK
from daemon.db.studies import PRIORITY_ORDER as PRIORITY_ORDER
from daemon.db.studies import StudyIdentity, summarise_images
from daemon.errors import DaemonError
from daemon.priority import PriorityBands

# The band filter's value for the studies placed as not assessed.
NOT_ASSESSED_BAND = "NOT_ASSESSED"
MAX_PAGE_ROWS = 500


@dataclass(frozen=True)
class NotAssessedImages:
    """The images of a study ChestAid could not assess: the first one's reason, and how many."""

    reason: str  # a stable code of chestaid.assessment
    detail: str  # its sentence for people
    result_id: int
    count: int


@dataclass(frozen=True)
class StudyEntry:
    """A study's scored images, summed up: its highest score decides its place.

    ``score``, ``logit`` and ``band`` are those of its highest-scored assessable
    image, and None when none of its images was assessable; ``not_assessed`` says
    whether (and why) some were not.
    """

    study_instance_uid: str
    score: float | None
    logit: float | None
    threshold: float
    band: str | None
    result_id: int  # the study's prediction: its best assessable image, else a not-assessed one
    arrived_at: datetime
    requested_priority: str
    images: int
    model_version: str
    calibration_version: int
    not_assessed: NotAssessedImages | None = None
    identity: StudyIdentity = field(default_factory=StudyIdentity)


@dataclass(frozen=True)
class WorklistItem:
    """A study on the worklist, where it stands and why."""

    entry: StudyEntry
    band: str | None  # after the sender's floor and promotion; None: placed as not assessed
    overdue: bool
    raised_by_sender: bool
    waiting: timedelta
    not_assessed: bool = False  # placed by an image ChestAid could not assess


def order_worklist(
    entries: Sequence[StudyEntry],
    bands: PriorityBands,
    *,
    now: datetime,
    max_wait: timedelta,
) -> list[WorklistItem]:
    """Order open studies for reading (pure: no database, no clock)."""
    names = [name for name, _ in bands.cutoffs]
    top = names[0]
    items = []
    for entry in entries:
        rank = _rank(entry, names)
        not_assessed = rank == NOT_ASSESSED_RANK
        raised = entry.requested_priority == "HIGH" and rank > 0
        if raised:
            rank = 0
        waiting = now - entry.arrived_at
        overdue = waiting > max_wait
        if overdue or raised:
            band: str | None = top
        else:
            band = None if not_assessed else names[int(rank)]
        unscored = not_assessed or entry.score is None
        items.append(
            (
                (
                    0 if overdue else 1,
                    entry.arrived_at if overdue else datetime.min.replace(tzinfo=now.tzinfo),
                    rank,
                    # Scored studies by score and logit; not-assessed ones after them, by arrival.
                    1 if unscored else 0,
                    0.0 if unscored else -(entry.score or 0.0),
                    0.0 if unscored else -(entry.logit or 0.0),
                    entry.arrived_at,
                ),
                WorklistItem(
                    entry=entry,
                    band=band,
                    overdue=overdue,
                    raised_by_sender=raised,
                    waiting=waiting,
                    not_assessed=not_assessed,
                ),
            )
        )
    items.sort(key=lambda pair: pair[0])
    return [item for _, item in items]


def _rank(entry: StudyEntry, names: Sequence[str]) -> float:
    """The study's rank among the bands (0 the top), not-assessed images counted at
    :data:`NOT_ASSESSED_RANK`: the highest of its images decides."""
    return studies.study_rank(entry.band, entry.not_assessed is not None, names)


def study_entries(
    session: Session, *, open_only: bool = True, study_instance_uid: str | None = None
) -> list[StudyEntry]:
    """Every study with a scored image (only the open ones by default, or one study),
    summed up from its images (the worklist itself reads the study table)."""
    query = (
        select(Instance, Result)
        .join(Job, Job.instance_id == Instance.id)
        .join(Result, Result.job_id == Job.id)
        .where(Job.state == JobState.DONE)
    )
    if study_instance_uid is not None:
        query = query.where(Instance.study_instance_uid == study_instance_uid)
    if open_only:
        read = select(StudyRead.study_instance_uid)
        closed = select(Study.study_instance_uid).where(Study.closed_at.is_not(None))
        query = query.where(
            Instance.study_instance_uid.not_in(read), Instance.study_instance_uid.not_in(closed)
        )
    studies: dict[str, list[tuple[Instance, Result]]] = {}
    for instance, result in session.execute(query).all():
        studies.setdefault(instance.study_instance_uid, []).append((instance, result))
    entries = []
    for uid, rows in studies.items():
        summary = summarise_images(rows)
        best, lead, first = summary.best, summary.lead, summary.first_unjudged
        entries.append(
            StudyEntry(
                study_instance_uid=uid,
                score=best.score if best is not None else None,
                logit=best.logit if best is not None else None,
                threshold=lead.threshold,
                band=best.priority if best is not None else None,
                result_id=lead.id,
                not_assessed=None
                if first is None
                else NotAssessedImages(
                    reason=first.not_assessable_reason or "",
                    detail=first.not_assessable_detail or "",
                    result_id=first.id,
                    count=summary.unjudged,
                ),
                arrived_at=summary.arrived_at,
                requested_priority=summary.requested_priority,
                images=summary.images,
                model_version=lead.model_version,
                calibration_version=lead.calibration_version,
            )
        )
    return entries


# The two orders of the list, each served by an index of the study table: overdue
# studies by arrival, the others by rank, score, logit and arrival.
OVERDUE_ORDER = (
    Study.arrived_at,
    Study.band_rank,
    Study.unscored,
    Study.order_score,
    Study.order_logit,
    Study.id,
)
RANKED_ORDER = (
    Study.band_rank,
    Study.unscored,
    Study.order_score,
    Study.order_logit,
    Study.arrived_at,
    Study.id,
)


class WorklistQueryError(DaemonError):
    """A worklist filter or page that cannot be served (a clear message, never a 500)."""


@dataclass(frozen=True)
class WorklistFilters:
    """What a reader narrows the open list to; every field is optional.

    ``band`` is a band's name (studies standing in it by score, after the sender's
    floor; an overdue study is matched by this band too, not the top one it is shown
    in) or :data:`NOT_ASSESSED_BAND`; ``waiting_minutes`` keeps the studies waiting longer;
    ``search`` matches the accession number or the patient ID, exactly or as a prefix.
    """

    band: str | None = None
    waiting_minutes: float | None = None
    modality: str | None = None
    study_date_from: date | None = None
    study_date_to: date | None = None
    search: str | None = None

    def active(self) -> bool:
        """Whether any filter is set."""
        return any(getattr(self, name) not in (None, "") for name in self.__dataclass_fields__)


@dataclass(frozen=True)
class WorklistPage:
    """One page of the open list in reading order, with how many there are in all."""

    items: list[WorklistItem]
    total: int  # studies matching the filters
    offset: int
    limit: int


def _conditions(
    filters: WorklistFilters, names: Sequence[str], *, now: datetime, open_since: datetime | None
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [Study.listed == true()]
    if open_since is not None:
        conditions.append(Study.arrived_at >= open_since)
    if filters.band:
        if filters.band == NOT_ASSESSED_BAND:
            conditions.append(Study.band_rank == NOT_ASSESSED_RANK)
        elif filters.band in names:
            conditions.append(Study.band_rank == float(names.index(filters.band)))
        else:
            raise WorklistQueryError(
                f"band must be one of {', '.join([*names, NOT_ASSESSED_BAND])}"
            )
    if filters.waiting_minutes is not None:
        if not 0 <= filters.waiting_minutes <= 10_000_000:
            raise WorklistQueryError("waiting must be between 0 and 10000000 minutes")
        conditions.append(Study.arrived_at < now - timedelta(minutes=filters.waiting_minutes))
    if filters.modality:
        conditions.append(Study.modality == filters.modality.strip().upper())
    if filters.study_date_from is not None:
        conditions.append(Study.study_date >= filters.study_date_from.strftime("%Y%m%d"))
    if filters.study_date_to is not None:
        conditions.append(Study.study_date <= filters.study_date_to.strftime("%Y%m%d"))
    return conditions


# A search matching at most this many studies is narrowed to their ids first.
SEARCH_NARROWING = 2000


def _search(session: Session, text: str | None) -> ColumnElement[bool] | None:
    """The search's condition: accession number or patient ID, exact or as a prefix.

    Each column is searched alone on its index (a range: bound parameters, no LIKE
    pattern), and the list is then narrowed to the studies found; so few matches among
    many open studies cost two index lookups, not a scan of the open list.
    """
    search = (text or "").strip()
    if not search:
        return None
    end = search + "\U0010ffff"
    by_accession = (Study.accession_number >= search) & (Study.accession_number < end)
    by_patient = (Study.patient_id >= search) & (Study.patient_id < end)
    found: set[int] = set()
    for condition in (by_accession, by_patient):
        found.update(session.scalars(select(Study.id).where(condition).limit(SEARCH_NARROWING + 1)))
        if len(found) > SEARCH_NARROWING:
            return by_accession | by_patient
    return Study.id.in_(sorted(found))


def worklist_page(
    session: Session,
    bands: PriorityBands,
    *,
    max_wait: timedelta,
    filters: WorklistFilters | None = None,
    offset: int = 0,
    limit: int = 50,
    close_after: timedelta | None = None,
    now: datetime | None = None,
) -> WorklistPage:
    """One page of the open studies in reading order, and their number.

    Two indexed queries stand for :func:`order_worklist`: the overdue studies, oldest
    first, then the others by rank, score, logit and arrival.

    Args:
        close_after: studies open longer than this are left out (the site's rule),
            whether or not the scheduled job has closed them yet.

    Raises:
        WorklistQueryError: a band the site does not have, a page out of bounds, or a
            waiting time out of range.
    """
    if not 1 <= limit <= MAX_PAGE_ROWS:
        raise WorklistQueryError(f"a page holds 1 to {MAX_PAGE_ROWS} rows")
    if not 0 <= offset <= 10_000_000:
        raise WorklistQueryError("the offset must be between 0 and 10000000")
    now = now or utcnow()
    names = [name for name, _ in bands.cutoffs]
    open_since = None if close_after is None else now - close_after
    filters = filters or WorklistFilters()
    base = _conditions(filters, names, now=now, open_since=open_since)
    search = _search(session, filters.search)
    if search is not None:
        base.append(search)
    cutoff = now - max_wait
    overdue = Study.arrived_at < cutoff
    fresh = Study.arrived_at >= cutoff
    n_overdue = session.scalar(select(func.count()).select_from(Study).where(*base, overdue)) or 0
    n_fresh = session.scalar(select(func.count()).select_from(Study).where(*base, fresh)) or 0
    # The page's ids first (read from the indexes alone, however deep the page), then
    # its rows.
    ids: list[int] = []
    if offset < n_overdue:
        ids += session.scalars(
            select(Study.id)
            .where(*base, overdue)
            .order_by(*OVERDUE_ORDER)
            .offset(offset)
            .limit(limit)
        ).all()
    if len(ids) < limit:
        ids += session.scalars(
            select(Study.id)
            .where(*base, fresh)
            .order_by(*RANKED_ORDER)
            .offset(max(0, offset - n_overdue))
            .limit(limit - len(ids))
        ).all()
    found = {row.id: row for row in session.scalars(select(Study).where(Study.id.in_(ids)))}
    rows = [found[i] for i in ids]
    items = [item_of(row, names, now=now, max_wait=max_wait) for row in rows]
    return WorklistPage(items=items, total=n_overdue + n_fresh, offset=offset, limit=limit)


def entry_of(study: Study) -> StudyEntry:
    """A study row as the worklist's entry."""
    return StudyEntry(
        study_instance_uid=study.study_instance_uid,
        score=study.score,
        logit=study.logit,
        threshold=study.threshold if study.threshold is not None else 0.0,
        band=study.band,
        result_id=study.result_id or 0,
        arrived_at=study.arrived_at,
        requested_priority=study.requested_priority,
        images=study.images,
        model_version=study.model_version or "",
        calibration_version=study.calibration_version or 0,
        not_assessed=None
        if not study.not_assessed_count
        else NotAssessedImages(
            reason=study.not_assessed_reason or "",
            detail=study.not_assessed_detail or "",
            result_id=study.not_assessed_result_id or 0,
            count=study.not_assessed_count,
        ),
        identity=StudyIdentity(**{name: getattr(study, name) for name in _IDENTITY_FIELDS}),
    )


_IDENTITY_FIELDS = tuple(StudyIdentity.__dataclass_fields__)


def item_of(
    study: Study, names: Sequence[str], *, now: datetime, max_wait: timedelta
) -> WorklistItem:
    """Where a listed study stands, as :func:`order_worklist` says it."""
    waiting = now - study.arrived_at
    overdue = waiting > max_wait
    if overdue or study.raised_by_sender:
        band: str | None = names[0]
    elif study.not_assessed:
        band = None
    else:
        rank = int(study.band_rank)
        band = names[rank] if rank < len(names) else names[-1]
    return WorklistItem(
        entry=entry_of(study),
        band=band,
        overdue=overdue,
        raised_by_sender=study.raised_by_sender,
        waiting=waiting,
        not_assessed=study.not_assessed,
    )


def worklist(
    session: Session,
    bands: PriorityBands,
    *,
    max_wait: timedelta,
    now: datetime | None = None,
    close_after: timedelta | None = None,
) -> list[WorklistItem]:
    """Every open study in reading order (pages of :func:`worklist_page`, for the CLI)."""
    items: list[WorklistItem] = []
    while True:
        page = worklist_page(
            session,
            bands,
            max_wait=max_wait,
            offset=len(items),
            limit=MAX_PAGE_ROWS,
            close_after=close_after,
            now=now,
        )
        items += page.items
        if not page.items or len(items) >= page.total:
            return items
