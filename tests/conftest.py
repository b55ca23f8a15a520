"""Fixtures: a real SQLite database file migrated by Alembic."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from daemon.db.migrate import upgrade
from daemon.db.session import SessionFactory, make_engine, make_session_factory


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'chestaid.db'}", busy_timeout=2.0)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> SessionFactory:
    return make_session_factory(engine)
