"""The crash test: 100 instances sent while the daemon is SIGKILLed at random moments.

Every instance storescu saw acknowledged must be in the database and end scored and
delivered exactly once per destination. An instance whose store failed (the daemon was
down or died mid-association) was not acknowledged; the sender sends it again, as a
modality would.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from tests.daemon_harness import Daemon, StoreSCP, answers_echo, storescu, wait_until
from tests.dicom_factory import make_dx

pytestmark = [pytest.mark.integration, pytest.mark.slow]

INSTANCES = 100
KILLS = 5


def _acknowledged(output: str) -> bool:
    return "Received Store Response (Success)" in output


def test_sigkill_at_random_moments_loses_nothing_acknowledged(tmp_path: Path) -> None:
    rng = random.Random(20261124)
    pacs = StoreSCP(tmp_path / "pacs").start()
    daemon = Daemon(
        tmp_path / "node",
        destinations=[pacs.destination()],
        # Short leases, although a restart on the same host ends a dead process's leases
        # at once. A job in flight at several kills must not be failed as a poison
        # image here: that limit has its own test.
        sections={
            "worker": {"lease_seconds": 3.0, "max_attempts": 6},
            "sender": {"lease_seconds": 3.0},
        },
    )
    files = []
    for i in range(INSTANCES):
        path = tmp_path / "send" / f"{i:03d}.dcm"
        path.parent.mkdir(exist_ok=True)
        ds = make_dx(path, rows=192, cols=160, seed=i, modality=("CR" if i % 2 else "DX"))
        files.append((path, str(ds.SOPInstanceUID)))

    daemon.start()
    acknowledged: set[str] = set()
    sent_count = threading.Event()
    progress = {"sent": 0}
    lock = threading.Lock()
    stop_killer = threading.Event()
    kills = 0

    def killer() -> None:
        nonlocal kills
        # Kill at random points of the sending: after a random number of acknowledged
        # instances, plus a random fraction of a second (mid-association, mid-scoring,
        # mid-delivery, wherever it falls).
        marks = sorted(rng.sample(range(5, INSTANCES - 5), KILLS))
        for mark in marks:
            while not stop_killer.is_set():
                with lock:
                    if progress["sent"] >= mark:
                        break
                sent_count.wait(1.0)
                sent_count.clear()
            if stop_killer.is_set() or stop_killer.wait(rng.uniform(0.0, 0.5)):
                return
            daemon.kill()
            kills += 1
            daemon.start()

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        pending = list(files)
        for _ in range(50):
            if not pending:
                break
            retry = []
            for path, uid in pending:
                result = storescu([path], daemon.port, timeout=60)
                if _acknowledged(result.stdout + result.stderr):
                    acknowledged.add(uid)
                    with lock:
                        progress["sent"] += 1
                    sent_count.set()
                else:
                    retry.append((path, uid))
            pending = retry
            if pending:  # the daemon is down: resend once it answers again
                wait_until(
                    lambda: answers_echo("CHESTAID", daemon.port),
                    timeout=120,
                    what="the daemon to restart",
                )
        # Every mark has been passed: the last kills land while the daemon is scoring
        # and delivering what was sent.
        thread.join()
        assert kills == KILLS
        assert acknowledged == {uid for _, uid in files}, f"{len(pending)} never acknowledged"

        wait_until(daemon.terminal, timeout=240, what="every job and delivery to finish")
        rows = daemon.query(
            "SELECT i.sop_instance_uid, j.state FROM instances i JOIN jobs j ON j.instance_id = i.id"
        )
        assert {uid for uid, _ in rows} >= acknowledged
        assert len(rows) == len({uid for uid, _ in rows})  # one row per instance
        assert {state for _, state in rows} == {"done"}, rows
        deliveries = daemon.query(
            "SELECT o.sop_instance_uid, d.state FROM outputs o JOIN deliveries d ON d.output_id = o.id"
        )
        assert len(deliveries) == 2 * INSTANCES
        assert {state for _, state in deliveries} == {"delivered"}
        # Every output is at the PACS. A kill between a C-STORE's success and its commit
        # sends that object once more (same SOP Instance UID, so the PACS keeps one);
        # at most one such object per kill.
        delivered_uids = {uid for uid, _ in deliveries}
        at_pacs = [_sop_instance_uid(p) for p in pacs.files()]
        assert set(at_pacs) == delivered_uids
        assert len(at_pacs) - len(set(at_pacs)) <= kills
    finally:
        stop_killer.set()
        thread.join()
        daemon.stop()
        pacs.stop()


def _sop_instance_uid(path: Path) -> str:
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
