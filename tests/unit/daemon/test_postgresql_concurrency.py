"""Queue claims meeting on a real PostgreSQL server, where writers run side by side
(on SQLite one writer at a time makes this race impossible; the study row's races are
in test_concurrent_writers).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from daemon.db import queue
from daemon.db.session import make_engine, make_session_factory, writing
from tests.daemon_harness import record_received


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    # A unit that would wait on a lock it should have skipped fails instead of hanging.
    engine = make_engine(f"{postgres_url}?options=-c%20lock_timeout%3D5000")
    yield engine
    engine.dispose()


def test_two_workers_claim_different_jobs_without_waiting(pg_engine: Engine) -> None:
    """A claim skips a job another worker is claiming (FOR UPDATE SKIP LOCKED) instead
    of waiting for it or taking it twice."""
    sessions = make_session_factory(pg_engine)
    first_id = record_received(sessions, "1.1", spool_name="x/1.1.dcm")
    second_id = record_received(sessions, "1.2", spool_name="x/1.2.dcm")
    args = {"lease_seconds": 60.0, "max_attempts": 3}
    with writing(sessions) as a:
        claim_a = queue.claim_job(a, owner="a", **args)  # type: ignore[arg-type]
        with writing(sessions) as b:  # a second connection, while a's row is locked
            claim_b = queue.claim_job(b, owner="b", **args)  # type: ignore[arg-type]
            with writing(sessions) as c:
                assert queue.claim_job(c, owner="c", **args) is None  # type: ignore[arg-type]
    assert claim_a is not None and claim_b is not None
    assert (claim_a.job_id, claim_b.job_id) == (first_id, second_id)
