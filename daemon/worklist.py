"""The reading worklist: open studies, most urgent first, and nobody starved.

A study is open from its first scored image until it is read (feedback given, or
marked read). Its place is decided by, in order:

1. overdue first: a study waiting longer than ``max_wait`` goes to the top, oldest
   first, whatever its score (simulations of AI-prioritised worklists found routine
   studies starved without such a cap);
2. its priority band, never lower than the sender asked for (a C-STORE sent with
   HIGH priority is at least in the top band);
3. the calibrated score, then the raw logit (this model's scores saturate near 0 and
   1, where the logit still orders them), then arrival.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.db.models import Instance, Job, JobState, Result, StudyRead, utcnow
from daemon.settings import Settings
from daemon.worker import PriorityBands, served_bundle

PRIORITY_ORDER = {"HIGH": 0, "MEDIUM": 1, "LOW": 2}


@dataclass(frozen=True)
class StudyEntry:
    """A study's scored images, summed up: its highest score decides its place."""

    study_instance_uid: str
    score: float
    logit: float
    threshold: float
    band: str
    result_id: int
    arrived_at: datetime
    requested_priority: str
    images: int
    model_version: str
    calibration_version: int


@dataclass(frozen=True)
class WorklistItem:
    """A study on the worklist, where it stands and why."""

    entry: StudyEntry
    band: str  # after the sender's floor and promotion
    overdue: bool
    raised_by_sender: bool
    waiting: timedelta


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
        rank = names.index(entry.band) if entry.band in names else len(names) - 1
        raised = entry.requested_priority == "HIGH" and rank > 0
        if raised:
            rank = 0
        waiting = now - entry.arrived_at
        overdue = waiting > max_wait
        items.append(
            (
                (
                    0 if overdue else 1,
                    entry.arrived_at if overdue else datetime.min.replace(tzinfo=now.tzinfo),
                    rank,
                    -entry.score,
                    -entry.logit,
                    entry.arrived_at,
                ),
                WorklistItem(
                    entry=entry,
                    band=top if overdue else names[rank],
                    overdue=overdue,
                    raised_by_sender=raised,
                    waiting=waiting,
                ),
            )
        )
    items.sort(key=lambda pair: pair[0])
    return [item for _, item in items]


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
        _, best = max(rows, key=lambda row: (row[1].score, row[1].logit))
        entries.append(
            StudyEntry(
                study_instance_uid=uid,
                score=best.score,
                logit=best.logit,
                threshold=best.threshold,
                band=best.priority,
                result_id=best.id,
                arrived_at=min(i.received_at for i, _ in rows),
                requested_priority=min(
                    (i.requested_priority for i, _ in rows),
                    key=lambda p: PRIORITY_ORDER.get(p, 1),
                ),
                images=len(rows),
                model_version=best.model_version,
                calibration_version=best.calibration_version,
            )
        )
    return entries


def configured_bands(settings: Settings) -> PriorityBands:
    """The priority bands on the configured bundle's governed threshold (manifest only).

    Raises:
        BundleError: the manifest cannot be read.
        ConfigurationError: the bundle has no governed threshold.
    """
    return PriorityBands.resolve(settings.priority.bands, served_bundle(settings.model).threshold)


def worklist(
    session: Session, bands: PriorityBands, *, max_wait: timedelta, now: datetime | None = None
) -> list[WorklistItem]:
    """The open studies in reading order."""
    return order_worklist(study_entries(session), bands, now=now or utcnow(), max_wait=max_wait)
