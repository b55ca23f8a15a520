"""Queue claims meeting on a real PostgreSQL server, where writers run side by side
(on SQLite one writer at a time makes this race impossible; the study row's races are
in test_concurrent_writers).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from daemon.db import queue
from daemon.db.models import OutputKind
from daemon.db.session import make_engine, make_session_factory, writing
from tests.daemon_harness import complete_urgent, record_received


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


def test_two_senders_claim_different_deliveries_without_waiting(pg_engine: Engine) -> None:
    """The outbox's claim skips a delivery another sender is claiming, as a job's does."""
    sessions = make_session_factory(pg_engine)
    job_id = record_received(sessions, "1.1", spool_name="x/1.1.dcm")
    with writing(sessions) as s:
        assert queue.claim_job(s, owner="w", lease_seconds=60.0, max_attempts=3) is not None
    outputs = [
        queue.NewOutput(
            kind=OutputKind.SECONDARY_CAPTURE,
            sop_class_uid="1.2.840.10008.5.1.4.1.1.7",
            sop_instance_uid=f"9.{i}",
            series_instance_uid="9.9",
            file_name=f"job-{i}.dcm",
            size_bytes=1,
        )
        for i in range(2)
    ]
    complete_urgent(sessions, job_id, outputs=outputs, destinations=["pacs"])
    args = {"lease_seconds": 60.0, "destinations": ["pacs"], "limit": 1}
    with writing(sessions) as a:
        claimed_a = queue.claim_deliveries(a, owner="a", **args)  # type: ignore[arg-type]
        with writing(sessions) as b:
            claimed_b = queue.claim_deliveries(b, owner="b", **args)  # type: ignore[arg-type]
            with writing(sessions) as c:
                assert queue.claim_deliveries(c, owner="c", **args) == []  # type: ignore[arg-type]
    assert [d.sop_instance_uid for d in claimed_a + claimed_b] == ["9.0", "9.1"]
