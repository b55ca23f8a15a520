"""The daemon's command line against real databases and processes: schema checks,
configuration errors, roles in separate processes, and a real out-of-space spool."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.db.migrate import head_revision
from tests.daemon_harness import DAEMON, Daemon, StoreSCP, storescu, wait_until, write_config
from tests.dicom_factory import make_dx

pytestmark = pytest.mark.integration


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHESTAID_")}
    return subprocess.run(
        [*DAEMON, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


def _config(tmp_path: Path, **node: object) -> Path:
    return write_config(
        tmp_path / "chestaid.toml",
        {"node": {"port": 11999, **node}, "storage": {"var_dir": str(tmp_path / "var")}},
    )


def test_serve_refuses_an_unmigrated_database_saying_what_to_run(tmp_path: Path) -> None:
    result = _run("serve", "--config", str(_config(tmp_path)), cwd=tmp_path)
    assert result.returncode == 1
    assert "chestaid-daemon db upgrade" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_a_newer_schema(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert _run("db", "upgrade", "--config", str(config), cwd=tmp_path).returncode == 0
    import sqlite3

    with sqlite3.connect(tmp_path / "var" / "chestaid.db") as db:
        db.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    result = _run("serve", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 1
    assert "newer than this ChestAid" in result.stderr


def test_db_upgrade_is_idempotent_and_reports_the_revision(tmp_path: Path) -> None:
    config = _config(tmp_path)
    first = _run("db", "upgrade", "--config", str(config), cwd=tmp_path)
    second = _run("db", "upgrade", "--config", str(config), cwd=tmp_path)
    assert first.returncode == second.returncode == 0
    current = _run("db", "current", "--config", str(config), cwd=tmp_path)
    head = head_revision()
    assert f"current {head}" in current.stdout and f"head {head}" in current.stdout


def test_a_bad_setting_stops_the_start_naming_the_key(tmp_path: Path) -> None:
    result = _run("serve", "--config", str(_config(tmp_path, port=0)), cwd=tmp_path)
    assert result.returncode == 2
    assert "node.port" in result.stderr
    env_result = subprocess.run(
        [*DAEMON, "config", "show", "--config", str(_config(tmp_path))],
        capture_output=True,
        text=True,
        env={**os.environ, "CHESTAID_NODE__MAX_PDU_BYTES": "0"},
    )
    assert env_result.returncode == 2 and "node.max_pdu_bytes" in env_result.stderr
    roles = _run("serve", "--config", str(_config(tmp_path)), "--roles", "scp,cook", cwd=tmp_path)
    assert roles.returncode == 2 and "cook" in roles.stderr


def test_roles_run_in_separate_processes_on_one_database(tmp_path: Path) -> None:
    pacs = StoreSCP(tmp_path / "pacs").start()
    intake = Daemon(tmp_path / "node", destinations=[pacs.destination()])
    scoring = Daemon(tmp_path / "node", destinations=[pacs.destination()], port=intake.port)
    intake.start(roles="scp")
    try:
        make_dx(tmp_path / "a.dcm", rows=128, cols=128)
        assert storescu([tmp_path / "a.dcm"], intake.port).returncode == 0
        # Received and queued, but nobody scores in the intake process.
        assert intake.query("SELECT state FROM jobs") == [("queued",)]
        scoring.starts = 1  # the database is already migrated
        scoring.start(roles="worker,sender,scheduler")
        try:
            wait_until(
                lambda: len(pacs.files()) == 2, timeout=60, what="outputs from the scoring process"
            )
            wait_until(intake.terminal, timeout=30, what="terminal states")
        finally:
            assert scoring.stop() == 0
    finally:
        assert intake.stop() == 0
        pacs.stop()


@pytest.fixture
def tiny_spool(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs as the spool needs root")
    mount = tmp_path / "spool"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_spool_that_runs_out_of_space_answers_out_of_resources(
    tmp_path: Path, tiny_spool: Path
) -> None:
    d = Daemon(
        tmp_path / "node", sections={"storage": {"spool_dir": str(tiny_spool), "min_free_mb": 0}}
    )
    d.start()
    try:
        make_dx(tmp_path / "big.dcm", rows=1600, cols=1200, bits_stored=16)  # 3.8 MB > 3 MB
        sent = storescu([tmp_path / "big.dcm"], d.port)
        out = (sent.stdout + sent.stderr).lower()
        assert "outofresources" in out or "0xa700" in out, out
        assert [p for p in tiny_spool.rglob("*") if p.is_file()] == []  # no partial file
        assert "spool full" in d.logs()
        make_dx(tmp_path / "small.dcm", rows=128, cols=128)
        assert storescu([tmp_path / "small.dcm"], d.port).returncode == 0
        assert d.query("SELECT count(*) FROM instances") == [(1,)]
    finally:
        d.stop()


def test_usr1_prints_every_threads_stack_and_the_daemon_keeps_serving(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "node")
    daemon.start(roles="scp,worker")
    try:
        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGUSR1)
        wait_until(lambda: "current thread" in daemon.logs(), timeout=30, what="a stack dump")
        logs = daemon.logs()
        assert logs.count("Thread 0x") >= 2  # the main thread and the roles' own
        assert "daemon/service.py" in logs  # the main thread waiting for a stop
        assert daemon.process.poll() is None
        make_dx(tmp_path / "a.dcm", rows=64, cols=64)
        assert storescu([tmp_path / "a.dcm"], daemon.port).returncode == 0
    finally:
        assert daemon.stop() == 0
