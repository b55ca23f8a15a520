"""One study as a reader sees it: its scored images, its feedback and history, its read.

Shared by the web pages and the JSON API; plain data out, no web types. An image
ChestAid could not assess shows its reason instead of a score: its score, call and
band are None here (the database keeps the score for audit only). An image scored
in shadow mode says so (``shadow``): its result was never sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.db.models import Feedback, FeedbackChange, Instance, Job, JobState, Result, StudyRead


@dataclass(frozen=True)
class StudyImage:
    """One received image of the study and what became of it."""

    instance_id: int
    sop_instance_uid: str
    series_instance_uid: str
    modality: str | None
    received_at: datetime
    state: str  # the job's state: done, skipped, failed, queued, running
    reason: str | None  # why it was skipped or failed
    result_id: int | None
    score: float | None  # None when not scored or not assessable
    logit: float | None
    threshold: float | None
    above_threshold: bool | None
    band: str | None
    model_version: str | None
    calibration_version: int | None
    has_heatmap: bool
    has_pixels: bool  # the spooled file is still kept (retention deletes old ones)
    assessable: bool | None = None  # None: no result (skipped, failed, waiting)
    not_assessable_reason: str | None = None
    not_assessable_detail: str | None = None
    quarter_turns: int = 0  # turned upright by this many quarter turns before scoring
    shadow: bool = False  # scored in shadow mode: kept here, sent nowhere
    # An N-class bundle's calibrated probability of each class (its score is that of
    # "not normal"); empty for a binary bundle, or an image not scored or not assessable.
    class_probabilities: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class StudyDetail:
    """A study's images (highest score first), feedback, history and read."""

    study_instance_uid: str
    images: list[StudyImage]
    feedback_label: str | None = None
    feedback_comment: str | None = None
    feedback_by: str | None = None
    feedback_at: datetime | None = None
    history: list[FeedbackChange] = field(default_factory=list)
    read_by: str | None = None
    read_at: datetime | None = None
    read_via: str | None = None

    @property
    def lead(self) -> StudyImage | None:
        """The study's highest-scored assessable image (its score is the study's)."""
        scored = [i for i in self.images if i.score is not None]
        return scored[0] if scored else None

    @property
    def not_assessed(self) -> list[StudyImage]:
        """The images ChestAid could not assess (a reader must look at them)."""
        return [i for i in self.images if i.assessable is False]


def study_detail(session: Session, *, study_instance_uid: str) -> StudyDetail | None:
    """The study with this UID, or None when ChestAid never received it."""
    rows = session.execute(
        select(Instance, Job, Result)
        .join(Job, Job.instance_id == Instance.id)
        .outerjoin(Result, Result.job_id == Job.id)
        .where(Instance.study_instance_uid == study_instance_uid)
    ).all()
    if not rows:
        return None
    images = [_image(instance, job, result) for instance, job, result in rows]
    images.sort(key=lambda i: (i.score is None, -(i.score or 0.0), -(i.logit or 0.0)))
    feedback = session.scalar(
        select(Feedback).where(Feedback.study_instance_uid == study_instance_uid)
    )
    read = session.scalar(
        select(StudyRead).where(StudyRead.study_instance_uid == study_instance_uid)
    )
    return StudyDetail(
        study_instance_uid=study_instance_uid,
        images=images,
        feedback_label=feedback.label.value if feedback else None,
        feedback_comment=feedback.comment if feedback else None,
        feedback_by=feedback.given_by if feedback else None,
        feedback_at=feedback.updated_at if feedback else None,
        history=list(feedback.history) if feedback else [],
        read_by=read.read_by if read else None,
        read_at=read.read_at if read else None,
        read_via=read.via if read else None,
    )


def _image(instance: Instance, job: Job, result: Result | None) -> StudyImage:
    judged = result if result is not None and result.assessable else None
    return StudyImage(
        instance_id=instance.id,
        sop_instance_uid=instance.sop_instance_uid,
        series_instance_uid=instance.series_instance_uid,
        modality=instance.modality,
        received_at=instance.received_at,
        state=job.state.value,
        reason=job.reason if job.state != JobState.DONE else None,
        result_id=result.id if result else None,
        score=judged.score if judged else None,
        logit=judged.logit if judged else None,
        threshold=result.threshold if result else None,
        above_threshold=judged.above_threshold if judged else None,
        band=judged.priority if judged else None,
        model_version=result.model_version if result else None,
        calibration_version=result.calibration_version if result else None,
        has_heatmap=bool(judged and judged.cam),
        has_pixels=instance.spool_name is not None,
        assessable=result.assessable if result else None,
        not_assessable_reason=result.not_assessable_reason if result else None,
        not_assessable_detail=result.not_assessable_detail if result else None,
        quarter_turns=result.quarter_turns if result else 0,
        shadow=result.shadow if result else False,
        class_probabilities=judged.classes if judged else (),
    )


def image_source(
    session: Session, *, study_instance_uid: str, result_id: int
) -> tuple[str | None, str | None]:
    """The spool file name and stored Grad-CAM of one result of this study (None, None if not).

    The study UID is checked, so a page for one study never serves another's image.
    """
    row = session.execute(
        select(Instance.spool_name, Result.cam)
        .join(Job, Job.instance_id == Instance.id)
        .join(Result, Result.job_id == Job.id)
        .where(Result.id == result_id, Instance.study_instance_uid == study_instance_uid)
    ).first()
    if row is None:
        return None, None
    return row[0], row[1]
