"""Jobs under trouble, against a live daemon and real peers: an outbox that cannot be
written for a while is waited out (the job backs off and is scored once it can be), a
job that failed for good is queued again by ``chestaid-daemon jobs retry`` (audited) or
by sending its image again, and an instance already scored stays a duplicate.

The outbox is made unwritable by putting a file where its temporary directory is (the
tests run as root, so permissions would not stop a write); every write then fails with
an OS error, the same path as a full disk through the worker.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pydicom
import pytest

from daemon.spool import TEMP_DIR
from tests.daemon_harness import Daemon, StoreSCP, storescu, wait_until
from tests.dicom_factory import make_dx, require_tool

pytestmark = pytest.mark.integration


def _job(daemon: Daemon, uid: str) -> tuple[int, str, int, str]:
    """The job of an instance: id, state, attempts, reason."""
    rows = daemon.query(
        "SELECT j.id, j.state, j.attempts, coalesce(j.reason, '') FROM jobs j"
        " JOIN instances i ON i.id = j.instance_id WHERE i.sop_instance_uid = :uid",
        uid=uid,
    )
    assert len(rows) == 1
    return rows[0][0], rows[0][1], rows[0][2], rows[0][3]


def _until(daemon: Daemon, uid: str, state: str) -> None:
    """Wait for the job of an instance to reach ``state``."""
    wait_until(lambda: _job(daemon, uid)[1] == state, timeout=120, what=f"{uid} {state}")


class _Outbox:
    """The live daemon's outbox, broken and mended from outside."""

    def __init__(self, daemon: Daemon) -> None:
        self.temp = daemon.root / "var" / "outbox" / TEMP_DIR

    def break_(self) -> None:
        self.temp.rmdir()  # empty: nothing is being written
        self.temp.write_bytes(b"")

    def mend(self) -> None:
        self.temp.unlink()
        self.temp.mkdir()


def _send(tmp_path: Path, daemon: Daemon, name: str) -> tuple[Path, str]:
    path = tmp_path / f"{name}.dcm"
    ds = make_dx(path)
    sent = storescu([path], daemon.port)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "Received Store Response (Success)" in sent.stdout + sent.stderr
    return path, str(ds.SOPInstanceUID)


def _outputs_valid(daemon: Daemon, uid: str) -> int:
    """dciodvfy on the outputs of an instance; returns how many there are."""
    dciodvfy = require_tool("dciodvfy", "dicom3tools")
    names = daemon.query(
        "SELECT o.file_name FROM outputs o JOIN jobs j ON j.id = o.job_id"
        " JOIN instances i ON i.id = j.instance_id WHERE i.sop_instance_uid = :uid",
        uid=uid,
    )
    for (name,) in names:
        path = daemon.root / "var" / "outbox" / name
        assert pydicom.dcmread(path).StudyInstanceUID
        check = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True)
        errors = [line for line in (check.stdout + check.stderr).splitlines() if "Error" in line]
        assert errors == [], f"{name}: {errors}"
    return len(names)


def _reported(daemon: Daemon) -> None:
    """Wait until every scored study's report is decided (its SR comes after its job)."""
    wait_until(
        lambda: daemon.query("SELECT count(*) FROM studies WHERE report_pending") == [(0,)],
        timeout=60,
        what="the studies' reports",
    )


def test_an_unwritable_outbox_is_waited_out_and_the_job_then_scored(
    tmp_path: Path, pacs: StoreSCP
) -> None:
    # Pauses short enough for a test; more claims than max_attempts are allowed to a
    # storage fault, and the defect was failing the job at max_attempts.
    daemon = Daemon(
        tmp_path / "node",
        sections={
            "worker": {
                "max_attempts": 2,
                "retry_initial_seconds": 0.2,
                "retry_max_seconds": 0.5,
                "retry_max_attempts": 1000,
                "yield_to_intake_seconds": 0,
            }
        },
        destinations=[pacs.destination()],
    )
    daemon.start()
    try:
        outbox = _Outbox(daemon)
        outbox.break_()
        _, uid = _send(tmp_path, daemon, "dx")

        def failed_or_retried_past_the_limit() -> tuple[str, int, str] | None:
            _, state, attempts, reason = _job(daemon, uid)
            return (state, attempts, reason) if state == "failed" or attempts > 3 else None

        state, _, reason = wait_until(
            failed_or_retried_past_the_limit, timeout=120, what="the job retried 3 times"
        )
        assert state != "failed", f"the job gave up on a storage fault: {reason}"
        assert "SpoolError" in reason
        outbox.mend()
        _until(daemon, uid, "done")
        _reported(daemon)
        assert _outputs_valid(daemon, uid) == 2
        wait_until(lambda: len(pacs.files()) == 2, timeout=60, what="outputs at the PACS")
        assert "job will be retried" in daemon.logs()
    finally:
        daemon.stop()


def test_a_failed_job_is_queued_again_by_the_command_or_by_sending_its_image_again(
    tmp_path: Path,
) -> None:
    daemon = Daemon(
        tmp_path / "node",
        sections={
            "worker": {
                "retry_initial_seconds": 0.2,
                "retry_max_seconds": 0.2,
                "retry_max_attempts": 2,
                "yield_to_intake_seconds": 0,
            }
        },
    )
    daemon.start()
    try:
        outbox = _Outbox(daemon)
        outbox.break_()
        _, by_command = _send(tmp_path, daemon, "a")
        resent, by_sending = _send(tmp_path, daemon, "b")
        _, scored = _send(tmp_path, daemon, "c")
        for uid in (by_command, by_sending, scored):
            _until(daemon, uid, "failed")
        outbox.mend()

        listed = daemon.cli("jobs", "list", "--state", "failed", "--format", "json")
        failed = {item["sop_instance_uid"]: item for item in json.loads(listed.stdout)}
        assert set(failed) == {by_command, by_sending, scored}
        assert "after 2 attempts" in failed[by_command]["reason"]

        refused = daemon.cli("jobs", "retry", check=False)
        assert refused.returncode == 2 and "--all-failed" in refused.stderr
        job_ids = [failed[uid]["id"] for uid in (by_command, scored)]
        retried = daemon.cli("jobs", "retry", *map(str, job_ids), "--by", "pacsadmin")
        assert "2 failed jobs queued again" in retried.stdout
        for uid in (by_command, scored):
            _until(daemon, uid, "done")
        entries = daemon.query("SELECT actor, action, subject FROM audit_log")
        assert ("pacsadmin", "jobs.retried", ",".join(map(str, sorted(job_ids)))) in entries

        # The failed instance sent again is scored again, on its first copy.
        again = storescu([resent], daemon.port)
        assert "Received Store Response (Success)" in again.stdout + again.stderr
        _until(daemon, by_sending, "done")
        assert "its failed job queued again" in daemon.logs()
        _reported(daemon)
        assert _outputs_valid(daemon, by_sending) == 2

        # An instance scored already stays a duplicate: the first copy and result kept.
        results_before = daemon.query("SELECT count(*) FROM results")
        again = storescu([resent], daemon.port)
        assert "Received Store Response (Success)" in again.stdout + again.stderr
        assert daemon.logs().count("duplicate instance, first copy kept") == 1
        assert _job(daemon, by_sending)[1] == "done"
        assert daemon.query("SELECT count(*) FROM results") == results_before == [(3,)]
        assert daemon.query("SELECT count(*) FROM instances") == [(3,)]
    finally:
        daemon.stop()


def test_an_image_for_processing_is_received_and_skipped_with_no_outputs(
    tmp_path: Path,
) -> None:
    daemon = Daemon(tmp_path / "node", sections={"worker": {"yield_to_intake_seconds": 0}})
    daemon.start()
    try:
        uids = {}
        for name, extra in {
            "sop_class": {"sop_class": "1.2.840.10008.5.1.4.1.1.1.1.1"},  # DX For Processing
            "intent": {"PresentationIntentType": "FOR PROCESSING"},
            "presented": {"PresentationIntentType": "FOR PRESENTATION"},
        }.items():
            path = tmp_path / f"{name}.dcm"
            ds = make_dx(path, **extra)  # type: ignore[arg-type]
            sent = storescu([path], daemon.port)
            assert "Received Store Response (Success)" in sent.stdout + sent.stderr
            uids[name] = str(ds.SOPInstanceUID)
        for name in ("sop_class", "intent"):
            _until(daemon, uids[name], "skipped")
            assert "For Processing" in _job(daemon, uids[name])[3]
            assert _outputs_valid(daemon, uids[name]) == 0
        _until(daemon, uids["presented"], "done")
        _reported(daemon)
        assert _outputs_valid(daemon, uids["presented"]) == 2
        assert daemon.query("SELECT count(*) FROM results") == [(1,)]
    finally:
        daemon.stop()
