"""A study whose image is not assessable, end to end on loopback with real peers.

The daemon's roles (SCP, worker, sender) run in this process as ``Service`` runs them,
on a migrated SQLite file, serving the bundled model with its not-assessable checks;
DCMTK's storescu sends a featureless image (a uniform grey DX, as a detector fault or a
blank exposure gives) and storescp receives the outputs. Then the worklist command
lists the study as NOT ASSESSED.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from sqlalchemy import text

from daemon.cli import main as daemon_cli
from daemon.db.migrate import upgrade
from daemon.db.session import make_engine
from daemon.service import Service
from daemon.settings import Settings, load_settings
from tests.daemon_harness import StoreSCP, free_port, storescu, wait_until, write_config
from tests.dicom_factory import make_dx, require_tool

pytestmark = pytest.mark.integration

SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"
PATIENT_ID = "PID-NA-0815"


@pytest.fixture
def settings_path(tmp_path: Path, pacs: StoreSCP) -> Path:
    return write_config(
        tmp_path / "chestaid.toml",
        {
            "node": {"ae_title": "CHESTAID", "host": "127.0.0.1", "port": free_port()},
            "storage": {"var_dir": str(tmp_path / "var"), "min_free_mb": 0},
            "worker": {"poll_seconds": 0.5},
            "sender": {"poll_seconds": 0.5, "backoff_initial_seconds": 0.5},
            # No bundle named: the bundled model, checks on; PyTorch as it is.
            "model": {"threads": 1, "runtime": "torch", "precision": "f32"},
        },
        [pacs.destination()],
    )


@pytest.fixture
def service(settings_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    settings = load_settings(settings_path)
    engine = make_engine(settings.storage.url)
    upgrade(engine)
    engine.dispose()
    running = Service(settings, roles=("scp", "worker", "sender"))
    running.start()
    yield running
    running.stop()


def _rows(settings: Settings, sql: str) -> list[tuple[object, ...]]:
    engine = make_engine(settings.storage.url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql)).all()]
    finally:
        engine.dispose()


def test_a_not_assessable_image_is_recorded_delivered_and_listed_as_not_assessed(
    tmp_path: Path,
    settings_path: Path,
    service: Service,
    pacs: StoreSCP,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = service.settings
    path = tmp_path / "na.dcm"
    blank = np.full((256, 208), 1800, dtype=np.uint16)  # 12-bit stored values, one grey
    source = make_dx(path, rows=256, cols=208, pixels=blank, PatientID=PATIENT_ID)
    sent = storescu([path], settings.node.port)
    assert "Received Store Response (Success)" in sent.stdout + sent.stderr

    wait_until(lambda: len(pacs.files()) >= 2, timeout=120, what="two outputs at the PACS")
    wait_until(
        lambda: _rows(settings, "SELECT state FROM deliveries") == [("delivered",)] * 2,
        timeout=60,
        what="both deliveries delivered",
    )
    (row,) = _rows(
        settings,
        "SELECT j.state, r.assessable, r.not_assessable_reason, r.not_assessable_detail,"
        " r.priority, r.above_threshold, r.cam FROM jobs j JOIN results r ON r.job_id = j.id",
    )
    state, assessable, reason, detail, priority, above, cam = row
    assert (state, assessable, reason, priority, above, cam) == (
        "done",
        0,
        "featureless",
        None,
        0,
        None,
    )
    assert isinstance(detail, str) and detail

    dciodvfy = require_tool("dciodvfy", "dicom3tools")
    received = {pydicom.dcmread(p).SOPClassUID: p for p in pacs.files()}
    assert len(received) == 2
    sc = pydicom.dcmread(received[SC_CLASS])
    assert sc.StudyInstanceUID == source.StudyInstanceUID and "NOT assessed" in sc.SeriesDescription
    for path in received.values():
        check = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True)
        errors = [line for line in (check.stdout + check.stderr).splitlines() if "Error" in line]
        assert errors == [], f"{path.name}: {errors}"

    capsys.readouterr()
    assert daemon_cli(["worklist", "--format", "json", "--config", str(settings_path)]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["study_instance_uid"] == source.StudyInstanceUID
    assert listed["not_assessed"] == "NOT ASSESSED: featureless (1 image)"
    assert (listed["band"], listed["score"]) == (None, None)
