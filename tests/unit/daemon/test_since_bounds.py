"""``since=`` spans too large for a date are refused with a reason, never a 500 or a traceback.

Issue 14 item 8: ``since=99999999999d`` overflowed in :func:`daemon.feedback.parse_since`;
the API answered 500 and the command line printed a traceback. Against a real migrated
SQLite file, through the real app and the real command line.
"""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon.cli import main
from daemon.db.migrate import upgrade
from daemon.db.models import UserRole
from daemon.db.session import SessionFactory, make_engine
from daemon.feedback import MAX_SINCE_DAYS, FeedbackError, parse_since
from daemon.settings import load_settings
from tests.daemon_harness import DAEMON
from tests.web_fixtures import Site

ROOT = Path(__file__).resolve().parents[3]

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
HUGE = ("99999999999d", "1000000d", "876600000h", "99999999999999999999m", "40000d")


@pytest.mark.parametrize("text", HUGE)
def test_a_span_beyond_the_bound_is_a_typed_error_naming_it(text: str) -> None:
    with pytest.raises(FeedbackError, match=f"at most {MAX_SINCE_DAYS} days"):
        parse_since(text, now=NOW)


def test_spans_up_to_the_bound_and_old_dates_are_still_read() -> None:
    assert parse_since(f"{MAX_SINCE_DAYS}d", now=NOW) == NOW - timedelta(days=MAX_SINCE_DAYS)
    assert parse_since("0001-01-01", now=NOW) == datetime(1, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("route", ["/api/v1/report", "/api/v1/feedback"])
@pytest.mark.parametrize("text", ["99999999999d", "1000000d"])
def test_the_api_answers_422_with_the_reason(
    tmp_path: Path, sessions: SessionFactory, route: str, text: str
) -> None:
    site = Site.build(tmp_path, sessions)
    admin = site.bearer(site.add_user("admin", UserRole.ADMIN))
    with site.client() as client:
        answer = client.get(route, params={"since": text}, headers=admin)
        assert answer.status_code == 422, answer.text
        assert f"at most {MAX_SINCE_DAYS} days" in answer.json()["detail"]
        assert client.get(route, params={"since": "30d"}, headers=admin).status_code == 200


@pytest.mark.parametrize(
    "command", [["feedback", "report"], ["feedback", "export"], ["audit"]], ids=" ".join
)
def test_each_command_refuses_it_as_a_usage_error(
    capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--since", "99999999999d"])
    assert exited.value.code == 2
    printed = capsys.readouterr().err
    assert "Traceback" not in printed
    assert printed.strip().splitlines()[-1].endswith(f"at most {MAX_SINCE_DAYS} days back")


def test_the_command_line_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "chestaid.toml"
    config.write_text(f'[storage]\nvar_dir = "{tmp_path / "var"}"\n', encoding="utf-8")
    (tmp_path / "var").mkdir()
    engine = make_engine(load_settings(config).storage.url)
    upgrade(engine)
    engine.dispose()

    def run(since: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*DAEMON, "feedback", "report", "--since", since, "--config", str(config)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            cwd=tmp_path,
            timeout=120,
        )

    refused = run("99999999999d")
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines()[-1].endswith(f"at most {MAX_SINCE_DAYS} days back")
    accepted = run("30d")
    assert accepted.returncode == 0, accepted.stderr
