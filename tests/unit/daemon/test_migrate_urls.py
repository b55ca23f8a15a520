"""Migrating a database named by any URL the settings accept."""

from __future__ import annotations

from sqlalchemy import text

from daemon.db.migrate import current_revision, head_revision, upgrade
from daemon.db.session import make_engine
from tests.postgres_server import PostgresServer


def test_a_postgresql_url_through_a_socket_directory_migrates(
    postgres_server: PostgresServer,
) -> None:
    # A Unix-socket host is URL-quoted (host=%2F...); Alembic's options are read with
    # interpolation, where a bare "%" was an error.
    name = postgres_server.create_database()
    try:
        url = (
            f"postgresql+psycopg://{postgres_server.user}@/{name}"
            f"?host={postgres_server.root}&port={postgres_server.port}"
        )
        engine = make_engine(url)
        assert "%2F" in engine.url.render_as_string()
        try:
            upgrade(engine)
            assert current_revision(engine) == head_revision()
            with engine.connect() as connection:
                assert connection.execute(text("SELECT count(*) FROM jobs")).scalar() == 0
        finally:
            engine.dispose()
    finally:
        postgres_server.drop_database(name)
