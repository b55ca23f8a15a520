"""Where a label came from: a reader's click, or a final report's text (with its evidence).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from daemon.errors import SchemaError

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Every label recorded before this revision was a reader's own.
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "source",
                sa.Enum(
                    "reader",
                    "report",
                    name="feedback_source",
                    native_enum=False,
                    create_constraint=True,
                    length=16,
                ),
                server_default="reader",
                nullable=False,
            )
        )
        batch_op.add_column(sa.Column("evidence", sa.Text(), nullable=True))


def downgrade() -> None:
    # The older schema would take a report's label for a reader's click: refuse.
    bind = op.get_bind()
    count = bind.execute(sa.text("SELECT COUNT(*) FROM feedback WHERE source = 'report'")).scalar()
    if count:
        raise SchemaError(
            f"{count} labels came from final reports, which schema 0009 would show as "
            "readers' own; not downgraded"
        )
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.drop_constraint("feedback_source", type_="check")
        batch_op.drop_column("evidence")
        batch_op.drop_column("source")
