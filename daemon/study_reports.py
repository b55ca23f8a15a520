"""Issuing study reports: one SR a study, built once the study has settled.

The worker calls :meth:`StudyReports.issue_due` after each job and while it waits.
For each settled study whose report is pending (:mod:`daemon.db.study_reports`) it
plans in one short transaction, builds the SR from the deciding image's header (read
from the spool, pixels never read) into the outbox, then records it with one delivery
per destination that takes SRs, in a second transaction that keeps it only if the
study did not change meanwhile. DICOM and DICOMweb destinations so get one SR a study,
and an HL7 destination one ORU^R01 a study; a later image that raises the study's
priority gets a new SR (the next instance of the study's report series, whose
Predecessor Documents Sequence names the one it replaces), and so a new message.

The report's UIDs derive from the study and the report's number, so a report rebuilt
after a crash (the file written, the record not) is the same object.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.uid import generate_uid

from chestaid.dicom_outputs import (
    NotAssessedFinding,
    OutputIdentity,
    ReplacedReport,
    StudyContext,
    TriageFinding,
    not_assessed_report,
    structured_report,
)
from chestaid.errors import ChestAidError
from daemon.db import queue
from daemon.db import study_reports as db
from daemon.db.models import OutputKind, utcnow
from daemon.db.session import SessionFactory, reading, writing
from daemon.errors import SpoolError
from daemon.outputs import SR_SERIES_NUMBER, encoded
from daemon.spool import FileStore

logger = logging.getLogger(__name__)


def report_series_uid(study_instance_uid: str) -> str:
    """The Series Instance UID of a study's reports (every revision is in it)."""
    return str(generate_uid(entropy_srcs=[study_instance_uid, "study-report", "series"]))


def report_identity(study_instance_uid: str, revision: int) -> OutputIdentity:
    """The UIDs and numbers of a study's report number ``revision`` (1 the first)."""
    return OutputIdentity(
        series_instance_uid=report_series_uid(study_instance_uid),
        sop_instance_uid=str(
            generate_uid(entropy_srcs=[study_instance_uid, "study-report", str(revision)])
        ),
        series_number=SR_SERIES_NUMBER,
        instance_number=revision,
    )


class _UnbuildableError(ChestAidError):
    """The deciding image's file is gone or unreadable: the report cannot be built."""


class StudyReports:
    """Issues the reports of settled studies.

    Args:
        sessions: the process's session factory.
        spool: the received files (the deciding image's header is read from it).
        outbox: where the reports are written.
        destinations: by name, the output kinds each destination takes.
        settle_seconds: how long a study must have had no new image.
        band_names: the bands in use, highest first (asked at each round, so a new
            calibration's bands count at once).
    """

    def __init__(
        self,
        *,
        sessions: SessionFactory,
        spool: FileStore,
        outbox: FileStore,
        destinations: Mapping[str, Collection[str]],
        settle_seconds: float,
        band_names: Callable[[], Sequence[str]],
    ) -> None:
        self.sessions = sessions
        self.spool = spool
        self.outbox = outbox
        self.destinations = destinations
        self.settle_seconds = settle_seconds
        self.band_names = band_names

    def seconds_to_next(self, *, now: datetime | None = None) -> float | None:
        """Seconds until the earliest pending study settles (0 when one has; None: none)."""
        with reading(self.sessions) as session:
            when = db.next_report_time(session, settle_seconds=self.settle_seconds)
        if when is None:
            return None
        return max(0.0, (when - (now or utcnow())).total_seconds())

    def issue_due(self, *, now: datetime | None = None) -> int:
        """Issue the reports of the studies settled by ``now``; returns how many."""
        with reading(self.sessions) as session:
            due = db.due_studies(session, settle_seconds=self.settle_seconds, now=now)
        issued = 0
        for study_instance_uid in due:
            issued += self._issue(study_instance_uid)
        return issued

    def _issue(self, study_instance_uid: str) -> int:
        log: dict[str, object] = {"study_instance_uid": study_instance_uid}
        with writing(self.sessions) as session:
            plan = db.plan_report(
                session, study_instance_uid=study_instance_uid, band_names=self.band_names()
            )
        if plan is None:
            return 0
        log |= {"job_id": plan.job_id, "revision": plan.revision}
        try:
            output = self._build(plan)
        except (SpoolError, OSError) as exc:
            # The outbox full, a disk error: passing; the study stays pending.
            logger.warning("study report not written; retried", extra={**log, "error": str(exc)})
            return 0
        except ChestAidError as exc:
            # It will not build better later: the study's images and SCs stay; a person
            # sees the study on the worklist as always.
            self._drop(plan)
            logger.error("study report cannot be built", extra={**log, "error": str(exc)})
            return 0
        except Exception:
            # The boundary: an unexpected error is logged with its traceback, and the
            # study not tried again and again on every round.
            self._drop(plan)
            logger.exception("study report raised an unexpected error", extra=log)
            return 0
        with writing(self.sessions) as session:
            kept = db.record_report(
                session, plan=plan, output=output, destinations=self.destinations
            )
        if not kept:
            self.outbox.remove(output.file_name)
            logger.info("study changed before its report was recorded; planned again", extra=log)
            return 0
        logger.info(
            "study report issued",
            extra={
                **log,
                "priority": plan.band,
                "sop_instance_uid": plan.sop_instance_uid,
                "replaces": plan.replaces,
            },
        )
        return 1

    def _drop(self, plan: db.ReportPlan) -> None:
        with writing(self.sessions) as session:
            db.drop_report(session, plan=plan)

    def _build(self, plan: db.ReportPlan) -> queue.NewOutput:
        if plan.spool_name is None:
            raise _UnbuildableError("the deciding image's file was purged")
        path = self.spool.path(plan.spool_name)
        try:
            source = dcmread(path, stop_before_pixels=True)
        except FileNotFoundError as exc:
            raise _UnbuildableError(
                f"the deciding image's file {plan.spool_name} is missing"
            ) from exc
        except InvalidDicomError as exc:
            raise _UnbuildableError(f"{plan.spool_name} is not DICOM") from exc
        identity = report_identity(plan.study_instance_uid, plan.revision)
        study = StudyContext(
            images=plan.images,
            not_assessed=plan.not_assessed,
            replaces=None
            if plan.replaces is None
            else ReplacedReport(
                study_instance_uid=plan.study_instance_uid,
                series_instance_uid=identity.series_instance_uid,
                sop_instance_uid=plan.replaces,
            ),
        )
        if plan.assessable and plan.band is not None:
            ds = structured_report(
                source,
                TriageFinding(
                    score=plan.score,
                    threshold=plan.threshold,
                    above_threshold=plan.above_threshold,
                    priority=plan.band,
                    model_version=plan.model_version,
                    calibration_version=plan.calibration_version,
                    quarter_turns=plan.quarter_turns,
                    class_probabilities=plan.class_probabilities,
                ),
                identity,
                study=study,
            )
        else:
            ds = not_assessed_report(
                source,
                NotAssessedFinding(
                    reason=plan.not_assessable_reason or "unfamiliar",
                    detail=plan.not_assessable_detail or "",
                    model_version=plan.model_version,
                    calibration_version=plan.calibration_version,
                    quarter_turns=plan.quarter_turns,
                ),
                identity,
                study=study,
            )
        # A name of its own: two workers may build the same report at once, and the one
        # whose record is refused removes its file, never the other's.
        unique = uuid.uuid4().hex[:12]
        stored = self.outbox.write(
            encoded(ds),
            name=self.outbox.new_name(stem=f"study-report-{plan.job_id}-{plan.revision}-{unique}"),
        )
        return queue.NewOutput(
            kind=OutputKind.STRUCTURED_REPORT,
            sop_class_uid=str(ds.SOPClassUID),
            sop_instance_uid=identity.sop_instance_uid,
            series_instance_uid=identity.series_instance_uid,
            file_name=stored.name,
            size_bytes=stored.size,
        )
