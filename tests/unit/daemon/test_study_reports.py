"""Study-level triage: the roll-up rules, when a study's report is issued, and its updates.

The worker scores with a scorer whose score is the image's height in pixels / 200, so
each image's score is chosen by the test: a lateral or an image For Processing can be
made to "score" higher than the study's frontal, and must still not decide.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.uid import DigitalXRayImageStorageForProcessing
from sqlalchemy import select

from chestaid.dicom_outputs.read_back import read_triage_report
from chestaid.inference import Prediction, Scorer
from chestaid.models import ChestNet
from daemon.db import study_reports as db
from daemon.db.models import Delivery, Job, JobState, Output, OutputKind, Study, utcnow
from daemon.db.session import SessionFactory, writing
from daemon.serving import ActiveModel
from daemon.settings import WorkerSettings
from daemon.spool import FileStore
from daemon.study_reports import StudyReports, report_identity
from daemon.worker import Worker
from tests.daemon_harness import record_received
from tests.dicom_factory import make_dx
from tests.scorers import active_model, tiny_net

STUDY = "1.2.3"  # the study every image of these tests is recorded in
NAMES = ("URGENT", "ROUTINE")


class HeightScorer(Scorer):
    """Scores an image by its height: rows / 200 (threshold 0.5: 100 rows and up URGENT)."""

    def score_pixels(self, pixels: np.ndarray) -> Prediction:
        scored = super().score_pixels(pixels)
        score = min(0.99, pixels.shape[0] / 200)
        return dataclasses.replace(
            scored,
            score=score,
            logit=math.log(score / (1 - score)),
            above_threshold=score >= scored.threshold,
        )


@pytest.fixture(scope="module")
def net() -> ChestNet:
    return tiny_net()


@pytest.fixture(scope="module")
def model(net: ChestNet) -> ActiveModel:
    return active_model(net, HeightScorer)


def _worker(
    tmp_path: Path, sessions: SessionFactory, model: ActiveModel, *, settle: float = 0.0
) -> Worker:
    return Worker(
        sessions=sessions,
        spool=FileStore(tmp_path / "spool"),
        outbox=FileStore(tmp_path / "outbox"),
        model=lambda: model,
        destinations={"pacs": frozenset({"sc", "sr"}), "ris": frozenset({"sr"})},
        settings=WorkerSettings(poll_seconds=0.5, study_settle_seconds=settle),
        owner="host:1:worker:test",
    )


def _receive(worker: Worker, sessions: SessionFactory, *, rows: int, **kwargs: Any) -> str:
    """Spool and record an image of the study, ``rows`` high; returns its SOP Instance UID."""
    ds = make_dx(rows=rows, cols=80, StudyInstanceUID=STUDY, **kwargs)
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    stored = worker.spool.write(buffer.getvalue())
    record_received(sessions, str(ds.SOPInstanceUID), spool_name=stored.name, size=stored.size)
    return str(ds.SOPInstanceUID)


def _score_all(worker: Worker) -> None:
    while worker.process_next():
        pass


def _reports(tmp_path: Path, sessions: SessionFactory) -> list[pydicom.Dataset]:
    with writing(sessions) as s:
        names = s.scalars(
            select(Output.file_name)
            .where(Output.kind == OutputKind.STRUCTURED_REPORT)
            .order_by(Output.id)
        ).all()
    return [pydicom.dcmread(tmp_path / "outbox" / name) for name in names]


def _study(sessions: SessionFactory) -> Study:
    with writing(sessions) as s:
        study = s.scalars(select(Study).where(Study.study_instance_uid == STUDY)).one()
        s.expunge(study)
        return study


@pytest.mark.parametrize(
    ("reported", "now", "needed"),
    [
        ((0, None, None), ("ROUTINE", False), True),  # the first report
        ((1, "ROUTINE", False), ("ROUTINE", False), False),  # no change
        ((1, "URGENT", True), ("ROUTINE", False), False),  # lower: never sent
        ((1, "ROUTINE", False), ("URGENT", True), True),  # a higher band
        ((1, "URGENT", False), ("URGENT", True), True),  # now above the threshold
        ((1, None, None), ("ROUTINE", False), True),  # a first assessable image
        ((1, None, None), (None, False), False),  # still not assessed
        ((1, "URGENT", True), (None, False), False),
    ],
)
def test_a_report_is_issued_first_and_then_only_when_the_priority_rises(
    reported: tuple[int, str | None, bool | None], now: tuple[str | None, bool], needed: bool
) -> None:
    revision, band, above = reported
    assert (
        db.report_needed(
            revision=revision,
            reported_band=band,
            reported_above=above,
            band=now[0],
            above=now[1],
            names=NAMES,
        )
        is needed
    )


def test_the_highest_frontal_decides_and_laterals_and_for_processing_images_do_not(
    tmp_path: Path, sessions: SessionFactory, model: ActiveModel
) -> None:
    worker = _worker(tmp_path, sessions, model)
    frontal = _receive(worker, sessions, rows=80)  # 0.40
    higher = _receive(worker, sessions, rows=90)  # 0.45: the highest frontal
    _receive(worker, sessions, rows=180, view_position="LL")  # 0.90 if it were scored
    _receive(
        worker,
        sessions,
        rows=180,
        sop_class=DigitalXRayImageStorageForProcessing,
        PresentationIntentType="FOR PROCESSING",
    )
    _receive(worker, sessions, rows=180, PresentationIntentType="FOR PROCESSING")
    _score_all(worker)

    with writing(sessions) as s:
        states = sorted(j.state.value for j in s.scalars(select(Job)).all())
    assert states == ["done", "done", "skipped", "skipped", "skipped"]
    study = _study(sessions)
    assert study.images == 2 and study.band == "ROUTINE"
    assert study.score == pytest.approx(0.45)
    (report,) = _reports(tmp_path, sessions)  # one report for the study
    read = read_triage_report(report)
    assert read.image_sop_instance_uid == higher != frontal
    assert read.score == pytest.approx(0.45) and read.band == "ROUTINE"
    assert report.StudyInstanceUID == STUDY


def test_the_report_waits_for_the_study_to_settle(
    tmp_path: Path, sessions: SessionFactory, model: ActiveModel
) -> None:
    worker = _worker(tmp_path, sessions, model, settle=30.0)
    _receive(worker, sessions, rows=80)
    _score_all(worker)
    assert _reports(tmp_path, sessions) == []  # scored, its SC written, not settled yet
    with writing(sessions) as s:
        assert [o.kind for o in s.scalars(select(Output)).all()] == [OutputKind.SECONDARY_CAPTURE]
    assert _study(sessions).report_pending
    due_in = worker.reports.seconds_to_next()
    assert due_in is not None and 0 < due_in <= 30

    assert worker.reports.issue_due(now=utcnow() + timedelta(seconds=10)) == 0
    assert worker.reports.issue_due(now=utcnow() + timedelta(seconds=31)) == 1
    assert len(_reports(tmp_path, sessions)) == 1
    assert worker.reports.seconds_to_next() is None


def test_an_image_still_to_score_holds_the_report(
    tmp_path: Path, sessions: SessionFactory, model: ActiveModel
) -> None:
    worker = _worker(tmp_path, sessions, model)
    _receive(worker, sessions, rows=80)
    _receive(worker, sessions, rows=160)
    assert worker.process_next()  # the first image: the second still queued
    assert _reports(tmp_path, sessions) == []
    assert worker.process_next()
    (report,) = _reports(tmp_path, sessions)
    assert read_triage_report(report).band == "URGENT"


def test_a_later_image_that_raises_the_band_replaces_the_report_and_one_that_does_not_is_silent(
    tmp_path: Path, sessions: SessionFactory, model: ActiveModel
) -> None:
    worker = _worker(tmp_path, sessions, model)
    _receive(worker, sessions, rows=80)  # ROUTINE
    _score_all(worker)
    raising = _receive(worker, sessions, rows=160)  # URGENT, above the threshold
    _score_all(worker)
    _receive(worker, sessions, rows=120)  # URGENT too, lower: nothing new
    _receive(worker, sessions, rows=60)
    _score_all(worker)

    first, second = _reports(tmp_path, sessions)
    assert read_triage_report(first).band == "ROUTINE"
    updated = read_triage_report(second)
    assert updated.band == "URGENT" and updated.suspected is True
    assert updated.image_sop_instance_uid == raising
    assert updated.replaces == first.SOPInstanceUID
    assert read_triage_report(first).replaces is None
    assert second.SeriesInstanceUID == first.SeriesInstanceUID
    assert second.SOPInstanceUID != first.SOPInstanceUID
    assert (first.InstanceNumber, second.InstanceNumber) == (1, 2)
    (predecessor,) = second.PredecessorDocumentsSequence
    replaced = predecessor.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert replaced.ReferencedSOPInstanceUID == first.SOPInstanceUID
    study = _study(sessions)
    assert (study.report_revision, study.reported_band, study.report_pending) == (
        2,
        "URGENT",
        False,
    )
    with writing(sessions) as s:
        deliveries = s.execute(
            select(Delivery.destination, Output.kind).join(Output).order_by(Delivery.id)
        ).all()
    kinds = [(d, k.value) for d, k in deliveries]
    # Four SCs to the PACS; two SRs, each to the PACS and to the RIS.
    assert sorted(kinds) == sorted([("pacs", "sc")] * 4 + [("pacs", "sr"), ("ris", "sr")] * 2)


def test_a_report_planned_but_not_recorded_is_issued_after_a_restart_with_the_same_uids(
    tmp_path: Path, sessions: SessionFactory, model: ActiveModel
) -> None:
    worker = _worker(tmp_path, sessions, model, settle=3600.0)
    _receive(worker, sessions, rows=80)
    _score_all(worker)
    with writing(sessions) as s:
        plan = db.plan_report(s, study_instance_uid=STUDY, band_names=NAMES)
    assert plan is not None  # planned, then the process stops before recording it
    assert _study(sessions).report_pending

    after = StudyReports(
        sessions=sessions,
        spool=worker.spool,
        outbox=worker.outbox,
        destinations=worker.destinations,
        settle_seconds=0.0,
        band_names=lambda: NAMES,
    )
    assert after.issue_due() == 1
    (report,) = _reports(tmp_path, sessions)
    assert report.SOPInstanceUID == report_identity(STUDY, 1).sop_instance_uid
    # The plan made before the stop is stale now: recording it again is refused.
    with writing(sessions) as s:
        output = s.scalars(select(Output).where(Output.kind == OutputKind.STRUCTURED_REPORT)).one()
        assert not db.record_report(s, plan=plan, output=_as_new(output), destinations={})


def test_a_study_that_changed_after_its_plan_is_planned_again(
    tmp_path: Path, sessions: SessionFactory, model: ActiveModel
) -> None:
    worker = _worker(tmp_path, sessions, model, settle=3600.0)
    _receive(worker, sessions, rows=80)
    _score_all(worker)
    with writing(sessions) as s:
        plan = db.plan_report(s, study_instance_uid=STUDY, band_names=NAMES)
    assert plan is not None
    _receive(worker, sessions, rows=160)
    _score_all(worker)  # another image scored meanwhile
    output = worker.reports._build(plan)
    with writing(sessions) as s:
        assert not db.record_report(s, plan=plan, output=output, destinations={})
    assert worker.reports.issue_due(now=utcnow() + timedelta(hours=2)) == 1
    (report,) = _reports(tmp_path, sessions)
    assert read_triage_report(report).band == "URGENT"


def _as_new(output: Output) -> Any:
    from daemon.db.queue import NewOutput

    return NewOutput(
        kind=output.kind,
        sop_class_uid=output.sop_class_uid,
        sop_instance_uid=output.sop_instance_uid + ".9",
        series_instance_uid=output.series_instance_uid,
        file_name=output.file_name,
        size_bytes=output.size_bytes,
    )


def test_a_study_none_of_whose_images_was_assessed_gets_one_not_assessed_report(
    tmp_path: Path, sessions: SessionFactory, net: ChestNet
) -> None:
    from tests.scorers import NotAssessableScorer

    worker = _worker(tmp_path, sessions, active_model(net, NotAssessableScorer))
    first = _receive(worker, sessions, rows=80)
    _receive(worker, sessions, rows=90)
    _score_all(worker)
    (report,) = _reports(tmp_path, sessions)
    read = read_triage_report(report)
    assert read.not_assessable_reason == "noise" and read.band is None
    assert read.image_sop_instance_uid == first
    with writing(sessions) as s:
        assert all(j.state == JobState.DONE for j in s.scalars(select(Job)).all())


def test_a_report_whose_image_is_gone_is_dropped_and_the_worker_goes_on(
    tmp_path: Path, sessions: SessionFactory, model: ActiveModel
) -> None:
    worker = _worker(tmp_path, sessions, model, settle=3600.0)
    _receive(worker, sessions, rows=80)
    _score_all(worker)
    for spooled in (tmp_path / "spool").rglob("*.dcm"):
        spooled.unlink()  # purged before the study settled
    assert worker.reports.issue_due(now=utcnow() + timedelta(hours=2)) == 0
    assert _reports(tmp_path, sessions) == []
    assert not _study(sessions).report_pending  # not tried again on every round
    _receive(worker, sessions, rows=160)
    _score_all(worker)  # a later image still gets its study a report
    assert worker.reports.issue_due(now=utcnow() + timedelta(hours=2)) == 1
    (report,) = _reports(tmp_path, sessions)
    assert read_triage_report(report).band == "URGENT"


def test_two_workers_building_one_report_record_it_once_each_in_its_own_file(
    tmp_path: Path, sessions: SessionFactory, model: ActiveModel
) -> None:
    worker = _worker(tmp_path, sessions, model, settle=3600.0)
    _receive(worker, sessions, rows=80)
    _score_all(worker)
    with writing(sessions) as s:
        plan = db.plan_report(s, study_instance_uid=STUDY, band_names=NAMES)
    assert plan is not None
    mine, theirs = worker.reports._build(plan), worker.reports._build(plan)
    # The same object, in two files: the loser removes its own file, never the winner's.
    assert mine.sop_instance_uid == theirs.sop_instance_uid
    assert mine.file_name != theirs.file_name
    with writing(sessions) as s:
        assert db.record_report(s, plan=plan, output=mine, destinations={"pacs": {"sr"}})
    with writing(sessions) as s:
        assert not db.record_report(s, plan=plan, output=theirs, destinations={"pacs": {"sr"}})
    with writing(sessions) as s:
        assert s.scalars(select(Output.file_name).where(Output.kind == "sr")).all() == [
            mine.file_name
        ]
