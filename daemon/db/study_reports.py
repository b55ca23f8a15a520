"""A study's own report: when it is due, what it must say, and recording it once.

Each scored image marks its study's report pending (:func:`daemon.db.studies.refresh_study`).
A study is *settled* when no image of it has come for the settle time and none of its
images is waiting to be scored; a settled, pending study is then looked at once:

- never reported: its first report is issued (the study's deciding image, see
  :func:`report_needed`);
- reported before: a new report is issued only when the study's priority rose since
  (a higher band, the score now at or above the threshold, or a first assessable
  image in a study reported not assessed); otherwise nothing is sent.

The state lives on the study's row, so a report decided but not yet recorded when a
process stops is decided again after the restart. Planning and recording are two
short transactions around the building of the SR (which reads the spool and writes
the outbox): the plan carries the study's state as it read it, and the record is kept
only when the row still says the same under its lock, so two workers planning the
same study at once record it once (the other's file is dropped).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Exists, exists, select
from sqlalchemy.orm import Session

from daemon.db.models import (
    Instance,
    Job,
    JobState,
    Study,
    utcnow,
)
from daemon.db.queue.results import NewOutput, record_output
from daemon.db.studies import ImagesSummary, scored_images, summarise_images


def report_needed(
    *,
    revision: int,
    reported_band: str | None,
    reported_above: bool | None,
    band: str | None,
    above: bool,
    names: Sequence[str],
) -> bool:
    """Whether a study's report must be issued now.

    Args:
        revision: how many reports of the study were issued (0: none yet).
        reported_band, reported_above: what the last one said (band None: the study
            was reported not assessed).
        band, above: the study's deciding image now (band None: no image of the study
            could be assessed).
        names: the bands in use, highest first.

    Returns:
        True for a first report, and for a later one only when the study's priority
        rose: a higher band than reported, the score now at or above the threshold
        where it was below, or a first assessable image after a report of a study not
        assessed. A change that lowers or keeps the priority sends nothing.
    """
    if revision == 0:
        return True
    if band is None:
        return False
    if reported_band is None:
        return True
    if above and not reported_above:
        return True
    rank = {name: index for index, name in enumerate(names)}
    lowest = len(names)
    return rank.get(band, lowest) < rank.get(reported_band, lowest)


def _waiting() -> Exists:
    """Whether an image of the study is waiting to be scored."""
    return exists().where(
        Instance.study_instance_uid == Study.study_instance_uid,
        Job.instance_id == Instance.id,
        Job.state.in_([JobState.QUEUED, JobState.RUNNING]),
    )


def due_studies(
    session: Session, *, settle_seconds: float, now: datetime | None = None, limit: int = 20
) -> list[str]:
    """The Study Instance UIDs whose report is pending and who have settled, oldest first."""
    now = now or utcnow()
    return list(
        session.scalars(
            select(Study.study_instance_uid)
            .where(
                Study.report_pending.is_(True),
                Study.last_received_at <= now - timedelta(seconds=settle_seconds),
                ~_waiting(),
            )
            .order_by(Study.last_received_at, Study.id)
            .limit(limit)
        ).all()
    )


def next_report_time(session: Session, *, settle_seconds: float) -> datetime | None:
    """When the earliest pending study settles (None when no report is pending but for
    studies with an image still to score: scoring it looks at the study again)."""
    last = session.scalar(
        select(Study.last_received_at)
        .where(Study.report_pending.is_(True), ~_waiting())
        .order_by(Study.last_received_at)
        .limit(1)
    )
    return None if last is None else last + timedelta(seconds=settle_seconds)


@dataclass(frozen=True)
class ReportPlan:
    """A study report to issue: the study's state as planned, and its deciding image.

    ``images`` and ``revision`` (the new report's number) are what the record checks
    again under the row's lock; ``replaces`` is the SOP Instance UID of the report the
    new one replaces (None for the first).
    """

    study_instance_uid: str
    revision: int
    images: int
    not_assessed: int
    result_id: int
    job_id: int
    spool_name: str | None
    sop_instance_uid: str  # the deciding image's
    assessable: bool
    score: float
    threshold: float
    above_threshold: bool
    band: str | None
    model_version: str
    calibration_version: int
    quarter_turns: int
    not_assessable_reason: str | None
    not_assessable_detail: str | None
    replaces: str | None
    # The deciding image's class probabilities (an N-class bundle's); empty otherwise.
    class_probabilities: tuple[tuple[str, float], ...] = ()


def _locked_pending(
    session: Session, study_instance_uid: str, *, skip_locked: bool
) -> Study | None:
    return session.scalar(
        select(Study)
        .where(Study.study_instance_uid == study_instance_uid, Study.report_pending.is_(True))
        .with_for_update(skip_locked=skip_locked)
        .execution_options(populate_existing=True)
    )


def plan_report(
    session: Session, *, study_instance_uid: str, band_names: Sequence[str]
) -> ReportPlan | None:
    """Decide a settled study's report: the plan of one to issue, or None.

    When no report is needed (the priority did not rise), the study stops being
    pending here. A study another process holds, or no longer pending, gives None.
    """
    study = _locked_pending(session, study_instance_uid, skip_locked=True)
    if study is None:
        return None
    rows = scored_images(session, study_instance_uid)
    if not rows:
        study.report_pending = False
        return None
    summary: ImagesSummary = summarise_images(rows)
    lead = summary.lead
    if not report_needed(
        revision=study.report_revision,
        reported_band=study.reported_band,
        reported_above=study.reported_above,
        band=lead.priority,
        above=lead.above_threshold,
        names=band_names,
    ):
        study.report_pending = False
        session.flush()
        return None
    instance = next(i for i, r in rows if r.id == lead.id)
    return ReportPlan(
        study_instance_uid=study_instance_uid,
        revision=study.report_revision + 1,
        images=summary.images,
        not_assessed=summary.unjudged,
        result_id=lead.id,
        job_id=lead.job_id,
        spool_name=instance.spool_name,
        sop_instance_uid=instance.sop_instance_uid,
        assessable=lead.assessable,
        score=lead.score,
        threshold=lead.threshold,
        above_threshold=lead.above_threshold,
        band=lead.priority,
        model_version=lead.model_version,
        calibration_version=lead.calibration_version,
        quarter_turns=lead.quarter_turns,
        not_assessable_reason=lead.not_assessable_reason,
        not_assessable_detail=lead.not_assessable_detail,
        replaces=study.reported_sop_instance_uid,
        class_probabilities=lead.classes,
    )


def drop_report(session: Session, *, plan: ReportPlan) -> bool:
    """Stop a study being pending when its planned report cannot be built (its image is
    gone from the spool), unless the study changed meanwhile; False when it did."""
    study = _locked_pending(session, plan.study_instance_uid, skip_locked=False)
    if study is None or (study.images, study.report_revision + 1) != (plan.images, plan.revision):
        return False
    study.report_pending = False
    return True


def record_report(
    session: Session,
    *,
    plan: ReportPlan,
    output: NewOutput,
    destinations: Mapping[str, Collection[str]],
    now: datetime | None = None,
) -> bool:
    """Record a built study report with one delivery per destination taking SRs, and
    the study as reported; False (nothing written) when the study changed since the
    plan (another image scored, or another process recorded the report)."""
    study = _locked_pending(session, plan.study_instance_uid, skip_locked=False)
    if study is None or (study.images, study.report_revision + 1) != (plan.images, plan.revision):
        return False
    now = now or utcnow()
    # One delivery to each destination that takes SRs (record_output routes by kind).
    record_output(session, job_id=plan.job_id, output=output, routes=destinations, now=now)
    study.report_pending = False
    study.report_revision = plan.revision
    study.reported_result_id = plan.result_id
    study.reported_band = plan.band
    study.reported_above = plan.above_threshold
    study.reported_sop_instance_uid = output.sop_instance_uid
    session.flush()
    return True
