"""The way of one study, end to end, with real peers.

DCMTK's storescu sends generated CR/DX images (MONOCHROME1 and 2, 16-bit, JPEG 2000,
RLE, JPEG lossless, deflate) to a running ``chestaid-daemon``; DCMTK's storescp receives
the Secondary Capture and the SR; the test reads them back, checks study, series and
references, runs dciodvfy on each, and checks the database rows.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    RLELossless,
)

from tests.daemon_harness import Daemon, StoreSCP, storescu, wait_until
from tests.dicom_factory import make_dx, require_tool

pytestmark = pytest.mark.integration

SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"
COMPREHENSIVE_SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.33"
PATIENT_NAME = "Flowtest^Patient"
PATIENT_ID = "PID-FLOW-4242"

VARIANTS = [
    ("dx-mono2-16bit", {"modality": "DX", "bits_stored": 16, "photometric": "MONOCHROME2"}),
    ("cr-mono1-12bit", {"modality": "CR", "bits_stored": 12, "photometric": "MONOCHROME1"}),
    ("dx-j2k", {"modality": "DX", "bits_stored": 12, "transfer_syntax": JPEG2000Lossless}),
    ("cr-rle", {"modality": "CR", "bits_stored": 12, "transfer_syntax": RLELossless}),
    ("dx-jpeg-baseline", {"modality": "DX", "bits_stored": 8, "transfer_syntax": JPEGBaseline8Bit}),
    ("dx-jpeg-lossless", {"modality": "DX", "bits_stored": 12, "transfer_syntax": JPEGLosslessSV1}),
    (
        "dx-deflate",
        {"modality": "DX", "bits_stored": 12, "transfer_syntax": DeflatedExplicitVRLittleEndian},
    ),
]


@pytest.fixture
def daemon(tmp_path: Path, pacs: StoreSCP) -> Iterator[Daemon]:
    d = Daemon(tmp_path / "node", destinations=[pacs.destination()])
    d.start()
    yield d
    d.stop()


def _sources(directory: Path) -> dict[str, pydicom.Dataset]:
    directory.mkdir(parents=True, exist_ok=True)
    sources = {}
    for seed, (name, kwargs) in enumerate(VARIANTS):
        ds = make_dx(
            directory / f"{name}.dcm",
            rows=256,
            cols=208,
            seed=seed,
            PatientName=PATIENT_NAME,
            PatientID=PATIENT_ID,
            **kwargs,  # type: ignore[arg-type]
        )
        sources[str(ds.SOPInstanceUID)] = ds
    return sources


def test_every_variant_is_scored_and_its_outputs_delivered(
    tmp_path: Path, daemon: Daemon, pacs: StoreSCP
) -> None:
    dciodvfy = require_tool("dciodvfy", "dicom3tools")
    sources = _sources(tmp_path / "send")
    for path in sorted((tmp_path / "send").iterdir()):
        sent = storescu([path], daemon.port)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert "Received Store Response (Success)" in sent.stdout + sent.stderr
    wait_until(
        lambda: len(pacs.files()) >= 2 * len(sources), timeout=120, what="outputs at the PACS"
    )
    wait_until(daemon.terminal, timeout=30, what="all jobs and deliveries terminal")

    received = [pydicom.dcmread(p) for p in pacs.files()]
    assert len(received) == 2 * len(sources)  # nothing delivered twice
    by_source: dict[str, list[pydicom.Dataset]] = {}
    for ds in received:
        if ds.SOPClassUID == SC_CLASS:
            ref = ds.SourceImageSequence[0].ReferencedSOPInstanceUID
        else:
            assert ds.SOPClassUID == COMPREHENSIVE_SR_CLASS
            ref = _sr_referenced_uid(ds)
        by_source.setdefault(str(ref), []).append(ds)
    assert set(by_source) == set(sources)
    for uid, outputs in by_source.items():
        source = sources[uid]
        assert sorted(o.SOPClassUID for o in outputs) == sorted([SC_CLASS, COMPREHENSIVE_SR_CLASS])
        for out in outputs:
            assert out.StudyInstanceUID == source.StudyInstanceUID
            assert out.SeriesInstanceUID != source.SeriesInstanceUID
            assert out.PatientID == source.PatientID
            assert str(out.Manufacturer) == "ChestAid"
        sc = next(o for o in outputs if o.SOPClassUID == SC_CLASS)
        assert sc.BurnedInAnnotation == "YES"
        assert sc.SamplesPerPixel == 3

    for path in pacs.files():
        check = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True)
        errors = [line for line in (check.stdout + check.stderr).splitlines() if "Error" in line]
        assert errors == [], f"{path.name}: {errors}"

    rows = daemon.query(
        "SELECT i.sop_instance_uid, j.state, r.score, r.priority, r.model_version,"
        " r.calibration_version FROM instances i JOIN jobs j ON j.instance_id = i.id"
        " JOIN results r ON r.job_id = j.id"
    )
    assert {r[0] for r in rows} == set(sources)
    for _uid, state, score, priority, model_version, calibration_version in rows:
        assert state == "done"
        assert 0.0 <= score <= 1.0
        assert priority in {"URGENT", "ROUTINE"}
        assert model_version and calibration_version >= 1
    deliveries = daemon.query("SELECT state, count(*) FROM deliveries GROUP BY state")
    assert deliveries == [("delivered", 2 * len(sources))]

    # Logs carry UIDs and job ids, never the patient's name or ID.
    logs = daemon.logs()
    assert "job_id" in logs and next(iter(sources)) in logs
    assert PATIENT_ID not in logs and "Flowtest" not in logs


def _sr_referenced_uid(ds: pydicom.Dataset) -> str:
    """The SOP Instance UID of the image an SR's content references."""
    stack = list(ds.ContentSequence)
    while stack:
        item = stack.pop()
        if "ReferencedSOPSequence" in item:
            return str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
        stack.extend(item.get("ContentSequence", []))
    raise AssertionError("the SR references no image")


def test_a_copy_received_again_is_kept_once(tmp_path: Path, daemon: Daemon, pacs: StoreSCP) -> None:
    path = tmp_path / "one.dcm"
    make_dx(path, rows=128, cols=128)
    for _ in range(2):
        sent = storescu([path], daemon.port)
        assert sent.returncode == 0 and "Success" in sent.stdout + sent.stderr
    wait_until(lambda: len(pacs.files()) >= 2, timeout=60, what="outputs")
    wait_until(daemon.terminal, timeout=30, what="terminal states")
    assert daemon.query("SELECT count(*) FROM instances") == [(1,)]
    assert len(pacs.files()) == 2
