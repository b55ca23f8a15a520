"""One report a study, end to end: a running daemon, DCMTK's storescu and storescp, an
MLLP listener as the RIS, dciodvfy on every SR.

A study's images come in separate associations within the settle time and get one SR
at the PACS and one ORU^R01 at the RIS; a later image that raises the study's band
gets a replacing SR and a second message; one that does not raise it gets neither.

The bundled model scores the factory's phantoms by their seed, the same on every run
(at 128 x 128: seed 1 about 0.888, seed 3 about 0.932, seed 9 about 0.940 and seed 5
about 0.945, against a governed threshold about 0.933); a MEDIUM band from 0.91 puts
seed 1 in ROUTINE, seed 3 in MEDIUM and seeds 9 and 5 in URGENT.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from hl7apy.core import Message

from chestaid.dicom_outputs.read_back import read_triage_report
from tests.daemon_harness import Daemon, StoreSCP, storescu, wait_until
from tests.dicom_factory import make_dx, require_tool
from tests.mllp_peer import MllpPeer

pytestmark = pytest.mark.integration

STUDY = "1.2.826.0.1.3680043.10.1364.42.7"
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.33"
BANDS = [
    {"name": "URGENT", "min_score": "threshold"},
    {"name": "MEDIUM", "min_score": 0.91},
    {"name": "ROUTINE", "min_score": 0.0},
]


@pytest.fixture
def daemon(tmp_path: Path, pacs: StoreSCP, ris: MllpPeer) -> Iterator[Daemon]:
    d = Daemon(
        tmp_path / "node",
        sections={
            "worker": {"study_settle_seconds": 3.0},
            "priority": {"bands": BANDS},
        },
        destinations=[
            pacs.destination(),
            {"kind": "hl7", "name": "ris", "host": "127.0.0.1", "port": ris.port},
        ],
    )
    d.start()
    yield d
    d.stop()


def _image(directory: Path, seed: int) -> Path:
    path = directory / f"seed-{seed}.dcm"
    make_dx(
        path,
        rows=128,
        cols=128,
        seed=seed,
        StudyInstanceUID=STUDY,
        AccessionNumber="ACC-STUDY-1",
        PatientID="P-STUDY",
    )
    return path


def _send(path: Path, daemon: Daemon) -> None:
    sent = storescu([path], daemon.port)
    assert sent.returncode == 0 and "Success" in sent.stdout + sent.stderr, sent.stderr


def _reports(pacs: StoreSCP) -> list[pydicom.Dataset]:
    found = [pydicom.dcmread(p) for p in pacs.files()]
    return sorted((d for d in found if d.SOPClassUID == SR_CLASS), key=lambda d: d.InstanceNumber)


def _band(message: Message) -> str:
    """The band a message states (its PNEUMONIA-BAND observation)."""
    for segment in str(message.to_er7()).split("\r"):
        fields = segment.split("|")
        if fields[0] == "OBX" and fields[3].split("^")[0] == "PNEUMONIA-BAND":
            return fields[5]
    raise AssertionError("the message states no band")


def _settled(daemon: Daemon, images: int) -> bool:
    """Every image scored, the study's report decided, and every delivery done."""
    rows = daemon.query(
        "SELECT images, report_pending FROM studies WHERE study_instance_uid = :uid", uid=STUDY
    )
    return bool(rows) and rows[0][0] == images and not rows[0][1] and daemon.terminal()


def test_a_study_sent_in_two_associations_gets_one_report_and_an_update_only_when_raised(
    tmp_path: Path, daemon: Daemon, pacs: StoreSCP, ris: MllpPeer
) -> None:
    dciodvfy = require_tool("dciodvfy", "dicom3tools")
    send = tmp_path / "send"
    send.mkdir()
    routine, medium, urgent, urgent_too = (_image(send, seed) for seed in (1, 3, 9, 5))

    # Two associations, one image each, within the settle time: one report.
    _send(routine, daemon)
    _send(medium, daemon)
    wait_until(lambda: _settled(daemon, 2), timeout=120, what="the study settled and reported")
    assert ris.wait_count(1, timeout=30)
    (first,) = _reports(pacs)
    said = read_triage_report(first)
    assert said.band == "MEDIUM"
    assert said.image_sop_instance_uid == str(pydicom.dcmread(medium).SOPInstanceUID)
    assert len(ris.received) == 1 and _band(ris.received[0]) == "MEDIUM"
    assert daemon.query("SELECT band FROM studies") == [("MEDIUM",)]

    # A later image that raises the band: a replacing report and a second message.
    _send(urgent, daemon)
    wait_until(lambda: _settled(daemon, 3), timeout=120, what="the raised study reported")
    assert ris.wait_count(2, timeout=30)
    first, second = _reports(pacs)
    updated = read_triage_report(second)
    assert updated.band == "URGENT" and updated.suspected is True
    assert updated.image_sop_instance_uid == str(pydicom.dcmread(urgent).SOPInstanceUID)
    assert second.SeriesInstanceUID == first.SeriesInstanceUID
    assert second.SOPInstanceUID != first.SOPInstanceUID
    replaced = second.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
    assert replaced.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == first.SOPInstanceUID
    assert [_band(m) for m in ris.received] == ["MEDIUM", "URGENT"]
    notes = [str(m.to_er7()).count("replaces ChestAid's earlier result") for m in ris.received]
    assert notes == [0, 1]

    # A later image in the same band (even with a higher score): nothing more is sent.
    _send(urgent_too, daemon)
    wait_until(lambda: _settled(daemon, 4), timeout=120, what="the fourth image decided on")
    assert len(_reports(pacs)) == 2 and len(ris.received) == 2
    assert daemon.query("SELECT count(*) FROM outputs WHERE kind = 'sc'") == [(4,)]
    assert daemon.query("SELECT count(*) FROM outputs WHERE kind = 'sr'") == [(2,)]
    assert ris.invalid == []

    for report in pacs.files():
        if pydicom.dcmread(report).SOPClassUID != SR_CLASS:
            continue
        check = subprocess.run([dciodvfy, str(report)], capture_output=True, text=True)
        errors = [line for line in (check.stdout + check.stderr).splitlines() if "Error" in line]
        assert errors == [], f"{report.name}: {errors}"
