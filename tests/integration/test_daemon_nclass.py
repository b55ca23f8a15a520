"""An N-class bundle served end to end: a running daemon serving a four-class bundle
(NORMAL, BACTERIAL, VIRAL, COVID-19): one of random weights with vector-scaled
calibration, and the bundled findings model a site chooses by name,
DCMTK's storescu sending it a radiograph, storescp as the PACS, an MLLP listener as the
RIS, dciodvfy on the SR.

The SR at the PACS states the calibrated probability of each class, summing to one,
beside the probability of pneumonia, which is one minus that of NORMAL; the ORU^R01 at
the RIS carries them as observations; the database keeps them with the result.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from chestaid.dicom_outputs.read_back import read_triage_report
from tests.bundles import nclass_bundle
from tests.daemon_harness import Daemon, StoreSCP, storescu, wait_until
from tests.dicom_factory import make_dx, require_tool
from tests.mllp_peer import MllpPeer
from tests.multiclass_bundles import FOUR_CLASSES

pytestmark = pytest.mark.integration

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.33"


@pytest.fixture(params=["random four-class bundle", "bundled findings model"])
def daemon(
    request: pytest.FixtureRequest, tmp_path: Path, pacs: StoreSCP, ris: MllpPeer
) -> Iterator[Daemon]:
    if request.param == "bundled findings model":
        # What a site writes in its chestaid.toml; no bundle, so the named one serves.
        model = {"builtin": "findings", "bundle": None}
    else:
        model = {"bundle": str(nclass_bundle(tmp_path / "bundle"))}
    d = Daemon(
        tmp_path / "node",
        sections={"model": model},
        destinations=[
            pacs.destination(),
            {"kind": "hl7", "name": "ris", "host": "127.0.0.1", "port": ris.port},
        ],
    )
    d.start()
    yield d
    d.stop()


def _reports(pacs: StoreSCP) -> list[pydicom.Dataset]:
    found = [pydicom.dcmread(p) for p in pacs.files()]
    return [d for d in found if d.SOPClassUID == SR_CLASS]


def test_an_nclass_bundle_reports_each_class_probability_in_a_valid_sr(
    tmp_path: Path, daemon: Daemon, pacs: StoreSCP, ris: MllpPeer
) -> None:
    dciodvfy = require_tool("dciodvfy", "dicom3tools")
    image = tmp_path / "image.dcm"
    make_dx(image, rows=128, cols=128, seed=3, PatientID="P-NCLASS")
    sent = storescu([image], daemon.port)
    assert sent.returncode == 0 and "Success" in sent.stdout + sent.stderr, sent.stderr

    wait_until(
        lambda: daemon.query("SELECT COUNT(*) FROM results")[0][0] == 1 and daemon.terminal(),
        timeout=180,
        what="the image scored and its outputs delivered",
    )
    wait_until(lambda: _reports(pacs), timeout=60, what="the study's SR at the PACS")
    (report,) = _reports(pacs)
    said = read_triage_report(report)
    assert said.image_sop_instance_uid == str(pydicom.dcmread(image).SOPInstanceUID)
    assert [name for name, _ in said.class_probabilities] == list(FOUR_CLASSES)
    probabilities = dict(said.class_probabilities)
    assert all(0.0 <= p <= 1.0 for p in probabilities.values())
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    assert said.score is not None
    assert said.score == pytest.approx(1.0 - probabilities["NORMAL"], abs=1e-6)

    ((stored, score),) = daemon.query("SELECT class_probabilities, score FROM results")
    kept = [(str(name), float(p)) for name, p in json.loads(stored)]
    assert [name for name, _ in kept] == list(FOUR_CLASSES)
    assert [p for _, p in kept] == pytest.approx(list(probabilities.values()), abs=1e-9)
    assert score == pytest.approx(said.score, abs=1e-9)

    assert ris.wait_count(1, timeout=30)
    segments = str(ris.received[0].to_er7()).split("\r")
    observed = {
        fields[3].split("^")[0]: fields[5]
        for fields in (s.split("|") for s in segments)
        if fields[0] == "OBX"
    }
    for name, p in said.class_probabilities:
        assert float(observed[f"PROB-{name}"]) == pytest.approx(p, abs=5e-5)

    (path,) = [p for p in pacs.files() if pydicom.dcmread(p).SOPClassUID == SR_CLASS]
    proc = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=60)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert "ComprehensiveSR" in lines, lines
    assert not [line for line in lines if "Error" in line or line.startswith("Abort")], lines
