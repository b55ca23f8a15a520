"""Hostile C-STOREs against a live daemon: deflate bombs, malformed UIDs, a SOP class
on another class's presentation context, unparseable datasets, and ChestAid's own SR
sent back by a PACS. Each gets its documented status, and nothing refused is kept."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    BasicTextSRStorage,
    ComputedRadiographyImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    generate_uid,
)

from chestaid.dicom_outputs import OutputIdentity, TriageFinding, structured_report
from chestaid.imaging import DEFAULT_MAX_INFLATED_BYTES
from tests.daemon_harness import Daemon, storescu, wait_until
from tests.dicom_factory import make_dx
from tests.hostile_dicom import (
    DX,
    MB,
    deflate_bomb,
    meta_end,
    send_file,
    send_on_context,
    write_with_meta,
)

pytestmark = pytest.mark.integration

SUCCESS = 0x0000
SOP_CLASS_NOT_SUPPORTED = 0x0122
DATASET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC210
INFLATES_TOO_FAR = 0xC212


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("hostile") / "node")
    d.start()
    yield d
    d.stop()


def _kept(daemon: Daemon, sop_instance_uid: str) -> int:
    rows = daemon.query(
        "SELECT count(*) FROM instances WHERE sop_instance_uid = :uid", uid=sop_instance_uid
    )
    return int(rows[0][0])


def _spooled(daemon: Daemon) -> set[str]:
    spool = daemon.root / "var" / "spool"
    return {p.name for p in spool.rglob("*.dcm") if ".incoming" not in p.parts}


def _job(daemon: Daemon, sop_instance_uid: str) -> tuple[str, str | None]:
    wait_until(daemon.terminal, timeout=120, what="the jobs to end")
    rows = daemon.query(
        "SELECT j.state, j.reason FROM jobs j JOIN instances i ON i.id = j.instance_id"
        " WHERE i.sop_instance_uid = :uid",
        uid=sop_instance_uid,
    )
    assert len(rows) == 1, rows
    return str(rows[0][0]), rows[0][1]


def _outputs_of(daemon: Daemon, sop_instance_uid: str) -> int:
    rows = daemon.query(
        "SELECT count(*) FROM outputs o JOIN jobs j ON j.id = o.job_id"
        " JOIN instances i ON i.id = j.instance_id WHERE i.sop_instance_uid = :uid",
        uid=sop_instance_uid,
    )
    return int(rows[0][0])


# -- deflate bombs ---------------------------------------------------------------------


def test_a_deflate_bomb_is_refused_without_being_inflated_in_full(
    tmp_path: Path, daemon: Daemon
) -> None:
    path = tmp_path / "bomb.dcm"
    # Just past the budget the worker reads under: a few hundred kilobytes on the wire.
    ds = deflate_bomb(path, DEFAULT_MAX_INFLATED_BYTES + 8 * MB)
    assert path.stat().st_size < 2 * MB
    before = _spooled(daemon)
    assert int(send_file(daemon.port, path).Status) == INFLATES_TOO_FAR
    assert _kept(daemon, ds.SOPInstanceUID) == 0
    assert _spooled(daemon) == before
    assert "inflates beyond" in daemon.logs()
    assert daemon.process is not None and daemon.process.poll() is None


def test_a_deflated_image_within_the_budget_is_still_received(
    tmp_path: Path, daemon: Daemon
) -> None:
    path = tmp_path / "deflated.dcm"
    ds = make_dx(path, transfer_syntax=DeflatedExplicitVRLittleEndian)
    assert int(send_file(daemon.port, path).Status) == SUCCESS
    assert _job(daemon, ds.SOPInstanceUID)[0] == "done"


def test_a_truncated_deflate_stream_cannot_be_understood(tmp_path: Path, daemon: Daemon) -> None:
    good = tmp_path / "deflated.dcm"
    ds = make_dx(good, transfer_syntax=DeflatedExplicitVRLittleEndian)
    raw = good.read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(raw[: meta_end(raw) + (len(raw) - meta_end(raw)) // 2])
    assert int(send_file(daemon.port, cut).Status) == CANNOT_UNDERSTAND
    assert _kept(daemon, ds.SOPInstanceUID) == 0


# -- UIDs ------------------------------------------------------------------------------

MALFORMED = [
    "../../etc/x",
    "1.2.3/../../x",
    "ABC.DEF.ghi",
    "1.2.3%s%n",
    "1.2.03",  # a leading zero in a component
    "1..2",  # an empty component
    "1.2.",
]


@pytest.mark.parametrize("value", MALFORMED)
def test_a_malformed_sop_instance_uid_is_refused_naming_the_attribute(
    daemon: Daemon, value: str
) -> None:
    ds = make_dx(rows=64, cols=64)
    ds.SOPInstanceUID = value
    ds.file_meta.MediaStorageSOPInstanceUID = value
    status = send_on_context(daemon.port, ds, context_class=DX)
    assert int(status.Status) == DATASET_MISMATCH
    # The answer names the attribute, never quoting what was sent.
    comment = str(status.get("ErrorComment", ""))
    assert "SOP Instance UID" in comment and value not in comment
    assert _kept(daemon, value) == 0


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("StudyInstanceUID", "../../study"),
        ("SeriesInstanceUID", "../../study"),
        # pynetdicom will not put a UID over 64 characters in a request; in the dataset:
        ("StudyInstanceUID", "1." + "2" * 63),
    ],
)
def test_a_malformed_study_or_series_uid_is_refused(
    daemon: Daemon, keyword: str, value: str
) -> None:
    ds = make_dx(rows=64, cols=64)
    setattr(ds, keyword, value)
    status = send_on_context(daemon.port, ds, context_class=DX)
    assert int(status.Status) == DATASET_MISMATCH
    name = {"StudyInstanceUID": "Study Instance UID", "SeriesInstanceUID": "Series Instance UID"}
    assert name[keyword] in str(status.get("ErrorComment", ""))
    assert _kept(daemon, ds.SOPInstanceUID) == 0


def test_a_malformed_sop_class_uid_in_the_dataset_is_refused(
    tmp_path: Path, daemon: Daemon
) -> None:
    ds = make_dx(rows=64, cols=64)
    ds.SOPClassUID = DX + ".x"
    ds.file_meta.MediaStorageSOPClassUID = DX  # the request's class is the context's
    path = tmp_path / "x.dcm"
    write_with_meta(path, ds)
    status = send_file(daemon.port, path, syntax=ExplicitVRLittleEndian)
    assert int(status.Status) == DATASET_MISMATCH
    assert "SOP Class UID" in str(status.get("ErrorComment", ""))
    assert _kept(daemon, ds.SOPInstanceUID) == 0


def test_a_malformed_sop_class_uid_in_the_request_ends_the_association(daemon: Daemon) -> None:
    # pynetdicom finds no service for the class and aborts before any handler runs.
    ds = make_dx(rows=64, cols=64)
    ds.SOPClassUID = DX + ".x"
    status = send_on_context(daemon.port, ds, context_class=DX)
    assert "Status" not in status
    assert _kept(daemon, ds.SOPInstanceUID) == 0
    assert daemon.process is not None and daemon.process.poll() is None


def test_a_uid_with_a_zero_component_and_64_characters_is_fine(daemon: Daemon) -> None:
    uid = ("1.2.0.3." + "4" * 64)[:64]
    ds = make_dx(rows=64, cols=64)
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    assert int(send_on_context(daemon.port, ds, context_class=DX).Status) == SUCCESS
    assert _kept(daemon, uid) == 1


# -- SOP class against the presentation context --------------------------------------


def test_a_sop_class_sent_on_another_class_context_is_not_supported(daemon: Daemon) -> None:
    ds = make_dx(rows=64, cols=64)
    ds.SOPClassUID = ComputedRadiographyImageStorage
    ds.file_meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
    ds.Modality = "CR"
    assert int(send_on_context(daemon.port, ds, context_class=DX).Status) == SOP_CLASS_NOT_SUPPORTED
    assert _kept(daemon, ds.SOPInstanceUID) == 0


# -- unparseable datasets ---------------------------------------------------------------


def _end_of(raw: bytes, tag: int) -> int:
    """Where an element of a Part-10 file's dataset ends."""
    element = pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True).get_item(
        tag, keep_deferred=True
    )
    return int(element.value_tell) + int(element.length)


@pytest.mark.parametrize(
    "tail",
    [
        b"\x10\x00\x10\x00PN\xff\x7f" + b"x" * 10,  # (0010,0010) whose length runs past the end
        b"\x10\x00\x10",  # a tag cut short
    ],
)
def test_a_dataset_cut_inside_an_element_cannot_be_understood(
    tmp_path: Path, daemon: Daemon, tail: bytes
) -> None:
    good = tmp_path / "good.dcm"
    ds = make_dx(good)
    raw = good.read_bytes()
    corrupt = tmp_path / "corrupt.dcm"
    corrupt.write_bytes(raw[: _end_of(raw, 0x00080060)] + tail)  # after Modality
    status = send_file(daemon.port, corrupt, syntax=ExplicitVRLittleEndian)
    assert int(status.Status) == CANNOT_UNDERSTAND
    assert _kept(daemon, ds.SOPInstanceUID) == 0


def test_a_dataset_of_garbage_cannot_be_understood(tmp_path: Path, daemon: Daemon) -> None:
    good = tmp_path / "good.dcm"
    ds = make_dx(good, rows=64, cols=64)
    raw = good.read_bytes()
    end = meta_end(raw)
    rng = np.random.default_rng(3)
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(raw[:end] + rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert (
        int(send_file(daemon.port, garbage, syntax=ExplicitVRLittleEndian).Status)
        == CANNOT_UNDERSTAND
    )
    assert _kept(daemon, ds.SOPInstanceUID) == 0


# -- structured reports forwarded by a PACS -------------------------------------------


def _chestaid_sr(path: Path) -> pydicom.Dataset:
    finding = TriageFinding(
        score=0.9,
        threshold=0.5,
        above_threshold=True,
        priority="URGENT",
        model_version="test-1",
        calibration_version=1,
    )
    identity = OutputIdentity(
        series_instance_uid=generate_uid(), sop_instance_uid=generate_uid(), series_number=9902
    )
    sr = structured_report(make_dx(rows=64, cols=64), finding, identity)
    sr.save_as(path, enforce_file_format=True)
    return sr


def test_chestaid_own_sr_sent_back_by_a_pacs_is_received_and_skipped(
    tmp_path: Path, daemon: Daemon
) -> None:
    path = tmp_path / "sr.dcm"
    sr = _chestaid_sr(path)
    sent = storescu([path], daemon.port)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "Success" in sent.stdout + sent.stderr
    state, reason = _job(daemon, sr.SOPInstanceUID)
    assert state == "skipped" and reason and "own outputs" in reason
    assert _outputs_of(daemon, sr.SOPInstanceUID) == 0


def test_another_systems_basic_text_sr_is_received_and_skipped(
    tmp_path: Path, daemon: Daemon
) -> None:
    path = tmp_path / "chestaid-sr.dcm"
    sr = _chestaid_sr(path)
    sr.SOPClassUID = BasicTextSRStorage
    sr.file_meta.MediaStorageSOPClassUID = BasicTextSRStorage
    sr.SOPInstanceUID = sr.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    sr.Manufacturer = "Another Vendor"
    for keyword in ("ContributingEquipmentSequence",):
        if keyword in sr:
            delattr(sr, keyword)
    buffer = io.BytesIO()
    sr.save_as(buffer, enforce_file_format=True)
    other = tmp_path / "other-sr.dcm"
    other.write_bytes(buffer.getvalue())
    sent = storescu([other], daemon.port)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    state, reason = _job(daemon, sr.SOPInstanceUID)
    assert state == "skipped" and reason and "structured report" in reason
    assert _outputs_of(daemon, sr.SOPInstanceUID) == 0
