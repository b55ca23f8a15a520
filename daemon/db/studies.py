"""The study table: one row per study, kept up to date as its images are received and
scored, so the worklist reads one indexed table instead of summing images per request.

:func:`note_received` is called in the SCP's transaction (the identifying fields of
the header), :func:`refresh_study` in the worker's (the scored images summed up),
:func:`close_study` / :func:`reopen_study` when a study leaves or comes back to the
list, and :func:`blank_identities` by retention.

Several processes may write one study's row at once (two associations bringing its
first images, two workers scoring two of its images): each takes the row through
:func:`locked_study`, which creates it without a unique-key clash and locks it, so
the second waits for the first and then sums up what the first committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import Row, Select, select, update
from sqlalchemy.orm import Session

from daemon.db.models import IDENTITY_LENGTHS, Instance, Job, JobState, Result, Study, utcnow
from daemon.db.session import insert_ignoring_conflicts

PRIORITY_ORDER = {"HIGH": 0, "MEDIUM": 1, "LOW": 2}
# Where a not-assessed study stands among the bands (0 is the top band, 1 the next).
NOT_ASSESSED_RANK = 0.5
# The band order when the caller gives none: the default bands, highest first.
DEFAULT_BAND_NAMES = ("URGENT", "ROUTINE")


@dataclass(frozen=True)
class StudyIdentity:
    """The identifying fields a worklist shows, as read from a received image's header.

    Build it with :meth:`bounded`, which cuts each value to its column's length.
    """

    patient_name: str | None = None
    patient_id: str | None = None
    accession_number: str | None = None
    study_date: str | None = None
    study_time: str | None = None
    patient_age: str | None = None
    patient_sex: str | None = None
    study_description: str | None = None
    modality: str | None = None

    @classmethod
    def bounded(cls, **values: object) -> StudyIdentity:
        """Each value as text, stripped, cut to its bound, None when empty."""
        kept: dict[str, str | None] = {}
        for name, limit in IDENTITY_LENGTHS.items():
            value = values.get(name)
            text = "" if value is None else str(value).replace("\x00", "").strip()
            kept[name] = text[:limit] or None
        return cls(**kept)

    def values(self) -> dict[str, str | None]:
        """The fields by column name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _locking(study_instance_uid: str) -> Select[Study]:
    """Select the study's row for update, refreshing a copy the session already holds."""
    return (
        select(Study)
        .where(Study.study_instance_uid == study_instance_uid)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def locked_study(
    session: Session, *, study_instance_uid: str, now: datetime, requested_priority: str = "MEDIUM"
) -> Study:
    """The study's row, locked until the transaction ends; created (arrived ``now``, at
    ``requested_priority``) when missing.

    A row another transaction is creating at the same moment is waited for and used,
    not created twice (PostgreSQL: ``INSERT ... ON CONFLICT DO NOTHING``, then ``FOR
    UPDATE``, which reads the row committed meanwhile; SQLite's writers are one at a
    time anyway).
    """
    query = _locking(study_instance_uid)
    study = session.scalar(query)
    if study is not None:
        return study
    insert_ignoring_conflicts(
        session,
        Study,
        Study.study_instance_uid,
        study_instance_uid=study_instance_uid,
        last_received_at=now,
        arrived_at=now,
        requested_priority=requested_priority,
    )
    return session.scalars(query).one()


def note_received(
    session: Session,
    *,
    study_instance_uid: str,
    identity: StudyIdentity | None,
    requested_priority: str,
    now: datetime | None = None,
) -> Study:
    """Create the study's row at its first image, or fill identifying fields it lacks.

    A later image never overwrites a field already kept (the first header wins).
    """
    now = now or utcnow()
    study = locked_study(
        session,
        study_instance_uid=study_instance_uid,
        now=now,
        requested_priority=requested_priority,
    )
    study.last_received_at = max(study.last_received_at, now)
    if identity is not None and study.identity_blanked_at is None:
        for name, value in identity.values().items():
            if value is not None and getattr(study, name) is None:
                setattr(study, name, value)
    session.flush()
    return study


def study_rank(band: str | None, not_assessed: bool, names: Sequence[str]) -> float:
    """A study's rank among the bands (0 the top) from its best band and whether one of
    its images was not assessed (ranked :data:`NOT_ASSESSED_RANK`): the highest wins."""
    ranks = []
    if band is not None:
        ranks.append(float(names.index(band) if band in names else len(names) - 1))
    if not_assessed or band is None:
        ranks.append(NOT_ASSESSED_RANK)
    return min(ranks)


@dataclass(frozen=True)
class ImagesSummary:
    """A study's scored images summed up: its best assessable image decides its score.

    ``lead`` is the study's prediction: the best assessable image, else the first image
    that could not be assessed; ``first_unjudged`` is that first one (None when every
    image was assessed) and ``unjudged`` how many could not be.
    """

    best: Result | None
    lead: Result
    first_unjudged: Result | None
    unjudged: int
    requested_priority: str
    arrived_at: datetime
    last_received_at: datetime
    images: int


def summarise_images(rows: Sequence[tuple[Instance, Result]]) -> ImagesSummary:
    """Sum up a study's (instance, result) pairs; there must be at least one."""
    assessed = [result for _, result in rows if result.assessable]
    unjudged = sorted(
        ((i.received_at, r.id, r) for i, r in rows if not r.assessable),
        key=lambda item: (item[0], item[1]),
    )
    best = max(assessed, key=lambda r: (r.score, r.logit)) if assessed else None
    first_unjudged = unjudged[0][2] if unjudged else None
    received = [i.received_at for i, _ in rows]
    return ImagesSummary(
        best=best,
        lead=best if best is not None else unjudged[0][2],
        first_unjudged=first_unjudged,
        unjudged=len(unjudged),
        requested_priority=min(
            (i.requested_priority for i, _ in rows), key=lambda p: PRIORITY_ORDER.get(p, 1)
        ),
        arrived_at=min(received),
        last_received_at=max(received),
        images=len(rows),
    )


def scored_images(session: Session, study_instance_uid: str) -> Sequence[Row[Instance, Result]]:
    """The study's scored images: (instance, result) of each done job."""
    return session.execute(
        select(Instance, Result)
        .join(Job, Job.instance_id == Instance.id)
        .join(Result, Result.job_id == Job.id)
        .where(Job.state == JobState.DONE, Instance.study_instance_uid == study_instance_uid)
    ).all()


def refresh_study(
    session: Session,
    *,
    study_instance_uid: str,
    band_names: Sequence[str] = DEFAULT_BAND_NAMES,
) -> Study | None:
    """Sum up the study's scored images onto its row (created when missing), and mark
    its report pending (see :mod:`daemon.db.study_reports`).

    The row is locked first, so that a worker scoring another image of the study at the
    same moment sums up after this one commits, seeing both results.

    Returns:
        The row, or None when the study has no scored image.
    """
    study = session.scalar(_locking(study_instance_uid))
    rows = scored_images(session, study_instance_uid)
    if not rows:
        return None
    if study is None:  # a study received before the table kept one
        study = locked_study(
            session,
            study_instance_uid=study_instance_uid,
            now=min(instance.received_at for instance, _ in rows),
        )
        rows = scored_images(session, study_instance_uid)  # again, under the lock
    summary = summarise_images(rows)
    best, lead, first_unjudged = summary.best, summary.lead, summary.first_unjudged
    priority = summary.requested_priority
    band = best.priority if best is not None else None
    rank = study_rank(band, first_unjudged is not None, band_names or DEFAULT_BAND_NAMES)
    not_assessed = rank == NOT_ASSESSED_RANK
    raised = priority == "HIGH" and rank > 0
    unscored = not_assessed or best is None
    study.arrived_at = summary.arrived_at
    study.last_received_at = max(summary.last_received_at, study.last_received_at)
    study.images = summary.images
    study.requested_priority = priority
    study.raised_by_sender = raised
    study.band = band
    study.band_rank = 0.0 if raised else rank
    study.not_assessed = not_assessed
    study.unscored = unscored
    study.score = best.score if best is not None else None
    study.logit = best.logit if best is not None else None
    study.order_score = 0.0 if unscored or best is None else -best.score
    study.order_logit = 0.0 if unscored or best is None else -best.logit
    study.threshold = lead.threshold
    study.result_id = lead.id
    study.not_assessed_count = summary.unjudged
    study.not_assessed_reason = (
        None if first_unjudged is None else first_unjudged.not_assessable_reason
    )
    study.not_assessed_detail = (
        None if first_unjudged is None else first_unjudged.not_assessable_detail
    )
    study.not_assessed_result_id = None if first_unjudged is None else first_unjudged.id
    study.model_version = lead.model_version
    study.calibration_version = lead.calibration_version
    study.listed = study.closed_at is None
    # An image was scored: the study's report is looked at again once it settles.
    study.report_pending = True
    session.flush()
    return study


def close_study(
    session: Session,
    *,
    study_instance_uid: str,
    reason: str,
    by: str,
    now: datetime | None = None,
) -> bool:
    """Take a study off the open list, saying why; False when it was already closed.

    A study not yet seen gets its row, closed: its images, when they come, stay off
    the list (as a read recorded ahead of the study did before).
    """
    now = now or utcnow()
    study = locked_study(session, study_instance_uid=study_instance_uid, now=now)
    if study.closed_at is not None:
        return False
    study.closed_at, study.closed_reason, study.closed_by = now, reason, by
    study.listed = False
    session.flush()
    return True


def reopen_study(session: Session, *, study_instance_uid: str) -> bool:
    """Put a closed study back on the open list (an undone read); False when it was open."""
    study = session.scalar(select(Study).where(Study.study_instance_uid == study_instance_uid))
    if study is None or study.closed_at is None:
        return False
    study.closed_at = study.closed_reason = study.closed_by = None
    study.listed = study.images > 0
    session.flush()
    return True


def find_study(session: Session, *, study_instance_uid: str) -> Study | None:
    """The study's row, or None."""
    return session.scalar(select(Study).where(Study.study_instance_uid == study_instance_uid))


def close_arrived_before(
    session: Session, *, before: datetime, reason: str, by: str, now: datetime | None = None
) -> int:
    """Close every listed study that arrived before ``before``; returns how many."""
    now = now or utcnow()
    result = session.execute(
        update(Study)
        .where(Study.listed.is_(True), Study.arrived_at < before)
        .values(listed=False, closed_at=now, closed_reason=reason, closed_by=by)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def blank_identities(
    session: Session, *, received_before: datetime, now: datetime | None = None
) -> int:
    """Blank the identifying fields of studies whose last image came before the cut (their
    images are gone with retention); returns how many.

    The study's row stays (its scores and when it left the list), without who it was;
    the modality, which says nothing of the patient, stays for the worklist's filter.
    """
    now = now or utcnow()
    blanked = dict.fromkeys((name for name in IDENTITY_LENGTHS if name != "modality"), None)
    result = session.execute(
        update(Study)
        .where(Study.last_received_at < received_before, Study.identity_blanked_at.is_(None))
        .values(identity_blanked_at=now, **blanked)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
