"""Fixtures: a real SQLite database file migrated by Alembic."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from daemon.db.migrate import upgrade
from daemon.db.session import SessionFactory, make_engine, make_session_factory

# The nodes the suite starts (in process and as daemons, which inherit this) score with
# PyTorch as it is: choosing a runtime measures every one installed, seconds per start.
# The choice itself has its own tests (tests/unit/chestaid/test_runtimes.py).
os.environ.setdefault("CHESTAID_MODEL__RUNTIME", "torch")
os.environ.setdefault("CHESTAID_MODEL__PRECISION", "f32")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'chestaid.db'}", busy_timeout=2.0)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> SessionFactory:
    return make_session_factory(engine)
