"""Fixtures: a real database migrated by Alembic, on SQLite and on PostgreSQL.

``engine`` (and ``sessions``, built on it) runs each test that uses it twice: on a
SQLite file, the embedded default, and on a database of its own on a real
PostgreSQL server started for the test session (see :mod:`tests.postgres_server`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from daemon.db.migrate import upgrade
from daemon.db.session import SessionFactory, make_engine, make_session_factory
from tests.postgres_server import PostgresServer, running_server

# The nodes the suite starts (in process and as daemons, which inherit this) score with
# PyTorch as it is: choosing a runtime measures every one installed, seconds per start.
# The choice itself has its own tests (tests/unit/chestaid/test_runtimes.py).
os.environ.setdefault("CHESTAID_MODEL__RUNTIME", "torch")
os.environ.setdefault("CHESTAID_MODEL__PRECISION", "f32")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for this test process, in a temporary directory."""
    with running_server() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a migrated database of this test's own on the session's server."""
    name = postgres_server.migrated_database()
    yield postgres_server.url(name)
    postgres_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database's URL: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'chestaid.db'}"
        engine = make_engine(url, busy_timeout=2.0)
        upgrade(engine)
        engine.dispose()
        return url
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url, busy_timeout=2.0)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> SessionFactory:
    return make_session_factory(engine)
