"""Schema migrations (Alembic) and the check ``serve`` makes before it starts."""

from __future__ import annotations

import logging
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


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Migrate the database to ``revision``; returns (before, after)."""
    before = current_revision(engine)
    config = alembic_config(engine)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
    after = current_revision(engine)
    logger.info("database migrated", extra={"from_revision": before, "to_revision": after})
    return before, after or ""


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
