"""ChestAid's outputs delivered to a real PACS: Orthanc receives the SC and the SR."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_harness import Daemon, storescu, wait_until
from tests.dicom_factory import make_dx
from tests.orthanc import Orthanc

pytestmark = pytest.mark.integration


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    server = Orthanc(tmp_path / "orthanc").start()
    yield server
    server.stop()


def test_orthanc_receives_the_secondary_capture_and_the_sr(
    tmp_path: Path, orthanc: Orthanc
) -> None:
    daemon = Daemon(
        tmp_path / "node",
        destinations=[
            {
                "name": "orthanc",
                "ae_title": orthanc.ae_title,
                "host": "127.0.0.1",
                "port": orthanc.dicom_port,
            }
        ],
    )
    daemon.start()
    try:
        source = make_dx(
            tmp_path / "cxr.dcm", rows=256, cols=208, modality="CR", photometric="MONOCHROME1"
        )
        assert storescu([tmp_path / "cxr.dcm"], daemon.port).returncode == 0
        wait_until(
            lambda: len(orthanc.get("/instances")) >= 2, timeout=90, what="two instances in Orthanc"
        )
        wait_until(daemon.terminal, timeout=30, what="deliveries to finish")
        tags = [orthanc.get(f"/instances/{i}/simplified-tags") for i in orthanc.get("/instances")]
        assert sorted(t["SOPClassUID"] for t in tags) == [
            "1.2.840.10008.5.1.4.1.1.7",
            "1.2.840.10008.5.1.4.1.1.88.33",
        ]
        assert {t["StudyInstanceUID"] for t in tags} == {str(source.StudyInstanceUID)}
        assert {t["PatientID"] for t in tags} == {str(source.PatientID)}
        assert len({t["SeriesInstanceUID"] for t in tags}) == 2
        assert str(source.SeriesInstanceUID) not in {t["SeriesInstanceUID"] for t in tags}
        study = orthanc.get("/studies")
        assert len(study) == 1
        assert daemon.query("SELECT destination, state FROM deliveries") == [
            ("orthanc", "delivered"),
            ("orthanc", "delivered"),
        ]
    finally:
        daemon.stop()
