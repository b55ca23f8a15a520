"""Scheduled jobs shared by several scheduler processes: each job starts about once an
interval across them, under its row's lock (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from sqlalchemy import select

from daemon.db.models import ScheduledRun, utcnow
from daemon.db.session import SessionFactory, writing
from daemon.maintenance import ScheduledJob
from daemon.scheduler import EARLY_FRACTION, _run_logged, take_turn


def _turn(
    sessions: SessionFactory, owner: str, now: datetime | None = None, seconds: float = 60.0
) -> bool:
    with writing(sessions) as session:
        return take_turn(session, name="retention", seconds=seconds, owner=owner, now=now)


def test_a_job_starts_once_an_interval_whichever_process_asks(sessions: SessionFactory) -> None:
    start = utcnow()
    assert _turn(sessions, "node-a:1:scheduler", start)
    # The other node's timer fires a moment later: the job has just run.
    assert not _turn(sessions, "node-b:7:scheduler", start + timedelta(seconds=5))
    # A little early on the next round still counts (timers drift apart).
    early = timedelta(seconds=60 * (1 - EARLY_FRACTION / 2))
    assert _turn(sessions, "node-b:7:scheduler", start + early)
    assert not _turn(sessions, "node-a:1:scheduler", start + early + timedelta(seconds=1))
    with writing(sessions) as session:
        run = session.scalars(select(ScheduledRun)).one()
    assert (run.name, run.owner, run.started_at) == (
        "retention",
        "node-b:7:scheduler",
        start + early,
    )


def test_a_node_that_is_gone_leaves_the_job_to_the_other(sessions: SessionFactory) -> None:
    start = utcnow()
    assert _turn(sessions, "node-a:1:scheduler", start)
    # node-a stopped: node-b's next rounds run the job, one an interval.
    for n in range(1, 4):
        assert _turn(sessions, "node-b:7:scheduler", start + timedelta(seconds=60 * n))


def test_of_two_schedulers_asking_at_once_one_runs_the_job(sessions: SessionFactory) -> None:
    ran: list[str] = []
    lock = threading.Lock()

    def job(_sessions: SessionFactory) -> dict[str, int]:
        with lock:
            ran.append(threading.current_thread().name)
        return {}

    scheduled = ScheduledJob("queue-report", job, 300.0)
    barrier = threading.Barrier(2)

    def scheduler(owner: str) -> None:
        barrier.wait()
        _run_logged(scheduled, sessions, owner)

    threads = [
        threading.Thread(target=scheduler, args=(f"node-{n}:1:scheduler",), name=f"node-{n}")
        for n in "ab"
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(ran) == 1
    with writing(sessions) as session:
        run = session.scalars(select(ScheduledRun)).one()
    assert run.owner == f"{ran[0]}:1:scheduler"
