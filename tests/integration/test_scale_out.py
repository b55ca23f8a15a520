"""Roles apart: each role a process of its own, on one PostgreSQL database and one spool.

One SCP, two workers, one sender, two web processes (the first also runs the
scheduler), a DCMTK storescp as the PACS. A burst of studies, two images each, comes in
over two associations at once (so first images of one study can arrive together); one
worker is SIGKILLed while it holds a job. Every acknowledged image must end in the
database scored exactly once, the dead worker's claim taken over by the other worker
when its lease runs out, every output delivered once, and a sign-in limit reached
through one web process must hold in the other.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest

from daemon import accounts
from daemon.db.migrate import upgrade
from daemon.db.models import UserRole
from daemon.db.session import make_engine, make_session_factory, writing
from tests.bundles import fast_unchecked_bundle
from tests.daemon_harness import Daemon, StoreSCP, storescu, wait_until
from tests.dicom_factory import make_dx
from tests.postgres_server import PostgresServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STUDIES = 12  # two images each
KILL_AFTER_SCORED = 2  # the killed worker has done some of the work first
LEASE_SECONDS = 4.0
SIGN_IN_LIMIT = 3


@pytest.fixture
def empty_database(postgres_server: PostgresServer) -> Iterator[str]:
    """A new, unmigrated database: the site migrates it once, as the README says."""
    name = postgres_server.create_database()
    yield postgres_server.url(name)
    postgres_server.drop_database(name)


def _burst(tmp_path: Path) -> tuple[list[Path], list[Path], dict[str, str]]:
    """Two lists of files, image a and image b of each study; SOP Instance UID -> study."""
    first: list[Path] = []
    second: list[Path] = []
    study_of: dict[str, str] = {}
    for i in range(STUDIES):
        study = str(pydicom.uid.generate_uid())
        for half, files in (("a", first), ("b", second)):
            path = tmp_path / "send" / f"{i:02d}{half}.dcm"
            path.parent.mkdir(exist_ok=True)
            ds = make_dx(
                path,
                rows=160,
                cols=144,
                seed=2 * i + (half == "b"),
                StudyInstanceUID=study,
                AccessionNumber=f"A{i:04d}",
            )
            files.append(path)
            study_of[str(ds.SOPInstanceUID)] = study
    return first, second, study_of


def _log_records(daemon: Daemon) -> list[dict[str, Any]]:
    records = []
    for line in daemon.logs().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _scored_job_ids(daemon: Daemon) -> set[int]:
    return {r["job_id"] for r in _log_records(daemon) if r.get("message") == "job scored"}


def _owner_prefix(daemon: Daemon) -> str:
    assert daemon.process is not None
    return f"{socket.gethostname()}:{daemon.process.pid}:worker:"


def _kill_while_holding_a_job(worker: Daemon, observer: Daemon) -> list[int]:
    """SIGKILL ``worker`` at a moment it holds a claimed job; returns the jobs it held.

    Once it has scored a few, the worker is frozen (SIGSTOP) before its claims are read,
    so what is read is what it holds when it dies; if it holds none at that moment it
    runs on and is tried again.
    """
    assert worker.process is not None
    prefix = _owner_prefix(worker)
    held_sql = (
        "SELECT id FROM jobs WHERE state = 'running' AND lease_owner LIKE :prefix ORDER BY id"
    )

    def frozen_holding() -> list[int]:
        if len(_scored_job_ids(worker)) < KILL_AFTER_SCORED:
            return []
        if not observer.query(held_sql, prefix=prefix + "%"):
            return []
        assert worker.process is not None
        os.kill(worker.process.pid, signal.SIGSTOP)
        held = [row[0] for row in observer.query(held_sql, prefix=prefix + "%")]
        if not held:
            os.kill(worker.process.pid, signal.SIGCONT)
        return held

    held: list[int] = wait_until(frozen_holding, timeout=120, what="the worker to hold a job")
    worker.kill()
    return held


def test_roles_in_separate_processes_share_one_database_and_spool(
    tmp_path: Path, empty_database: str
) -> None:
    pacs = StoreSCP(tmp_path / "pacs").start()
    shared = tmp_path / "shared"  # the spool and outbox every node mounts
    sections: dict[str, dict[str, Any]] = {
        "storage": {
            "database_url": empty_database,
            "spool_dir": str(shared / "spool"),
            "outbox_dir": str(shared / "outbox"),
        },
        "worker": {"lease_seconds": LEASE_SECONDS, "poll_seconds": 0.3},
        "model": {"threads": 1, "bundle": str(fast_unchecked_bundle())},
        "sender": {"poll_seconds": 0.3},
        "web": {"login_max_failures": SIGN_IN_LIMIT, "secure_cookies": False},
    }

    def node(name: str) -> Daemon:
        return Daemon(
            tmp_path / name,
            sections=json.loads(json.dumps(sections)),
            destinations=[pacs.destination()],
            migrate=False,
        )

    scp, worker_1, worker_2, sender, web_1, web_2 = (
        node(n) for n in ("scp", "worker-1", "worker-2", "sender", "web-1", "web-2")
    )
    nodes = [scp, worker_1, worker_2, sender, web_1, web_2]
    roles = ["scp", "worker", "worker", "sender", "web,scheduler", "web"]
    first, second, study_of = _burst(tmp_path)
    try:
        # Once, before any role starts (what `chestaid-daemon db upgrade` does, in this
        # process: on two busy cores each command's start costs as much as a daemon's).
        engine = make_engine(empty_database)
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        with ThreadPoolExecutor(len(nodes)) as pool:
            for started in [
                pool.submit(d.start, roles=r) for d, r in zip(nodes, roles, strict=True)
            ]:
                started.result()

        sent: dict[int, Any] = {}

        def send(index: int, files: list[Path]) -> None:
            sent[index] = storescu(files, scp.port, timeout=300)

        senders = [
            threading.Thread(target=send, args=(i, files))
            for i, files in enumerate((first, second))
        ]
        for thread in senders:
            thread.start()
        try:
            killed_jobs = _kill_while_holding_a_job(worker_1, observer=scp)
        finally:
            for thread in senders:
                thread.join()
        for result in sent.values():
            assert result.returncode == 0, result.stderr[-2000:]
            assert (result.stdout + result.stderr).count(
                "Received Store Response (Success)"
            ) == STUDIES

        wait_until(scp.terminal, timeout=180, what="every job and delivery to finish")

        # Nothing acknowledged is lost, and each image has one job.
        rows = scp.query(
            "SELECT i.sop_instance_uid, i.study_instance_uid, j.id, j.state, j.attempts,"
            " j.lease_owner, (SELECT count(*) FROM results r WHERE r.job_id = j.id)"
            " FROM instances i JOIN jobs j ON j.instance_id = i.id"
        )
        assert {row[0]: row[1] for row in rows} == study_of
        assert len(rows) == 2 * STUDIES
        # Each scored exactly once.
        assert {(row[3], row[6]) for row in rows} == {("done", 1)}
        # The dead worker's claim ran out and the other worker took the job over.
        assert killed_jobs
        attempts = {row[2]: row[4] for row in rows}
        for job_id in killed_jobs:
            assert attempts[job_id] == 2, attempts
        assert set(killed_jobs) <= _scored_job_ids(worker_2)
        assert len(_scored_job_ids(worker_1)) >= KILL_AFTER_SCORED
        assert not set(killed_jobs) & _scored_job_ids(worker_1)
        assert all(row[5] is None for row in rows)  # no lease left behind
        # Each study's row sums up both of its images, whichever worker scored them.
        studies = dict(scp.query("SELECT study_instance_uid, images FROM studies"))
        assert studies == dict.fromkeys(set(study_of.values()), 2)

        # Every output delivered exactly once, and received once by the PACS.
        deliveries = scp.query(
            "SELECT o.sop_instance_uid, d.state, d.destination FROM outputs o"
            " JOIN deliveries d ON d.output_id = o.id"
        )
        outputs = scp.query("SELECT sop_instance_uid FROM outputs")
        kinds = Counter(kind for (kind,) in scp.query("SELECT kind FROM outputs"))
        assert kinds["sc"] == 2 * STUDIES  # a Secondary Capture per image
        # An SR per study, and a replacing one where its second image raised its band
        # (the two associations race): each study's last report states its band.
        reported = scp.query("SELECT report_revision, reported_band, band FROM studies")
        assert kinds["sr"] == sum(revision for revision, _, _ in reported)
        assert all(1 <= revision <= 2 for revision, _, _ in reported)
        assert all(said == band for _, said, band in reported)
        assert Counter(uid for uid, _, _ in deliveries) == Counter(uid for (uid,) in outputs)
        assert {state for _, state, _ in deliveries} == {"delivered"}
        at_pacs = Counter(
            str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in pacs.files()
        )
        assert at_pacs == Counter(uid for (uid,) in outputs)

        _sign_in_limit_is_shared(web_1, web_2)
    finally:
        for daemon in nodes:
            if daemon.process is not None and daemon.process.poll() is None:
                os.kill(daemon.process.pid, signal.SIGCONT)
        with ThreadPoolExecutor(len(nodes)) as pool:
            list(pool.map(lambda d: d.stop(), nodes))
        pacs.stop()


def _sign_in_limit_is_shared(web_1: Daemon, web_2: Daemon) -> None:
    """Failures counted through one web process refuse a sign-in through the other."""
    engine = make_engine(web_1.db_url)
    try:
        with writing(make_session_factory(engine)) as session:
            _, password = accounts.create_user(
                session, username="reader", role=UserRole.RADIOLOGIST, actor="test"
            )
    finally:
        engine.dispose()

    def sign_in(web: Daemon, secret: str) -> int:
        with httpx.Client(base_url=f"http://127.0.0.1:{web.web_port}", timeout=30) as client:
            answer = client.post("/api/v1/tokens", json={"username": "reader", "password": secret})
            return answer.status_code

    assert sign_in(web_2, password) == 200
    assert [sign_in(web_1, "not the password") for _ in range(SIGN_IN_LIMIT)] == [
        401
    ] * SIGN_IN_LIMIT
    assert sign_in(web_2, password) == 429
    assert sign_in(web_1, password) == 429
