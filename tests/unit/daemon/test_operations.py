"""Failed and skipped images, dead deliveries and the audit search, on a real SQLite file:
the lists with their reasons, paging and totals, and retries that are audited whether
the command line or the web asks."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from daemon import audit, operations
from daemon.cli import main
from daemon.days import DayRange, DayRangeError, day_range
from daemon.db.migrate import upgrade
from daemon.db.models import JobState
from daemon.db.session import (
    SessionFactory,
    make_engine,
    make_session_factory,
    reading,
    writing,
)
from daemon.settings import load_settings
from tests.trouble import dead_deliveries, ended_job

DAY = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
SKIP_REASON = "View Position is not a frontal (PA/AP) view"
FAIL_REASON = "CorruptImageError: the pixel data ends early"


def _problems(
    sessions: SessionFactory, **kwargs: object
) -> operations.Page[operations.ImageProblem]:
    with reading(sessions) as s:
        return operations.image_problems(s, **kwargs)  # type: ignore[arg-type]


def test_failed_and_skipped_images_are_listed_with_their_reasons(
    sessions: SessionFactory,
) -> None:
    failed = ended_job(sessions, "1.1", state=JobState.FAILED, reason=FAIL_REASON, when=DAY)
    skipped = ended_job(
        sessions, "1.2", state=JobState.SKIPPED, reason=SKIP_REASON, when=DAY + timedelta(hours=1)
    )
    done = ended_job(sessions, "1.3", state=JobState.DONE, reason="", when=DAY)

    both = _problems(sessions)
    assert both.total == 2
    assert [p.job_id for p in both.items] == [skipped, failed]  # newest first
    first, second = both.items
    assert (first.state, first.reason, first.retryable) == ("skipped", SKIP_REASON, False)
    assert (second.state, second.reason, second.retryable) == ("failed", FAIL_REASON, True)
    assert second.sop_instance_uid == "1.1" and second.calling_ae_title == "MODALITY"
    assert second.study_instance_uid == "1.2.3" and second.series_instance_uid == "1.2.3.4"
    assert second.attempts == 1 and second.at == DAY
    assert done not in {p.job_id for p in both.items}

    assert [p.job_id for p in _problems(sessions, state="failed").items] == [failed]
    assert [p.job_id for p in _problems(sessions, state="skipped").items] == [skipped]
    with pytest.raises(operations.OperationsError, match="failed or skipped"):
        _problems(sessions, state="done")
    with pytest.raises(operations.OperationsError, match="page"):
        _problems(sessions, limit=0)


def test_image_problems_are_paged_with_a_total_and_filtered_by_day(
    sessions: SessionFactory,
) -> None:
    for i in range(7):
        ended_job(
            sessions,
            f"2.{i}",
            state=JobState.FAILED,
            reason=FAIL_REASON,
            when=DAY + timedelta(days=i),
        )
    page = _problems(sessions, limit=3, offset=3)
    assert (page.total, page.number, page.pages) == (7, 2, 3)
    assert [p.sop_instance_uid for p in page.items] == ["2.3", "2.2", "2.1"]
    within = _problems(sessions, days=day_range("2026-03-11", "2026-03-12"))
    assert within.total == 2
    assert {p.sop_instance_uid for p in within.items} == {"2.1", "2.2"}
    assert _problems(sessions, days=day_range("2026-03-17", "")).total == 0


def test_a_web_retry_queues_failed_images_only_and_is_audited(sessions: SessionFactory) -> None:
    failed = ended_job(sessions, "3.1", state=JobState.FAILED, reason=FAIL_REASON)
    skipped = ended_job(sessions, "3.2", state=JobState.SKIPPED, reason=SKIP_REASON)
    with writing(sessions) as s:
        assert operations.retry_images(s, actor="anne", via="web", ids=[skipped]) == []
        assert operations.retry_images(s, actor="anne", via="web", ids=[failed, skipped]) == [
            failed
        ]
    with reading(sessions) as s:
        remaining = operations.image_problems(s)
        entries, _ = audit.search(s)
    assert [(p.job_id, p.state) for p in remaining.items] == [(skipped, "skipped")]
    (entry,) = entries  # the retry that queued nothing is not recorded
    assert (entry.actor, entry.action, entry.subject) == ("anne", "jobs.retried", str(failed))
    assert json.loads(entry.detail or "")["via"] == "web"


def test_dead_deliveries_are_listed_and_a_retry_is_audited(sessions: SessionFactory) -> None:
    ids = dead_deliveries(sessions, "4.1")
    with reading(sessions) as s:
        page = operations.dead_deliveries(s)
    assert page.total == 2
    assert {d.kind for d in page.items} == {"sc", "sr"}
    assert all(
        (d.destination, d.attempts, d.last_status, d.last_error)
        == ("pacs", 1, 0xA700, "association rejected")
        for d in page.items
    )
    with writing(sessions) as s:
        assert operations.retry_deliveries(s, actor="anne", via="web", ids=[ids[0]]) == [ids[0]]
        assert operations.retry_deliveries(s, actor="anne", via="web", ids=[ids[0]]) == []
    with reading(sessions) as s:
        assert [d.delivery_id for d in operations.dead_deliveries(s).items] == [ids[1]]
        entries, total = audit.search(s, action_prefix="deliveries.")
    assert total == 1 and entries[0].subject == str(ids[0])


def _cli_site(tmp_path: Path) -> tuple[Path, SessionFactory]:
    config = tmp_path / "chestaid.toml"
    config.write_text(f'[storage]\nvar_dir = "{tmp_path / "var"}"\n', encoding="utf-8")
    (tmp_path / "var").mkdir()
    engine = make_engine(load_settings(config).storage.url)
    upgrade(engine)
    return config, make_session_factory(engine)


def test_the_command_line_retries_are_audited_like_the_webs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, sessions = _cli_site(tmp_path)
    job = ended_job(sessions, "5.1", state=JobState.FAILED, reason=FAIL_REASON)
    deliveries = dead_deliveries(sessions, "5.2")

    assert (
        main(["outbox", "retry", "--all-dead", "--by", "pacsadmin", "--config", str(config)]) == 0
    )
    assert "2 dead deliveries queued again" in capsys.readouterr().out
    assert main(["jobs", "retry", str(job), "--by", "pacsadmin", "--config", str(config)]) == 0
    assert "1 failed jobs queued again" in capsys.readouterr().out

    with reading(sessions) as s:
        entries, _ = audit.search(s)
        still_dead = operations.dead_deliveries(s).total
    assert still_dead == 0
    by_action = {e.action: e for e in entries}
    assert set(by_action) == {"jobs.retried", "deliveries.retried"}
    outbox = by_action["deliveries.retried"]
    assert outbox.actor == "pacsadmin"
    assert json.loads(outbox.detail or "") == {
        "deliveries": deliveries,
        "via": "cli",
        "all_dead": True,
    }
    assert by_action["jobs.retried"].subject == str(job)


# --- the audit search and export ----------------------------------------------------------


def _entries(sessions: SessionFactory) -> None:
    with writing(sessions) as s:
        for i in range(12):
            audit.record(
                s,
                actor="anne" if i % 2 else "bob",
                action="login" if i % 3 else "user.created",
                subject=f"s{i}",
                now=DAY + timedelta(days=i),
            )


def test_the_audit_search_filters_by_days_actor_and_action_and_pages(
    sessions: SessionFactory,
) -> None:
    _entries(sessions)
    with reading(sessions) as s:
        days = day_range("2026-03-12", "2026-03-15")  # entries 2 to 5, both days whole
        found, total = audit.search(s, days=days)
        assert total == 4 and [e.subject for e in found] == ["s5", "s4", "s3", "s2"]
        found, total = audit.search(s, days=days, actor="anne")
        assert [e.subject for e in found] == ["s5", "s3"]
        found, total = audit.search(s, action_prefix="user.")
        assert total == 4 and {e.subject for e in found} == {"s0", "s3", "s6", "s9"}
        page, total = audit.search(s, limit=5, offset=10)
        assert total == 12 and [e.subject for e in page] == ["s1", "s0"]
        assert audit.search(s, actor="nobody")[1] == 0


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        ("2026-13-01", "", "no such day"),
        ("2026-02-30", "", "no such day"),
        ("yesterday", "", "YYYY-MM-DD"),
        ("", "99999-01-01", "YYYY-MM-DD"),
        ("2026-03-02", "2026-03-01", "after the to date"),
    ],
)
def test_bad_dates_are_refused_with_a_reason(first: str, last: str, message: str) -> None:
    with pytest.raises(DayRangeError, match=message):
        day_range(first, last)


def test_the_last_day_there_is_leaves_the_range_open() -> None:
    assert day_range("", "9999-12-31").until is None
    assert day_range(" 2026-03-01 ", "").since == datetime(2026, 3, 1, tzinfo=UTC)
    assert DayRange(date(2026, 3, 1), date(2026, 3, 1)).until == datetime(2026, 3, 2, tzinfo=UTC)


def test_the_csv_export_neutralises_formulas_and_is_audited(sessions: SessionFactory) -> None:
    hostile = ['=HYPERLINK("http://x")', "+1+1", "-2", "@SUM(A1)", "\tx", "\rx"]
    with writing(sessions) as s:
        for i, text in enumerate(hostile):
            audit.record(s, actor=text, action="login", subject=text, now=DAY + timedelta(hours=i))
    with writing(sessions) as s:
        text = audit.export(s, actor="anne", fmt="csv", days=day_range("2026-03-10", ""))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(hostile)
    for row in rows:
        for key in ("actor", "subject"):
            assert row[key][:1] == "'", (key, row[key])
            assert row[key][1:] in hostile
    with writing(sessions) as s:
        as_json = json.loads(audit.export(s, actor="anne", fmt="json", days=DayRange(), by="anne"))
        assert [r["action"] for r in as_json] == ["audit.exported"]  # JSON keeps text as it is
        recorded, total = audit.search(s, action_prefix="audit.exported")
    assert total == 2
    detail = json.loads(recorded[-1].detail or "")
    assert (detail["format"], detail["rows"], detail["from"]) == ("csv", 6, "2026-03-10")
    assert recorded[-1].actor == "anne"
    with writing(sessions) as s, pytest.raises(ValueError):
        audit.export(s, actor="anne", fmt="xlsx", days=DayRange())


@pytest.mark.parametrize("given", ["99999999999999999999999", "0", "-5", "seven"])
def test_the_command_line_refuses_ids_that_are_not_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], given: str
) -> None:
    config, _ = _cli_site(tmp_path)
    for command in ("jobs", "outbox"):
        with pytest.raises(SystemExit) as exited:
            main([command, "retry", given, "--config", str(config)])
        assert exited.value.code == 2
        assert "is not an id" in capsys.readouterr().err
