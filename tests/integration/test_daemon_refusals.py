"""Refusals, with real peers: disallowed callers, non-chest images, corrupt datasets,
a full spool and a failing database each get the right answer, and nothing partial is kept."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, _config

from tests.daemon_harness import Daemon, storescu, wait_until
from tests.dicom_factory import make_dx

pytestmark = pytest.mark.integration


def _spool_files(daemon: Daemon) -> list[Path]:
    spool = daemon.root / "var" / "spool"
    return [p for p in spool.rglob("*") if p.is_file()] if spool.exists() else []


@pytest.fixture
def allowlisted(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path / "node", sections={"allow": {"calling_ae_titles": ["MODALITY"]}})
    d.start()
    yield d
    d.stop()


def test_a_disallowed_calling_ae_is_rejected(tmp_path: Path, allowlisted: Daemon) -> None:
    path = tmp_path / "x.dcm"
    make_dx(path)
    refused = storescu([path], allowlisted.port, calling="INTRUDER")
    assert refused.returncode != 0
    assert "Association Rejected" in refused.stdout + refused.stderr
    assert "association rejected" in allowlisted.logs()
    accepted = storescu([path], allowlisted.port, calling="MODALITY")
    assert accepted.returncode == 0
    assert allowlisted.query("SELECT count(*) FROM instances") == [(1,)]


def test_an_address_outside_the_allowed_networks_is_rejected(tmp_path: Path) -> None:
    d = Daemon(tmp_path / "node", sections={"allow": {"networks": ["10.0.0.0/8"]}})
    d.start()
    try:
        path = tmp_path / "x.dcm"
        make_dx(path)
        refused = storescu([path], d.port)
        assert refused.returncode != 0
        assert "Association Rejected" in refused.stdout + refused.stderr
        assert "not in an allowed network" in d.logs()
        assert d.query("SELECT count(*) FROM instances") == [(0,)]
    finally:
        d.stop()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path / "node")
    d.start()
    yield d
    d.stop()


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"body_part": "KNEE"}, "Body Part Examined"),
        ({"view_position": "LL"}, "View Position"),
        ({"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]}, "localizer"),
    ],
)
def test_a_non_chest_image_is_received_and_skipped_without_output(
    tmp_path: Path, daemon: Daemon, kwargs: dict[str, object], reason: str
) -> None:
    path = tmp_path / "knee.dcm"
    make_dx(path, **kwargs)  # type: ignore[arg-type]
    sent = storescu([path], daemon.port)
    assert sent.returncode == 0
    wait_until(daemon.terminal, timeout=60, what="the job to end")
    rows = daemon.query("SELECT state, reason FROM jobs")
    assert rows[0][0] == "skipped" and reason in rows[0][1]
    assert daemon.query("SELECT count(*) FROM outputs") == [(0,)]


def _send_raw(port: int, path: Path) -> int:
    """Send a file's bytes as they are (no decoding), as a broken modality would."""
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context("1.2.840.10008.5.1.4.1.1.1.1", ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", port, ae_title="CHESTAID")
        assert assoc.is_established
        status = assoc.send_c_store(path)
        assoc.release()
        return int(status.Status)
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = False


def test_a_dataset_that_cannot_be_parsed_gets_a_failure_status(
    tmp_path: Path, daemon: Daemon
) -> None:
    good = tmp_path / "good.dcm"
    ds = make_dx(good)
    raw = good.read_bytes()
    # Keep the file meta and the first elements, then a tag whose length runs past the end.
    meta_end = 132 + 12 + int.from_bytes(raw[140:144], "little")
    corrupt = tmp_path / "corrupt.dcm"
    corrupt.write_bytes(raw[: meta_end + 200] + b"\x10\x00\x10\x00PN\xff\x7f" + b"x" * 10)
    status = _send_raw(daemon.port, corrupt)
    assert status >= 0xA000, hex(status)
    assert daemon.query("SELECT count(*) FROM instances") == [(0,)]
    assert _spool_files(daemon) == []
    assert "refused" in daemon.logs()
    assert ds.SOPInstanceUID  # the good one still goes through
    assert _send_raw(daemon.port, good) == 0


def test_a_full_spool_answers_out_of_resources_and_keeps_nothing(tmp_path: Path) -> None:
    d = Daemon(tmp_path / "node", sections={"storage": {"min_free_mb": 1 << 40}})
    d.start()
    try:
        path = tmp_path / "x.dcm"
        make_dx(path)
        sent = storescu([path], d.port)
        assert (
            "Refused: OutOfResources" in sent.stdout + sent.stderr
            or "0xa700" in (sent.stdout + sent.stderr).lower()
        )
        assert d.query("SELECT count(*) FROM instances") == [(0,)]
        assert _spool_files(d) == []
        assert d.process is not None and d.process.poll() is None  # still running
    finally:
        d.stop()


def test_a_failing_database_answers_out_of_resources_and_recovers(tmp_path: Path) -> None:
    d = Daemon(tmp_path / "node", sections={"storage": {"database_busy_timeout": 0.5}})
    d.start()
    try:
        path = tmp_path / "x.dcm"
        make_dx(path)
        blocker = sqlite3.connect(d.root / "var" / "chestaid.db", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            sent = storescu([path], d.port)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        out = (sent.stdout + sent.stderr).lower()
        assert "outofresources" in out or "0xa700" in out, out
        assert _spool_files(d) == []
        again = storescu([path], d.port)
        assert again.returncode == 0
        assert d.query("SELECT count(*) FROM instances") == [(1,)]
        assert len(_spool_files(d)) == 1
        # The worker met the locked database too, and lives on: the instance is scored.
        wait_until(d.terminal, timeout=60, what="the job to end")
        assert d.query("SELECT state FROM jobs") == [("done",)]
    finally:
        d.stop()


def test_unreadable_pixel_data_fails_the_job_with_its_reason(
    tmp_path: Path, daemon: Daemon
) -> None:
    ds = make_dx(rows=64, cols=80)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]  # too short for the geometry
    path = tmp_path / "short.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert pydicom.dcmread(path).Rows == 64
    assert storescu([path], daemon.port).returncode == 0
    wait_until(daemon.terminal, timeout=60, what="the job to end")
    state, reason = daemon.query("SELECT state, reason FROM jobs")[0]
    assert state == "failed" and "CorruptImageError" in reason
