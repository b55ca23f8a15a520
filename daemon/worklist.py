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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.db.models import Instance, Job, JobState, Result, StudyRead, utcnow
from daemon.priority import PriorityBands

PRIORITY_ORDER = {"HIGH": 0, "MEDIUM": 1, "LOW": 2}
# Where a not-assessed study stands among the bands (0 is the top band, 1 the next).
NOT_ASSESSED_RANK = 0.5


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
    ranks = []
    if entry.band is not None:
        ranks.append(float(names.index(entry.band) if entry.band in names else len(names) - 1))
    if entry.not_assessed is not None or entry.band is None:
        ranks.append(NOT_ASSESSED_RANK)
    return min(ranks)


def study_entries(
    session: Session, *, open_only: bool = True, study_instance_uid: str | None = None
) -> list[StudyEntry]:
    """Every study with a scored image (only the unread ones by default, or one study)."""
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
        query = query.where(Instance.study_instance_uid.not_in(read))
    studies: dict[str, list[tuple[Instance, Result]]] = {}
    for instance, result in session.execute(query).all():
        studies.setdefault(instance.study_instance_uid, []).append((instance, result))
    entries = []
    for uid, rows in studies.items():
        assessed = [result for _, result in rows if result.assessable]
        unjudged = sorted(
            ((i.received_at, r.id, r) for i, r in rows if not r.assessable),
            key=lambda item: (item[0], item[1]),
        )
        best = max(assessed, key=lambda r: (r.score, r.logit)) if assessed else None
        lead = best if best is not None else unjudged[0][2]
        first = unjudged[0][2] if unjudged else None
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
                    count=len(unjudged),
                ),
                arrived_at=min(i.received_at for i, _ in rows),
                requested_priority=min(
                    (i.requested_priority for i, _ in rows),
                    key=lambda p: PRIORITY_ORDER.get(p, 1),
                ),
                images=len(rows),
                model_version=lead.model_version,
                calibration_version=lead.calibration_version,
            )
        )
    return entries


def worklist(
    session: Session, bands: PriorityBands, *, max_wait: timedelta, now: datetime | None = None
) -> list[WorklistItem]:
    """The open studies in reading order."""
    return order_worklist(study_entries(session), bands, now=now or utcnow(), max_wait=max_wait)


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


def next_open_after(items: Sequence[WorklistItem], study_instance_uid: str) -> str | None:
    """The study to read after this one: the next open study in reading order, or the
    first open one when this study is no longer open (just read); None at the end."""
    uids = [item.entry.study_instance_uid for item in items]
    if study_instance_uid not in uids:
        return uids[0] if uids else None
    position = uids.index(study_instance_uid)
    return uids[position + 1] if position + 1 < len(uids) else None
