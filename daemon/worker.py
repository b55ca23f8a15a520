"""The worker: where the service calls the ML core.

A worker claims a queued job, reads the spooled file, and either skips it (not a
frontal chest radiograph, or one of ChestAid's own outputs sent back), fails it with
the reason (an image that cannot be decoded), or scores it: model input, calibrated
score and Grad-CAM from one forward pass, a priority band, and an object for the
PACS (a Secondary Capture with the overlay, one per image). The objects are
written durably to the outbox first; then the result, the outputs and one delivery
per destination are committed in one transaction, and only if this worker still
holds the job's lease, so a job reclaimed from a slow worker is never recorded twice.
The SR is the study's: after each job, and while it waits for work, the worker issues
the reports of studies that have settled (:mod:`daemon.study_reports`).
The result keeps the Grad-CAM map (for the study page) and simple statistics of the
decoded image (for label-free drift).

When the ML core finds the image not assessable (not a judgeable frontal chest
radiograph: its ``Prediction.assessment``), the result records the reason and its
sentence, no priority band and no map; the score and logit are kept for audit only;
the PACS gets the "not assessed" SC (see :mod:`daemon.outputs`); and one log
line says so. An image the ML core turned upright before scoring is recorded with
its quarter turns, and its map is turned back onto the image as received.

In shadow mode (``[site] mode = "shadow"``) everything above happens except sending:
the outputs are still written to the outbox, but the result is marked as made in
shadow and no delivery is created, so nothing reaches any destination, now or after
the site goes live.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from sqlalchemy.exc import SQLAlchemyError

from chestaid.dicom_outputs import NotAssessedFinding, TriageFinding, is_chestaid_output
from chestaid.errors import ChestAidError, NotChestRadiographError, UnsupportedImageError
from chestaid.imaging import needed_size, read_for_scoring
from chestaid.inference import Prediction
from daemon import metrics
from daemon.db import queue
from daemon.db.models import JobState, OutputKind
from daemon.db.session import SessionFactory, writing
from daemon.errors import SpoolError
from daemon.heatmaps import ImageStatistics, encode_cam, image_statistics
from daemon.outputs import not_assessed_outputs, scored_outputs
from daemon.serving import ActiveModel
from daemon.settings import WorkerSettings
from daemon.spool import FileStore
from daemon.study_reports import StudyReports

logger = logging.getLogger(__name__)


def lower_thread_priority(nice: int) -> None:
    """Make the calling thread (and the compute threads it starts) yield to intake.

    On Linux the nice value is per thread and inherited by threads a thread creates;
    PyTorch's OpenMP team is created by the thread that first runs a parallel region,
    so a worker that lowers its priority before its first forward pass scores at that
    priority, and receiving (the SCP threads) wins the CPU during a burst: a slow
    model never slows a modality down.
    """
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError as exc:
        logger.warning("cannot lower the worker's priority", extra={"error": str(exc)})


@dataclass(frozen=True)
class _Scored:
    prediction: Prediction
    priority: str | None  # None: not assessable
    calibration_version: int
    outputs: list[queue.NewOutput]
    cam: str | None  # the Grad-CAM map as JSON rows (daemon.heatmaps); None if not assessable
    image: ImageStatistics
    not_assessable: queue.NotAssessable | None = None
    band_names: tuple[str, ...] = ()  # the bands in use, highest first


class _SkipError(ChestAidError):
    """The instance is not for scoring (internal to this module)."""


class Worker:
    """Claims jobs and scores them until told to stop.

    Args:
        sessions: the process's session factory.
        spool: the received files.
        outbox: where generated objects are written.
        model: a callable returning the model in service (called per job, so a new
            active calibration is used without a restart).
        destinations: names of the destinations every output goes to; or, by name,
            the output kinds each destination takes.
        settings: lease, polling and output settings.
        wakeup: set when a job may be waiting (by the SCP in the same process).
        on_outputs: called after outputs are committed (wakes the sender).
        intake_idle: waits (up to the given seconds) until no association is
            receiving; scoring gives way to receiving that long before each job.
        shadow: the site runs in shadow mode: results are marked so and no delivery
            is created for any destination.
    """

    def __init__(
        self,
        *,
        sessions: SessionFactory,
        spool: FileStore,
        outbox: FileStore,
        model: Callable[[], ActiveModel],
        destinations: Sequence[str] | Mapping[str, Collection[str]],
        settings: WorkerSettings,
        wakeup: threading.Event | None = None,
        on_outputs: Callable[[], None] = lambda: None,
        intake_idle: Callable[[float], bool] | None = None,
        owner: str | None = None,
        shadow: bool = False,
    ) -> None:
        self.sessions = sessions
        self.spool = spool
        self.outbox = outbox
        self.model = model
        self.destinations: Mapping[str, Collection[str]] = (
            destinations
            if isinstance(destinations, Mapping)
            else dict.fromkeys(destinations, frozenset(OutputKind))
        )
        self.settings = settings
        self.wakeup = wakeup or threading.Event()
        self.on_outputs = on_outputs
        self.intake_idle = intake_idle
        self.owner = owner or queue.process_owner("worker")
        self.shadow = shadow
        self.reports = StudyReports(
            sessions=sessions,
            spool=spool,
            outbox=outbox,
            # In shadow mode a study's report is built, never sent.
            destinations={} if shadow else self.destinations,
            settle_seconds=settings.study_settle_seconds,
            band_names=lambda: tuple(name for name, _ in self.model().bands.cutoffs),
        )

    def run(self, stop: threading.Event) -> None:
        """Process jobs until ``stop`` is set; the job in hand is finished first."""
        lower_thread_priority(self.settings.nice)
        logger.info("worker started", extra={"owner": self.owner, "nice": self.settings.nice})
        while not stop.is_set():
            self.wakeup.clear()
            if self.intake_idle is not None and self.settings.yield_to_intake_seconds > 0:
                # Receiving first: on 2 cores, scoring during a burst slows every
                # modality's send; waiting is bounded, so scoring is never starved.
                self.intake_idle(self.settings.yield_to_intake_seconds)
                if stop.is_set():
                    break
            try:
                worked = self.process_next()
            except SQLAlchemyError as exc:
                # The database is locked or gone for a moment: the job (if any) keeps
                # its lease and comes back; the worker stays alive and tries again.
                logger.error("database error in the worker", extra={"error": str(exc)})
                worked = False
            if not worked and not stop.is_set():  # a stop set just before the clear
                self.wakeup.wait(self._pause())
        try:
            with writing(self.sessions) as session:
                released = queue.release_owned_jobs(session, owner=self.owner)
        except SQLAlchemyError as exc:
            logger.error(
                "cannot give back claimed jobs; their leases will expire", extra={"error": str(exc)}
            )
            released = 0
        logger.info("worker stopped", extra={"owner": self.owner, "released": released})

    def process_next(self) -> bool:
        """Claim and process one job, then issue the reports of settled studies; False
        when there was no job."""
        with writing(self.sessions) as session:
            claim = queue.claim_job(
                session,
                owner=self.owner,
                lease_seconds=self.settings.lease_seconds,
                max_attempts=self.settings.max_attempts,
            )
        if claim is not None:
            self.process(claim)
        self.issue_reports()
        return claim is not None

    def issue_reports(self) -> int:
        """Issue the reports of the studies that have settled; returns how many."""
        try:
            issued = self.reports.issue_due()
        except SQLAlchemyError as exc:
            # The database is busy or gone for a moment: the studies stay pending.
            logger.error("database error issuing study reports", extra={"error": str(exc)})
            return 0
        if issued and self.destinations and not self.shadow:
            self.on_outputs()
        return issued

    def _pause(self) -> float:
        """How long to wait for work: the poll interval, or less when a study settles
        sooner (its report is due then)."""
        try:
            due_in = self.reports.seconds_to_next()
        except SQLAlchemyError:
            due_in = None
        if due_in is None:
            return self.settings.poll_seconds
        return min(self.settings.poll_seconds, max(0.2, due_in))

    def process(self, claim: queue.Claim) -> None:
        """Score, skip or fail one claimed job and record the outcome."""
        log: dict[str, Any] = {"job_id": claim.job_id, "sop_instance_uid": claim.sop_instance_uid}
        try:
            with metrics.SCORING.time():
                scored = self._score(claim)
        except (_SkipError, NotChestRadiographError) as exc:
            self._finish(claim, JobState.SKIPPED, str(exc), log)
            return
        except (SpoolError, OSError, SQLAlchemyError) as exc:
            # Storage or database trouble (the outbox full, the database busy): not the
            # image's fault and usually passing, so retried for longer, after longer pauses.
            self._retry(claim, f"{type(exc).__name__}: {exc}", log, transient=True)
            return
        except ChestAidError as exc:
            self._finish(claim, JobState.FAILED, f"{type(exc).__name__}: {exc}", log)
            return
        except Exception as exc:
            # The boundary of the worker: an unexpected error is logged with its
            # traceback and the job retried after a pause, up to max_attempts.
            logger.exception("job raised an unexpected error", extra=log)
            self._retry(claim, f"internal error: {type(exc).__name__}: {exc}", log)
            return
        p = scored.prediction
        turns = p.assessment.quarter_turns
        with writing(self.sessions) as session:
            kept = queue.complete_job(
                session,
                job_id=claim.job_id,
                owner=self.owner,
                logit=p.logit,
                score=p.score,
                threshold=p.threshold,
                # A score that was not assessed is never a call, whatever it is.
                above_threshold=p.above_threshold and scored.not_assessable is None,
                priority=scored.priority,
                model_version=p.model_version,
                calibration_version=scored.calibration_version,
                outputs=scored.outputs,
                destinations=self.destinations,
                cam=scored.cam,
                image=scored.image,
                not_assessable=scored.not_assessable,
                quarter_turns=turns,
                band_names=scored.band_names,
                shadow=self.shadow,
                class_probabilities=p.class_probabilities,
            )
        if not kept:
            logger.warning("lease lost before the result was recorded", extra=log)
            return
        metrics.JOBS_FINISHED.labels(state=JobState.DONE.value).inc()
        metrics.observe_since(metrics.END_TO_END, claim.received_at)
        turned = {"quarter_turns": turns} if turns else {}
        if scored.not_assessable is not None:
            # The reason code only: the detail is for the page and the PACS.
            logger.info(
                "job not assessable",
                extra={
                    **log,
                    "reason": scored.not_assessable.reason,
                    **turned,
                    "outputs": len(scored.outputs),
                },
            )
        else:
            logger.info(
                "job scored",
                extra={
                    **log,
                    "score": round(p.score, 6),
                    "priority": scored.priority,
                    **turned,
                    **({"shadow": True} if self.shadow else {}),
                    "outputs": len(scored.outputs),
                },
            )
        if self.destinations and not self.shadow:
            self.on_outputs()

    def _retry(
        self, claim: queue.Claim, reason: str, log: dict[str, Any], *, transient: bool = False
    ) -> None:
        """Give the job back to be retried after a growing pause, or fail it at the limit.

        A transient cause (storage or database trouble) has its own, longer pauses and
        limit (``retry_*`` settings); an unexpected error is retried a few times soon.
        """
        settings = self.settings
        if transient:
            limit, initial, maximum = (
                settings.retry_max_attempts,
                settings.retry_initial_seconds,
                settings.retry_max_seconds,
            )
        else:
            limit, initial, maximum = (
                settings.max_attempts,
                2 * settings.poll_seconds,
                settings.lease_seconds,
            )
        if claim.attempts >= limit:
            self._finish(claim, JobState.FAILED, f"{reason} (after {claim.attempts} attempts)", log)
            return
        pause = queue.backoff(claim.attempts, initial=initial, maximum=maximum)
        with writing(self.sessions) as session:
            queue.release_job(
                session,
                job_id=claim.job_id,
                owner=self.owner,
                reason=reason,
                count_attempt=True,
                retry_after=pause,
            )
        logger.warning("job will be retried", extra={**log, "reason": reason, "retry_in_s": pause})

    def _finish(
        self, claim: queue.Claim, state: JobState, reason: str, log: dict[str, Any]
    ) -> None:
        with writing(self.sessions) as session:
            kept = queue.finish_job(
                session, job_id=claim.job_id, owner=self.owner, state=state, reason=reason
            )
        if kept:
            metrics.JOBS_FINISHED.labels(state=state.value).inc()
        level = logging.INFO if state == JobState.SKIPPED else logging.WARNING
        logger.log(level, f"job {state.value}", extra={**log, "reason": reason, "lease_kept": kept})

    def _score(self, claim: queue.Claim) -> _Scored:
        if claim.spool_name is None:
            raise _SpoolMissingError("the spooled file was purged before the job ran")
        path = self.spool.path(claim.spool_name)
        if not path.is_file():
            raise _SpoolMissingError(f"the spooled file {claim.spool_name} is missing")
        model = self.model()
        # Decoded no finer than the model and the Secondary Capture need (JPEG 2000 and
        # JPEG baseline skip the rest); the statistics keep the stored size.
        need = needed_size(
            input_size=model.scorer.spec.input_size, picture_side=self.settings.output_max_side
        )
        read = read_for_scoring(
            path, max_pixels=self.settings.max_pixels, screen=_skip_chestaid_output, need=need
        )
        source, image = read.dataset, read.image
        if source is None:
            raise UnsupportedImageError(f"the spooled file {claim.spool_name} is not DICOM")
        prediction = model.scorer.score_pixels(image.pixels)
        assessment = prediction.assessment
        statistics = image_statistics(image.pixels, shape=image.full_shape)
        if not assessment.assessable:
            unjudged = NotAssessedFinding(
                reason=str(assessment.reason),
                detail=assessment.detail,
                model_version=prediction.model_version,
                calibration_version=model.calibration_version,
                quarter_turns=assessment.quarter_turns,
            )
            return _Scored(
                prediction=prediction,
                priority=None,
                calibration_version=model.calibration_version,
                outputs=not_assessed_outputs(
                    self.outbox,
                    claim,
                    source=source,
                    grey=image.pixels,
                    finding=unjudged,
                    settings=self.settings,
                ),
                cam=None,  # no map of an image that was not judged: nothing may show one
                image=statistics,
                not_assessable=queue.NotAssessable(unjudged.reason, unjudged.detail),
                band_names=tuple(name for name, _ in model.bands.cutoffs),
            )
        # The map of the image as scored (upright), turned back onto the image as received.
        cam = prediction.cam  # the ML core gives it on the image as received
        priority = model.bands.assign(prediction.score)
        # Before any output is written: a map that cannot be stored fails the job
        # (CamError) with nothing left in the outbox.
        encoded = encode_cam(cam)
        finding = TriageFinding(
            score=prediction.score,
            threshold=prediction.threshold,
            above_threshold=prediction.above_threshold,
            priority=priority,
            model_version=prediction.model_version,
            calibration_version=model.calibration_version,
            quarter_turns=assessment.quarter_turns,
            class_probabilities=prediction.class_probabilities,
        )
        return _Scored(
            prediction=prediction,
            priority=priority,
            calibration_version=model.calibration_version,
            outputs=scored_outputs(
                self.outbox,
                claim,
                source=source,
                grey=image.pixels,
                cam=cam,
                finding=finding,
                settings=self.settings,
            ),
            cam=encoded,
            image=statistics,
            band_names=tuple(name for name, _ in model.bands.cutoffs),
        )


def _skip_chestaid_output(source: Dataset) -> None:
    """Refuse one of ChestAid's own outputs sent back, before its pixels are decoded."""
    if is_chestaid_output(source):
        raise _SkipError("one of ChestAid's own outputs, sent back")


class _SpoolMissingError(ChestAidError):
    """The spooled file of a job is gone (internal to this module)."""
