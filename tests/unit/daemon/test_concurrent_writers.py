"""Two processes writing the same rows at once, on PostgreSQL (roles run apart).

Each test holds the first writer's transaction open, starts the second writer in a
thread, waits until PostgreSQL reports that writer blocked on a lock, and only then
commits the first: the interleaving is the same every run. (On SQLite writers queue
for the whole database at the start of their transaction, so these cannot happen.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select, text
from sqlalchemy.orm import Session

from daemon import accounts
from daemon.db import queue
from daemon.db.models import Instance, Study, User
from daemon.db.session import SessionFactory, make_engine, make_session_factory, writing
from daemon.web.server import first_start
from tests.daemon_harness import record_instance_in, wait_until


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_sessions(pg_engine: Engine) -> SessionFactory:
    return make_session_factory(pg_engine)


def _someone_waits_on_a_lock(engine: Engine) -> bool:
    with engine.connect() as connection:
        waiting = connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar_one()
    return bool(waiting)


def _second_after_first(engine: Engine, first: Session, second: Callable[[], Any]) -> Any:
    """Run ``second`` in a thread until it blocks on ``first``'s locks, then commit
    ``first``; returns what ``second`` returned (raises what it raised)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = second()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    try:
        wait_until(
            lambda: _someone_waits_on_a_lock(engine) or not thread.is_alive(),
            timeout=30,
            what="the second writer to wait for the first",
        )
        assert thread.is_alive(), f"the second writer did not wait: {outcome}"
        first.commit()
    finally:
        if first.in_transaction():
            first.rollback()
        thread.join(timeout=30)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def _record(session: Session, uid: str, study: str) -> int:
    job_id: int = record_instance_in(session, uid, study=study).id
    return job_id


def test_first_images_of_a_study_arriving_together_are_both_kept(
    pg_engine: Engine, pg_sessions: SessionFactory
) -> None:
    first = pg_sessions()
    first.begin()
    _record(first, "1.2.3.1", "1.2.3")

    def second() -> int:
        with writing(pg_sessions) as session:
            return _record(session, "1.2.3.2", "1.2.3")

    assert _second_after_first(pg_engine, first, second)
    first.close()
    with pg_sessions() as session:
        assert session.scalar(select(func.count(Instance.id))) == 2
        assert session.scalar(select(func.count(Study.id))) == 1


def _score(session: Session, owner: str, job_id: int) -> bool:
    return queue.complete_job(
        session,
        job_id=job_id,
        owner=owner,
        logit=1.0,
        score=0.7,
        threshold=0.5,
        above_threshold=True,
        priority="URGENT",
        model_version="m",
        calibration_version=1,
        outputs=[],
        destinations=[],
    )


def test_two_workers_scoring_images_of_one_study_leave_both_counted(
    pg_engine: Engine, pg_sessions: SessionFactory
) -> None:
    with writing(pg_sessions) as session:
        jobs = [_record(session, f"1.2.4.{i}", "1.2.4") for i in (1, 2)]
    with writing(pg_sessions) as session:
        for owner in ("w1", "w2"):
            claim = queue.claim_job(session, owner=owner, lease_seconds=60, max_attempts=3)
            assert claim is not None
    first = pg_sessions()
    first.begin()
    assert _score(first, "w1", jobs[0])

    def second() -> bool:
        with writing(pg_sessions) as session:
            return _score(session, "w2", jobs[1])

    assert _second_after_first(pg_engine, first, second)
    first.close()
    with pg_sessions() as session:
        study = session.scalars(select(Study)).one()
        assert (study.images, study.listed) == (2, True)


def test_two_web_processes_starting_together_make_one_first_admin(
    pg_engine: Engine, pg_sessions: SessionFactory
) -> None:
    first = pg_sessions()
    first.begin()
    assert accounts.ensure_first_admin(first) is not None

    _second_after_first(pg_engine, first, lambda: first_start(pg_sessions))
    first.close()
    with pg_sessions() as session:
        assert session.scalars(select(User.username)).all() == ["admin"]


def test_a_first_admin_made_between_the_count_and_the_insert_is_given_way_to(
    pg_engine: Engine, pg_sessions: SessionFactory
) -> None:
    # The other order: the second process counts no user, the first commits its admin,
    # and only then does the second look the name up. It found "admin" taken and failed
    # its start ("the user name 'admin' is taken"), seen in the roles-apart test.
    second = pg_sessions()
    second.begin()
    made: list[str | None] = []

    @event.listens_for(second.connection(), "after_execute")
    def _after(conn: Any, clause: Any, *_args: Any) -> None:
        if "count" in str(clause).lower() and not made:
            with writing(pg_sessions) as first:
                made.append(accounts.ensure_first_admin(first))

    assert accounts.ensure_first_admin(second) is None
    second.commit()
    second.close()
    assert made and made[0] is not None
    with pg_sessions() as session:
        assert session.scalars(select(User.username)).all() == ["admin"]
