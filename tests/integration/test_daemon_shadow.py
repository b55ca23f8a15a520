"""Shadow mode on the real daemon: a DX sent by DCMTK's storescu is scored and kept,
marked as made in shadow, while DCMTK's storescp (the PACS) receives nothing and no
delivery exists; the worklist API says "shadow". Going live afterwards sends what is
scored from then on, never the shadow period's backlog."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.daemon_harness import Daemon, StoreSCP, storescu, wait_until
from tests.dicom_factory import make_dx

pytestmark = pytest.mark.integration


def _reader_token(daemon: Daemon, client: httpx.Client) -> dict[str, str]:
    """A radiologist made by command, signed in to the API, with a password chosen."""
    added = daemon.cli("users", "add", "reader", "--role", "radiologist", "--by", "test")
    once = added.stdout.strip().rsplit(" ", 1)[-1]
    answer = client.post("/api/v1/tokens", json={"username": "reader", "password": once})
    assert answer.status_code == 200, answer.text
    auth = {"Authorization": f"Bearer {answer.json()['token']}"}
    changed = client.post(
        "/api/v1/me/password",
        json={"current": once, "new": "quiet lanterns over the harbour"},
        headers=auth,
    )
    assert changed.status_code == 204, changed.text
    return auth


def _ready_record(daemon: Daemon) -> dict[str, object]:
    """The last start's "ready" log record."""
    for line in reversed(daemon.logs().splitlines()):
        if "ChestAid daemon ready" in line:
            record: dict[str, object] = json.loads(line)
            return record
    pytest.fail(f"no ready line in the log:\n{daemon.logs()[-3000:]}")


def test_a_shadow_site_scores_and_keeps_but_sends_nothing_even_after_going_live(
    tmp_path: Path,
) -> None:
    pacs = StoreSCP(tmp_path / "pacs").start()
    shadow = Daemon(
        tmp_path / "node", sections={"site": {"mode": "shadow"}}, destinations=[pacs.destination()]
    )
    try:
        shadow.start()
        assert _ready_record(shadow)["mode"] == "shadow"
        assert "shadow mode: the sender does not start" in shadow.logs()
        first = make_dx(tmp_path / "a.dcm", rows=128, cols=128, seed=1)
        assert storescu([tmp_path / "a.dcm"], shadow.port).returncode == 0
        wait_until(shadow.terminal, timeout=60, what="the image scored")
        (result,) = shadow.query("SELECT shadow FROM results")
        assert bool(result[0]) is True
        # What would have been sent was built (SC and SR) and kept; nothing is on its way.
        assert shadow.query("SELECT count(*) FROM outputs")[0][0] == 2
        assert shadow.query("SELECT count(*) FROM deliveries")[0][0] == 0
        assert pacs.files() == []
        assert json.loads(shadow.cli("status").stdout)["mode"] == "shadow"

        with httpx.Client(base_url=f"http://127.0.0.1:{shadow.web_port}") as client:
            auth = _reader_token(shadow, client)
            worklist = client.get("/api/v1/worklist", headers=auth).json()
            assert worklist["mode"] == "shadow"
            assert [i["study_instance_uid"] for i in worklist["items"]] == [
                str(first.StudyInstanceUID)
            ]
        assert shadow.stop() == 0

        # The same node goes live: only what it scores from now on is sent.
        live = Daemon(
            tmp_path / "live",
            sections={
                "storage": {"var_dir": str(shadow.root / "var"), "database_url": shadow.db_url}
            },
            destinations=[pacs.destination()],
            migrate=False,
        )
        live.start()
        try:
            assert _ready_record(live)["mode"] == "live"
            make_dx(tmp_path / "b.dcm", rows=128, cols=128, seed=2)
            assert storescu([tmp_path / "b.dcm"], live.port).returncode == 0
            wait_until(
                lambda: (
                    live.query("SELECT count(*) FROM deliveries WHERE state = 'delivered'")[0][0]
                    == 2
                ),
                timeout=60,
                what="the live study's two outputs delivered",
            )
            assert live.terminal()
            sent = live.query(
                "SELECT DISTINCT r.shadow FROM deliveries d JOIN outputs o ON o.id = d.output_id"
                " JOIN results r ON r.job_id = o.job_id"
            )
            assert [bool(row[0]) for row in sent] == [False]
            assert len(pacs.files()) == 2  # the live study's SC and SR, nothing of the backlog
            assert json.loads(live.cli("status").stdout)["mode"] == "live"
        finally:
            live.stop()
    finally:
        shadow.stop()
        pacs.stop()
