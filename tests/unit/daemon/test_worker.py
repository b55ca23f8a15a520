"""The worker on a real SQLite file with a small real model: each way a job can end."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless
from sqlalchemy import select

from chestaid.dicom_outputs import TriageFinding, triage_image
from chestaid.imaging import needed_size, read_dicom, read_for_scoring
from chestaid.inference import Scorer
from chestaid.models import ChestNet
from chestaid.overlay import display_image
from daemon.db import queue
from daemon.db.models import Delivery, Job, JobState, Output, OutputKind, Result, utcnow
from daemon.db.session import SessionFactory, writing
from daemon.heatmaps import decode_cam
from daemon.serving import ActiveModel
from daemon.settings import WorkerSettings
from daemon.spool import FileStore
from daemon.worker import Worker
from tests.daemon_harness import record_received
from tests.dicom_factory import chestaid_output_bytes, make_dx
from tests.scorers import (
    NOISE_DETAIL,
    NotAssessableScorer,
    TurnedUprightScorer,
    active_model,
    tiny_net,
)


@pytest.fixture(scope="module")
def net() -> ChestNet:
    return tiny_net()


def _active(net: ChestNet, kind: type[Scorer] = Scorer) -> ActiveModel:
    return active_model(net, kind)


@pytest.fixture(scope="module")
def model(net: ChestNet) -> ActiveModel:
    return _active(net)


def _worker(
    tmp_path: Path,
    sessions: SessionFactory,
    model: ActiveModel,
    *,
    outbox_free: int = 0,
    on_outputs: threading.Event | None = None,
    settings: WorkerSettings | None = None,
) -> Worker:
    return Worker(
        sessions=sessions,
        spool=FileStore(tmp_path / "spool"),
        outbox=FileStore(tmp_path / "outbox", min_free_bytes=outbox_free),
        model=lambda: model,
        destinations=["pacs", "archive"],
        settings=settings
        or WorkerSettings(poll_seconds=0.5, max_attempts=2, study_settle_seconds=0),
        on_outputs=(on_outputs.set if on_outputs is not None else lambda: None),
        owner="host:1:worker:test",
    )


def _receive(worker: Worker, sessions: SessionFactory, data: bytes, uid: str) -> int:
    stored = worker.spool.write(data)
    return record_received(sessions, uid, spool_name=stored.name, size=stored.size)


def _dx_bytes(**kwargs: object) -> tuple[bytes, str]:
    ds = make_dx(rows=96, cols=80, **kwargs)  # type: ignore[arg-type]
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue(), str(ds.SOPInstanceUID)


def _job(sessions: SessionFactory, job_id: int) -> Job:
    with writing(sessions) as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def test_a_chest_radiograph_is_scored_with_outputs_and_deliveries(
    tmp_path: Path, sessions: SessionFactory, model: ActiveModel
) -> None:
    woke = threading.Event()
    worker = _worker(tmp_path, sessions, model, on_outputs=woke)
    data, uid = _dx_bytes()
    job_id = _receive(worker, sessions, data, uid)
    assert worker.process_next()
    assert not worker.process_next()  # nothing else queued
    assert _job(sessions, job_id).state == JobState.DONE
    with writing(sessions) as s:
        result = s.scalars(select(Result)).one()
        outputs = s.scalars(select(Output)).all()
        deliveries = s.scalars(select(Delivery)).all()
        assert result.model_version == "test-1" and result.calibration_version == 3
        assert result.priority == ("URGENT" if result.score >= 0.5 else "ROUTINE")
        assert result.above_threshold == (result.score >= 0.5)
        assert sorted(o.kind.value for o in outputs) == ["sc", "sr"]
        for output in outputs:
            assert (tmp_path / "outbox" / output.file_name).is_file()
        assert len(deliveries) == 4  # 2 outputs x 2 destinations
    assert woke.is_set()


def test_the_result_keeps_the_map_and_the_image_statistics(
    tmp_path: Path, sessions: SessionFactory, model: ActiveModel
) -> None:
    worker = _worker(tmp_path, sessions, model)
    data, uid = _dx_bytes()
    _receive(worker, sessions, data, uid)
    assert worker.process_next()
    # What the worker should have stored, from the same bytes and the same model.
    pixels = read_dicom(data).pixels
    expected = model.scorer.score_pixels(pixels)
    with writing(sessions) as s:
        result = s.scalars(select(Result)).one()
        assert result.cam is not None
        cam = decode_cam(result.cam)
        assert cam.shape == expected.cam.shape and cam.shape[0] > 1 and cam.shape[1] > 1
        assert np.abs(cam - expected.cam).max() <= 5e-5
        assert cam.max() == pytest.approx(1.0)  # normalised: the hottest cell is 1
        assert (result.image_rows, result.image_cols) == (96, 80)
        assert result.image_mean == pytest.approx(float(pixels.mean(dtype=np.float64)))
        assert result.image_std == pytest.approx(float(pixels.std(dtype=np.float64)))
        assert result.image_std is not None and result.image_std > 0


def test_a_jpeg2000_image_is_decoded_no_finer_than_the_model_and_the_sc_need(
    tmp_path: Path, sessions: SessionFactory, model: ActiveModel
) -> None:
    # The model takes 64 px (128 needed a side) and the SC 128 px: a 300 x 260 JPEG 2000
    # image is decoded one level down, at 150 x 130.
    settings = WorkerSettings(poll_seconds=0.5, max_attempts=2, output_max_side=128)
    worker = _worker(tmp_path, sessions, model, settings=settings)
    ds = make_dx(rows=300, cols=260, transfer_syntax=JPEG2000Lossless, window=(2000, 3000))
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    _receive(worker, sessions, data, str(ds.SOPInstanceUID))
    assert worker.process_next()
    need = needed_size(input_size=64, picture_side=128)
    reduced = read_for_scoring(data, need=need).image
    assert reduced.reduction == 1 and reduced.pixels.shape == (150, 130)
    full = read_dicom(data).pixels
    with writing(sessions) as s:
        result = s.scalars(select(Result)).one()
        # Scored from the reduced decode; the stored size is the image's own.
        assert result.score == pytest.approx(model.scorer.score_pixels(reduced.pixels).score)
        assert (result.image_rows, result.image_cols) == (300, 260)
        assert result.image_mean == pytest.approx(float(reduced.pixels.mean(dtype=np.float64)))
        sc = s.scalars(select(Output).where(Output.kind == OutputKind.SECONDARY_CAPTURE)).one()
        picture = pydicom.dcmread(tmp_path / "outbox" / sc.file_name)
    # The SC shows the image as wide as from the full decode, 128 px on its longer side.
    assert display_image(full, max_side=128).shape == (128, 111)
    assert picture.Columns == 111


def test_chestaid_outputs_sent_back_are_skipped(
    tmp_path: Path, sessions: SessionFactory, model: ActiveModel
) -> None:
    worker = _worker(tmp_path, sessions, model)
    job_id = _receive(worker, sessions, chestaid_output_bytes(), "1.2.3.9.1")
    assert worker.process_next()
    job = _job(sessions, job_id)
    assert job.state == JobState.SKIPPED and "own outputs" in (job.reason or "")


def test_a_lateral_view_is_skipped_and_corrupt_pixels_fail(
    tmp_path: Path, sessions: SessionFactory, model: ActiveModel
) -> None:
    worker = _worker(tmp_path, sessions, model)
    lateral, uid = _dx_bytes(view_position="LL")
    lateral_job = _receive(worker, sessions, lateral, uid)
    ds = make_dx(rows=96, cols=80)
    ds.PixelData = ds.PixelData[:100]
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    corrupt_job = _receive(worker, sessions, buffer.getvalue(), str(ds.SOPInstanceUID))
    assert worker.process_next() and worker.process_next()
    assert _job(sessions, lateral_job).state == JobState.SKIPPED
    corrupt = _job(sessions, corrupt_job)
    assert corrupt.state == JobState.FAILED and "CorruptImageError" in (corrupt.reason or "")
    with writing(sessions) as s:
        assert s.scalars(select(Output)).all() == []


def test_a_full_outbox_is_retried_after_a_pause_then_failed_at_the_limit(
    tmp_path: Path, sessions: SessionFactory, model: ActiveModel
) -> None:
    # A storage fault has its own pauses and limit, beyond max_attempts (issue 13).
    settings = WorkerSettings(
        poll_seconds=0.5, max_attempts=2, retry_initial_seconds=30, retry_max_attempts=3
    )
    worker = _worker(tmp_path, sessions, model, outbox_free=1 << 60, settings=settings)
    data, uid = _dx_bytes()
    job_id = _receive(worker, sessions, data, uid)
    assert worker.process_next()
    job = _job(sessions, job_id)
    assert job.state == JobState.QUEUED and "SpoolFullError" in (job.reason or "")
    assert job.attempts == 1
    assert job.lease_expires_at is not None
    assert job.lease_expires_at > utcnow() + timedelta(seconds=25)  # minutes, not seconds
    assert not worker.process_next()  # not before its pause has passed
    for attempt in (2, 3):
        with writing(sessions) as s:
            claim = queue.claim_job(
                s,
                owner=worker.owner,
                lease_seconds=60,
                max_attempts=2,
                now=utcnow() + timedelta(seconds=600),
            )
        assert claim is not None and claim.attempts == attempt
        worker.process(claim)
        job = _job(sessions, job_id)
        if attempt == 2:  # past max_attempts, still waiting for the disk
            assert job.state == JobState.QUEUED
    assert job.state == JobState.FAILED and "after 3 attempts" in (job.reason or "")
    assert list((tmp_path / "outbox").rglob("*.dcm")) == []


def test_a_worker_that_lost_its_lease_records_nothing(
    tmp_path: Path, sessions: SessionFactory, model: ActiveModel
) -> None:
    worker = _worker(tmp_path, sessions, model)
    data, uid = _dx_bytes()
    job_id = _receive(worker, sessions, data, uid)
    with writing(sessions) as s:
        slow = queue.claim_job(s, owner=worker.owner, lease_seconds=1, max_attempts=3)
    with writing(sessions) as s:
        queue.claim_job(
            s,
            owner="host:2:worker:other",
            lease_seconds=60,
            max_attempts=3,
            now=utcnow() + timedelta(seconds=2),
        )
    assert slow is not None
    worker.process(slow)
    job = _job(sessions, job_id)
    assert job.state == JobState.RUNNING and job.lease_owner == "host:2:worker:other"
    with writing(sessions) as s:
        assert s.scalars(select(Result)).all() == []


def _outputs(tmp_path: Path, sessions: SessionFactory) -> dict[OutputKind, pydicom.Dataset]:
    with writing(sessions) as s:
        rows = s.scalars(select(Output)).all()
        return {o.kind: pydicom.dcmread(tmp_path / "outbox" / o.file_name) for o in rows}


def _content(ds: pydicom.Dataset) -> list[pydicom.Dataset]:
    found = []
    for item in ds.get("ContentSequence", []):
        found.append(item)
        found.extend(_content(item))
    return found


def test_a_not_assessable_image_is_recorded_with_its_reason_no_band_and_no_map(
    tmp_path: Path, sessions: SessionFactory, net: ChestNet, caplog: pytest.LogCaptureFixture
) -> None:
    model = _active(net, NotAssessableScorer)
    woke = threading.Event()
    worker = _worker(tmp_path, sessions, model, on_outputs=woke)
    data, uid = _dx_bytes(PatientName="Secret^Patient", PatientID="PID-4711")
    job_id = _receive(worker, sessions, data, uid)
    with caplog.at_level(logging.INFO, logger="daemon.worker"):
        assert worker.process_next()
    assert _job(sessions, job_id).state == JobState.DONE
    plain = _active(net).scorer.score_pixels(read_dicom(data).pixels)
    with writing(sessions) as s:
        result = s.scalars(select(Result)).one()
        assert not result.assessable
        assert (result.not_assessable_reason, result.not_assessable_detail) == (
            "noise",
            NOISE_DETAIL,
        )
        assert result.priority is None and result.above_threshold is False
        assert result.cam is None  # nothing to overlay
        # The score and logit are kept for audit.
        assert result.score == pytest.approx(plain.score)
        assert result.logit == pytest.approx(plain.logit)
        assert result.image_mean is not None
        assert len(s.scalars(select(Delivery)).all()) == 4  # SC and SR, 2 destinations
    assert woke.is_set()

    outputs = _outputs(tmp_path, sessions)
    sc, sr = outputs[OutputKind.SECONDARY_CAPTURE], outputs[OutputKind.STRUCTURED_REPORT]
    assert "NOT assessed" in sc.SeriesDescription and sc.StudyInstanceUID == sr.StudyInstanceUID
    rgb = sc.pixel_array[:96].astype(int)  # the image part (96 rows): grey, no heat map
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    items = _content(sr)
    assert [i for i in items if i.ValueType == "NUM"] == []  # no score
    codes = {i.ConceptCodeSequence[0].CodeValue for i in items if i.ValueType == "CODE"}
    assert "121059" in codes and not codes & {"52101004", "272519000"}  # undetermined only
    comments = [i.TextValue for i in items if i.ValueType == "TEXT"]
    assert any(c.startswith(f"Not assessable: noise: {NOISE_DETAIL}") for c in comments)

    (line,) = [r for r in caplog.records if r.getMessage() == "job not assessable"]
    logged_fields = tuple(getattr(line, k) for k in ("job_id", "sop_instance_uid", "reason"))
    assert logged_fields == (job_id, uid, "noise")
    assert not [r for r in caplog.records if r.getMessage() == "job scored"]
    logged = " ".join(str(v) for r in caplog.records for v in vars(r).values())
    assert "Secret" not in logged and "PID-4711" not in logged


def test_an_image_turned_upright_to_score_gets_its_map_turned_back(
    tmp_path: Path, sessions: SessionFactory, net: ChestNet
) -> None:
    model = _active(net, TurnedUprightScorer)
    worker = _worker(tmp_path, sessions, model)
    data, uid = _dx_bytes()
    _receive(worker, sessions, data, uid)
    assert worker.process_next()
    pixels = read_dicom(data).pixels
    upright = _active(net).scorer.score_pixels(np.rot90(pixels, k=1))
    as_received = np.rot90(upright.cam, k=-1)
    assert not np.allclose(as_received, upright.cam, atol=1e-3)  # the test can tell them apart
    with writing(sessions) as s:
        result = s.scalars(select(Result)).one()
        assert result.assessable and result.quarter_turns == 1
        assert result.priority in ("URGENT", "ROUTINE")
        assert result.cam is not None
        np.testing.assert_allclose(decode_cam(result.cam), as_received, atol=5e-5)

    outputs = _outputs(tmp_path, sessions)
    sc, sr = outputs[OutputKind.SECONDARY_CAPTURE], outputs[OutputKind.STRUCTURED_REPORT]
    settings = worker.settings
    expected = triage_image(
        pixels,
        as_received,
        TriageFinding(
            score=upright.score,
            threshold=0.5,
            above_threshold=upright.above_threshold,
            priority=str(result.priority),
            model_version="test-1",
            calibration_version=3,
            quarter_turns=1,
        ),
        max_side=settings.output_max_side,
        alpha=settings.overlay_alpha,
    )
    np.testing.assert_array_equal(sc.pixel_array, expected.pixels)
    assert "Scored after turning upright by 1 x 90 degrees" in sc.DerivationDescription
    comments = [i.TextValue for i in _content(sr) if i.ValueType == "TEXT"]
    assert any(c.startswith("Scored after turning upright by 1 x 90 degrees") for c in comments)
