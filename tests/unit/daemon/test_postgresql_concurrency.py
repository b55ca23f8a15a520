"""Units of work meeting on a real PostgreSQL server, where writers run side by side
(on SQLite one writer at a time makes these races impossible).

Each race is made to happen, not hoped for: the first unit holds its rows uncommitted
while the second one starts, and the test watches the server's lock table to know
when the second is waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, func, select, text

from daemon.db import queue
from daemon.db.models import Instance, Study
from daemon.db.session import SessionFactory, make_engine, make_session_factory, writing
from daemon.db.studies import StudyIdentity
from tests.daemon_harness import record_received

_WAIT_S = 30.0


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    # A unit that would wait on a lock it should have skipped fails instead of hanging.
    engine = make_engine(f"{postgres_url}?options=-c%20lock_timeout%3D5000")
    yield engine
    engine.dispose()


def _record(sessions: SessionFactory, sop: str, name: str) -> None:
    with writing(sessions) as s:
        queue.record_instance(
            s,
            sop_instance_uid=sop,
            sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1",
            study_instance_uid="1.2.3",
            series_instance_uid="1.2.3.4",
            transfer_syntax_uid="1.2.840.10008.1.2.1",
            modality="DX",
            spool_name=f"x/{sop}.dcm",
            size_bytes=10,
            calling_ae_title="MODALITY",
            peer_address="127.0.0.1",
            requested_priority="MEDIUM",
            identity=StudyIdentity.bounded(patient_id=name),
        )


def _await_a_waiter(engine: Engine) -> None:
    """Return once some backend waits on a lock (the second unit, held up by the first)."""
    deadline = time.monotonic() + _WAIT_S
    with engine.connect() as connection:
        while time.monotonic() < deadline:
            waiting = connection.execute(
                text("SELECT count(*) FROM pg_locks WHERE NOT granted")
            ).scalar_one()
            connection.rollback()
            if waiting:
                return
    raise AssertionError("the second unit never waited on the first one's row")


def test_two_first_images_of_one_study_make_one_study_row(pg_engine: Engine) -> None:
    """Two SCP processes receive a new study's first two images at once: both images
    are recorded and the study has one row (the second insert used to fail on the
    unique study UID once the first committed)."""
    sessions = make_session_factory(pg_engine)
    errors: list[BaseException] = []

    def second() -> None:
        try:
            _record(sessions, "1.2.3.4.2", "SECOND")
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    with writing(sessions) as s:
        queue.record_instance(
            s,
            sop_instance_uid="1.2.3.4.1",
            sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1",
            study_instance_uid="1.2.3",
            series_instance_uid="1.2.3.4",
            transfer_syntax_uid="1.2.840.10008.1.2.1",
            modality="DX",
            spool_name="x/1.dcm",
            size_bytes=10,
            calling_ae_title="MODALITY",
            peer_address="127.0.0.1",
            requested_priority="MEDIUM",
            identity=StudyIdentity.bounded(patient_id="FIRST"),
        )
        thread = threading.Thread(target=second)
        thread.start()
        _await_a_waiter(pg_engine)  # the second unit waits on the first's new row
    thread.join(_WAIT_S)
    assert not thread.is_alive()
    assert errors == []
    with writing(sessions) as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == 2
        study = s.scalars(select(Study)).one()
    # The first header wins; the second image waited for the row, then kept it.
    assert (study.study_instance_uid, study.patient_id) == ("1.2.3", "FIRST")


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
