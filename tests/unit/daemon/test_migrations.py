"""Alembic's migrations against the ORM models, on a real SQLite file."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from daemon.db.migrate import alembic_config, head_revision, upgrade
from daemon.db.models import Base


def test_the_migrated_schema_is_the_models_schema(engine: Engine) -> None:
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_every_migration_goes_down_to_the_start_and_up_again(engine: Engine) -> None:
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    assert upgrade(engine)[1] == head_revision()
    assert {"users", "web_sessions", "login_attempts", "saved_analyses"} <= set(
        inspect(engine).get_table_names()
    )
