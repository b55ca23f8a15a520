"""Units of work on a real SQLite file and a real PostgreSQL database: a reading unit
takes no lock, keeps one snapshot and cannot write; on SQLite a writing unit holds the
write lock from its start, on PostgreSQL writers on different rows proceed side by side."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from daemon import recalibration
from daemon.db.models import CalibrationVersion, UserRole
from daemon.db.session import SessionFactory, make_engine, make_session_factory, reading, writing
from tests.daemon_harness import record_scored
from tests.postgres_server import POSTGRESQL_ONLY, SQLITE_ONLY
from tests.web_fixtures import Site


def _row(version: int) -> CalibrationVersion:
    return CalibrationVersion(
        version=version,
        model_version="m",
        method="temperature",
        calibrator="{}",
        threshold=0.5,
        target_sensitivity=0.9,
        n_cases=1,
        report="{}",
        fitted_by="x",
    )


def _impatient(engine: Engine) -> SessionFactory:
    """Another process's sessions, waiting at most 0.2 s for the lock (as the SCP would)."""
    return make_session_factory(make_engine(str(engine.url), busy_timeout=0.2))


def test_a_reading_unit_never_holds_up_a_writer(engine: Engine, sessions: SessionFactory) -> None:
    """Every unit used to begin IMMEDIATE: a page or a report held the write lock and a
    modality's C-STORE waited on it (0xA700 past the busy timeout)."""
    other = _impatient(engine)
    with reading(sessions) as s:
        assert recalibration.versions(s) == []
        with writing(other) as w:  # would raise "database is locked" under a read lock
            w.add(_row(1))
        # The reader keeps its snapshot; the writer's row is there for the next unit.
        assert recalibration.versions(s) == []
    with reading(sessions) as s:
        assert [v.version for v in recalibration.versions(s)] == [1]


@SQLITE_ONLY  # SQLite's database-wide write lock; PostgreSQL locks rows (next test)
def test_a_writing_unit_holds_the_lock_from_its_start(
    engine: Engine, sessions: SessionFactory
) -> None:
    other = _impatient(engine)
    with writing(sessions) as s:
        recalibration.versions(s)  # the unit has begun (IMMEDIATE), nothing written yet
        with pytest.raises(OperationalError, match="locked"), writing(other) as w:
            w.add(_row(2))
        s.add(_row(1))
    with reading(sessions) as s:
        assert [v.version for v in recalibration.versions(s)] == [1]


@POSTGRESQL_ONLY  # SQLite has one writer at a time (previous test)
def test_writing_units_on_different_rows_proceed_side_by_side_on_postgresql(
    engine: Engine, sessions: SessionFactory
) -> None:
    other = _impatient(engine)
    with writing(sessions) as s:
        s.add(_row(1))
        s.flush()
        with writing(other) as w:  # commits while the first unit is still open
            w.add(_row(2))
    with reading(sessions) as s:
        assert [v.version for v in recalibration.versions(s)] == [2, 1]


def test_a_reading_unit_refuses_to_write(sessions: SessionFactory) -> None:
    with pytest.raises(DBAPIError, match=r"readonly|read-only"), reading(sessions) as s:
        s.add(_row(1))
        s.flush()
    with reading(sessions) as s:
        assert recalibration.versions(s) == []


def test_pages_are_served_while_another_role_holds_the_write_lock(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    """Reading a page takes no lock (the sign-in check included, while no last-seen
    update is due): with the SCP or a worker mid-commit, the worklist, a study and the
    dashboard still answer, instead of waiting out the busy timeout and failing."""
    site = Site.build(tmp_path, sessions)
    admin = site.add_user("admin", UserRole.ADMIN)
    uid = record_scored(sessions, "1.2.3", logit=2.0, score=0.9, above=True)
    client, _ = site.browser(admin)
    bearer = site.bearer(admin)
    with writing(sessions) as held:
        held.add(_row(9))  # the write lock is held until this block ends
        held.flush()
        assert client.get("/worklist").status_code == 200
        assert client.get(f"/studies/{uid}").status_code == 200
        assert client.get("/admin").status_code == 200
        assert client.get(f"/api/v1/studies/{uid}", headers=bearer).status_code == 200


def test_writers_of_one_process_take_turns_and_a_failed_unit_lets_the_next_in(
    engine: Engine, sessions: SessionFactory
) -> None:
    """Writing units of one process queue on the engine's lock (no polling of SQLite's):
    every unit commits, one that fails rolls back and hands the lock on."""
    errors: list[BaseException] = []

    def write(first: int) -> None:
        try:
            for version in range(first, first + 5):
                with writing(sessions) as s:
                    s.add(_row(version))
                with pytest.raises(RuntimeError), writing(sessions) as s:
                    s.add(_row(version + 1000))
                    raise RuntimeError("rolled back")
        except BaseException as exc:  # reported below, with the thread's name
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i * 10 + 1,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with reading(sessions) as s:
        versions = sorted(v.version for v in recalibration.versions(s))
    assert versions == sorted(i * 10 + 1 + k for i in range(4) for k in range(5))
    # No unit left the lock held: another process's impatient writer gets in at once.
    with writing(_impatient(engine)) as w:
        w.add(_row(99))
