"""What every command shares: output as tables, CSV or JSON, and the database."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from daemon.db.migrate import check_schema
from daemon.db.session import SessionFactory, make_engine, make_session_factory
from daemon.feedback import csv_text
from daemon.settings import Settings


@contextmanager
def database(settings: Settings, *, check: bool = True) -> Iterator[SessionFactory]:
    """The configured database's session factory for one command, its schema checked.

    Raises:
        ConfigurationError: the schema is not at this ChestAid's revision (``check``).
    """
    engine = make_engine(settings.storage.url)
    try:
        if check:
            check_schema(engine)
        yield make_session_factory(engine)
    finally:
        engine.dispose()


def out(text: str) -> None:
    sys.stdout.write(text + "\n")


def err(text: str) -> None:
    sys.stderr.write(text + "\n")


def flat(group: dict[str, object]) -> dict[str, object]:
    """A report group as one row: each rate as 'value [low, high]', and counts by kind
    (the labels by source) as 'reader 3, report 2'."""
    row: dict[str, object] = {}
    for key, value in group.items():
        if isinstance(value, dict) and "ci95" in value:
            lo, hi = value["ci95"]
            row[key] = fmt(value["value"]) + f" [{fmt(lo)}, {fmt(hi)}]"
        elif isinstance(value, dict):
            row[key] = ", ".join(f"{name} {count}" for name, count in value.items())
        else:
            row[key] = fmt(value) if isinstance(value, float) or value is None else value
    return row


def fmt(value: object) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def emit(rows: Sequence[Mapping[str, object]], fmt: str) -> None:
    """Rows as a tab-separated table, CSV or JSON on standard output."""
    if fmt == "json":
        out(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        out("(none)" if fmt == "table" else "")
        return
    if fmt == "csv":
        sys.stdout.write(csv_text([dict(row) for row in rows]))
        return
    out("\t".join(rows[0]))
    for row in rows:
        out("\t".join(str(v) for v in row.values()))
