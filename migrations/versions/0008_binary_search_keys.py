"""The worklist's search keys (accession number, patient ID) compare byte by byte on
PostgreSQL too, as on SQLite.

The search finds a prefix as a range (``>= text`` and ``< text + U+10FFFF``) on the
column's index. Under a language collation (en_US.UTF-8, Debian's usual database
default) U+10FFFF sorts before letters and digits and punctuation is skipped, so a
prefix found only exact matches; under "C" the range is exactly the prefix, and the
indexes are rebuilt in that order. SQLite compares bytes already: nothing to do there.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEYS = ("accession_number", "patient_id")


def _collate(collation: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for column in _KEYS:
        op.alter_column(
            "studies",
            column,
            type_=sa.String(64, collation=collation),
            existing_type=sa.String(64),
            existing_nullable=True,
        )


def upgrade() -> None:
    _collate("C")


def downgrade() -> None:
    _collate("default")
