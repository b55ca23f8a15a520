"""Delivery when the PACS is down: retried with backoff across a daemon restart, and
dead-lettered after the last attempt, visible to admins and retried by command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.daemon_harness import Daemon, StoreSCP, free_port, storescu, wait_until
from tests.dicom_factory import make_dx

pytestmark = pytest.mark.integration


def _states(daemon: Daemon) -> dict[str, int]:
    return dict(daemon.query("SELECT state, count(*) FROM deliveries GROUP BY state"))


def test_a_pacs_that_is_down_gets_its_outputs_after_it_returns_across_a_restart(
    tmp_path: Path,
) -> None:
    pacs = StoreSCP(tmp_path / "pacs", port=free_port())  # not started yet: the PACS is down
    daemon = Daemon(tmp_path / "node", destinations=[pacs.destination()])
    daemon.start()
    try:
        make_dx(tmp_path / "a.dcm", rows=128, cols=128)
        assert storescu([tmp_path / "a.dcm"], daemon.port).returncode == 0
        # At least two failed attempts: the output waits in the outbox with its error.
        wait_until(
            lambda: (daemon.query("SELECT min(attempts) FROM deliveries")[0][0] or 0) >= 2,
            timeout=60,
            what="two failed attempts",
        )
        listing = json.loads(daemon.cli("outbox", "list", "--format", "json").stdout)
        assert {d["state"] for d in listing} <= {"pending", "sending"}
        assert all(
            "cannot associate" in d["last_error"] or "association" in d["last_error"]
            for d in listing
            if d["last_error"]
        )
        assert daemon.stop() == 0
        assert _states(daemon) == {"pending": 2}  # a clean stop keeps them queued
        pacs.start()
        daemon.start()
        wait_until(lambda: _states(daemon) == {"delivered": 2}, timeout=60, what="delivery")
        assert len(pacs.files()) == 2
    finally:
        daemon.stop()
        pacs.stop()


def test_dead_letters_are_listed_and_retried_by_command(tmp_path: Path) -> None:
    pacs = StoreSCP(tmp_path / "pacs", port=free_port())
    daemon = Daemon(
        tmp_path / "node",
        destinations=[pacs.destination()],
        sections={"sender": {"max_attempts": 2}},
    )
    daemon.start()
    try:
        make_dx(tmp_path / "a.dcm", rows=128, cols=128)
        assert storescu([tmp_path / "a.dcm"], daemon.port).returncode == 0
        wait_until(lambda: _states(daemon) == {"dead": 2}, timeout=60, what="dead letters")
        dead = json.loads(
            daemon.cli("outbox", "list", "--state", "dead", "--format", "json").stdout
        )
        assert len(dead) == 2 and all(d["attempts"] == 2 for d in dead)
        assert "dead-lettered" in daemon.logs()
        pacs.start()
        retried = daemon.cli("outbox", "retry", "--all-dead")
        assert "2 dead deliveries queued again" in retried.stdout
        wait_until(
            lambda: _states(daemon) == {"delivered": 2}, timeout=60, what="delivery after retry"
        )
        assert len(pacs.files()) == 2
        status = json.loads(daemon.cli("status").stdout)
        assert status["jobs"]["done"] == 1 and status["deliveries"]["delivered"] == 2
    finally:
        daemon.stop()
        pacs.stop()


def test_without_destinations_outputs_stay_in_the_outbox(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "node")
    daemon.start()
    try:
        make_dx(tmp_path / "a.dcm", rows=128, cols=128)
        assert storescu([tmp_path / "a.dcm"], daemon.port).returncode == 0
        wait_until(daemon.terminal, timeout=60, what="the job to end")
        names = [r[0] for r in daemon.query("SELECT file_name FROM outputs")]
        assert len(names) == 2
        assert all((daemon.root / "var" / "outbox" / n).is_file() for n in names)
        assert daemon.query("SELECT count(*) FROM deliveries") == [(0,)]
    finally:
        daemon.stop()
