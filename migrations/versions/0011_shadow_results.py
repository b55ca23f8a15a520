"""Shadow mode: whether a result was made while the site ran silently (sent nowhere).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from daemon.errors import SchemaError

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Every result recorded before this revision was made live.
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("shadow", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    # The older schema would take a shadow result for a live one (sent, and counted as
    # such in the report): refuse while any exists.
    bind = op.get_bind()
    count = bind.execute(sa.text("SELECT COUNT(*) FROM results WHERE shadow")).scalar()
    if count:
        raise SchemaError(
            f"{count} results were made in shadow mode, which schema 0010 would show as "
            "live results; not downgraded"
        )
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.drop_column("shadow")
