"""Schema migrations (Alembic) and the check ``serve`` makes before it starts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

import migrations
from daemon.errors import SchemaError

logger = logging.getLogger(__name__)

SCRIPT_LOCATION = Path(migrations.__file__).resolve().parent


def alembic_config(engine: Engine) -> Config:
    """An Alembic configuration running on ``engine``'s database."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    # The option is read through configparser's interpolation: a literal "%" (as in a
    # URL-quoted socket directory, host=%2Frun%2Fpostgresql) must be doubled.
    url = engine.url.render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest revision this ChestAid knows."""
    head = ScriptDirectory.from_config(_script_config()).get_current_head()
    if head is None:
        raise SchemaError("no migrations found")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _migrate(engine: Engine, step: Callable[[Config], None]) -> None:
    """Run an Alembic command in one transaction on ``engine``.

    On SQLite, a migration that changes a table copies it and drops the old one (batch
    mode), which fails while foreign keys are enforced and other tables' rows refer to
    it (feedback_changes to feedback, say): every site with history would fail to
    upgrade. Enforcement is off for the migration, as SQLite's own procedure for
    changing a table prescribes (set before the transaction: SQLite ignores the pragma
    inside one), and the result is checked before the commit: a row left without its
    parent fails the migration, which is rolled back.
    """
    config = alembic_config(engine)
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        raw = conn.connection.dbapi_connection if sqlite else None
        if raw is not None:
            raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                config.attributes["connection"] = conn
                step(config)
                if sqlite:
                    orphans = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if orphans:
                        raise SchemaError(
                            f"the migration would leave {len(orphans)} rows without the row "
                            f"they refer to (first: table {orphans[0][0]}); rolled back"
                        )
        finally:
            if raw is not None:
                raw.execute("PRAGMA foreign_keys=ON")


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Migrate the database to ``revision``; returns (before, after)."""
    before = current_revision(engine)
    _migrate(engine, lambda config: command.upgrade(config, revision))
    after = current_revision(engine)
    logger.info("database migrated", extra={"from_revision": before, "to_revision": after})
    return before, after or ""


def downgrade(engine: Engine, revision: str) -> None:
    """Take the database back to ``revision`` (a migration may refuse, saying why).

    Raises:
        SchemaError: a migration refused (data the older schema cannot hold).
    """
    _migrate(engine, lambda config: command.downgrade(config, revision))


def check_schema(engine: Engine) -> str:
    """Refuse a database that is not at this ChestAid's head revision.

    Returns:
        The revision.

    Raises:
        SchemaError: unmigrated, behind or newer, with what to do in the message.
    """
    script = ScriptDirectory.from_config(_script_config())
    head = head_revision()
    current = current_revision(engine)
    url = engine.url.render_as_string(hide_password=True)
    if current is None:
        raise SchemaError(
            f"the database {url} has no ChestAid schema: run `chestaid-daemon db upgrade` first"
        )
    if current == head:
        return current
    known = {rev.revision for rev in script.walk_revisions()}
    if current not in known:
        raise SchemaError(
            f"the database {url} is at schema {current}, newer than this ChestAid knows "
            f"(head {head}): run the ChestAid version that migrated it, or upgrade ChestAid"
        )
    raise SchemaError(
        f"the database {url} is at schema {current}, behind this ChestAid's {head}: "
        "run `chestaid-daemon db upgrade`"
    )


def _script_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    return config
