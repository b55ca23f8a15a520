"""The "not assessable" outcome on results: whether the image could be judged, the
reason and its sentence when not (then no priority band), and the quarter turns an
image received on its side was given before it was scored.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from daemon.errors import SchemaError

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OUTCOME_CHECK = (
    "(assessable AND priority IS NOT NULL AND not_assessable_reason IS NULL) OR "
    "(NOT assessable AND priority IS NULL AND not_assessable_reason IS NOT NULL "
    "AND NOT above_threshold)"
)


def upgrade() -> None:
    # Every result recorded before this revision was scored as assessable.
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("assessable", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
        batch_op.add_column(sa.Column("not_assessable_reason", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("not_assessable_detail", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("quarter_turns", sa.SmallInteger(), server_default="0", nullable=False)
        )
        batch_op.alter_column("priority", existing_type=sa.String(length=16), nullable=True)
        batch_op.create_check_constraint("ck_results_outcome", OUTCOME_CHECK)


def downgrade() -> None:
    # The older schema has no way to say "not assessable": its worklist would take such
    # a result for the lowest band and list the study as routine. Refuse rather than
    # hide them; they can be gone through (read) and removed by hand first.
    bind = op.get_bind()
    count = bind.execute(sa.text("SELECT COUNT(*) FROM results WHERE NOT assessable")).scalar()
    if count:
        raise SchemaError(
            f"{count} results are 'not assessable', which schema 0005 cannot record: "
            "downgrading would show them as routine studies; not downgraded"
        )
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.drop_constraint("ck_results_outcome", type_="check")
        batch_op.alter_column("priority", existing_type=sa.String(length=16), nullable=False)
        batch_op.drop_column("quarter_turns")
        batch_op.drop_column("not_assessable_detail")
        batch_op.drop_column("not_assessable_reason")
        batch_op.drop_column("assessable")
