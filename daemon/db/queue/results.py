"""Completing a scoring job: its result, its outputs and their deliveries, in one step."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session

from daemon.db.models import (
    Delivery,
    DeliveryState,
    JobState,
    Output,
    OutputKind,
    Result,
    encode_class_probabilities,
    utcnow,
)
from daemon.db.queue.jobs import finish, owned_job
from daemon.db.studies import DEFAULT_BAND_NAMES, refresh_study


class ImageStatistics(Protocol):
    """Figures of the decoded image kept on a result (see :mod:`daemon.heatmaps`)."""

    @property
    def mean(self) -> float: ...
    @property
    def std(self) -> float: ...
    @property
    def rows(self) -> int: ...
    @property
    def cols(self) -> int: ...


@dataclass(frozen=True)
class NotAssessable:
    """Why an image could not be judged: a reason code of ``chestaid.assessment`` and
    its sentence for people. A result recorded with one has no priority band."""

    reason: str
    detail: str


@dataclass(frozen=True)
class NewOutput:
    """A generated object written to the outbox, to be recorded with its result."""

    kind: OutputKind
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    file_name: str
    size_bytes: int


def record_output(
    session: Session,
    *,
    job_id: int,
    output: NewOutput,
    routes: Mapping[str, Collection[str]],
    now: datetime,
) -> Output:
    """Record an output in the outbox and one pending delivery to each destination
    whose kinds (``routes``: name to the output kinds it takes) include it."""
    row = Output(
        job_id=job_id,
        kind=output.kind,
        sop_class_uid=output.sop_class_uid,
        sop_instance_uid=output.sop_instance_uid,
        series_instance_uid=output.series_instance_uid,
        file_name=output.file_name,
        size_bytes=output.size_bytes,
        created_at=now,
    )
    session.add(row)
    for name in (n for n, kinds in routes.items() if output.kind in kinds):
        session.add(
            Delivery(
                output=row,
                destination=name,
                state=DeliveryState.PENDING,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
    return row


def complete_job(
    session: Session,
    *,
    job_id: int,
    owner: str,
    logit: float,
    score: float,
    threshold: float,
    above_threshold: bool,
    priority: str | None,
    model_version: str,
    calibration_version: int,
    outputs: Sequence[NewOutput],
    destinations: Iterable[str] | Mapping[str, Collection[str]],
    cam: str | None = None,
    image: ImageStatistics | None = None,
    not_assessable: NotAssessable | None = None,
    quarter_turns: int = 0,
    band_names: Sequence[str] = DEFAULT_BAND_NAMES,
    shadow: bool = False,
    class_probabilities: Sequence[tuple[str, float]] = (),
    now: datetime | None = None,
) -> bool:
    """Record a held job's result, its outputs and one delivery per output per destination.

    Args:
        destinations: the destinations' names, each sent every output; or, by name,
            the output kinds each is sent (an HL7 destination takes only the SR).
        priority: the band; None exactly when the image was not assessable.
        cam: the Grad-CAM map as text from :func:`daemon.heatmaps.encode_cam`;
            None leaves the result without one.
        image: statistics of the decoded image, for label-free drift; None leaves
            them empty.
        not_assessable: set when the image could not be judged: the result keeps
            the reason, no band, and its score for audit only.
        quarter_turns: counter-clockwise quarter turns given to the image before scoring.
        band_names: the priority bands in use, highest first: the study's row is summed
            up again with its band's rank among them.
        shadow: made in shadow mode: the result is marked so, its outputs are kept
            and no delivery is created, whatever ``destinations`` says.
        class_probabilities: an N-class bundle's calibrated probability of each class,
            by name in the bundle's order; empty for a binary bundle.

    Returns:
        False (nothing written) when the lease was lost to another worker.

    Raises:
        ValueError: a band given with ``not_assessable``, none without it, or a
            not-assessable result said to be above the threshold.
    """
    if (priority is None) != (not_assessable is not None):
        raise ValueError("a result has a priority band exactly when it is assessable")
    if not_assessable is not None and above_threshold:
        raise ValueError("a not-assessable result is never above the threshold")
    now = now or utcnow()
    job = owned_job(session, job_id=job_id, owner=owner)
    if job is None:
        return False
    session.add(
        Result(
            job_id=job_id,
            logit=logit,
            score=score,
            threshold=threshold,
            above_threshold=above_threshold,
            priority=priority,
            assessable=not_assessable is None,
            not_assessable_reason=None if not_assessable is None else not_assessable.reason,
            not_assessable_detail=None if not_assessable is None else not_assessable.detail,
            quarter_turns=quarter_turns,
            model_version=model_version,
            calibration_version=calibration_version,
            scored_at=now,
            cam=cam,
            image_mean=None if image is None else image.mean,
            image_std=None if image is None else image.std,
            image_rows=None if image is None else image.rows,
            image_cols=None if image is None else image.cols,
            shadow=shadow,
            class_probabilities=encode_class_probabilities(class_probabilities),
        )
    )
    routes: Mapping[str, Collection[str]] = (
        {}
        if shadow
        else destinations
        if isinstance(destinations, Mapping)
        else dict.fromkeys(destinations, frozenset(OutputKind))
    )
    for new in outputs:
        record_output(session, job_id=job_id, output=new, routes=routes, now=now)
    finish(job, JobState.DONE, None, now)
    session.flush()
    refresh_study(
        session, study_instance_uid=job.instance.study_instance_uid, band_names=band_names
    )
    return True
