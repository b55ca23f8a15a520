"""One report a study: whether a study's report is pending, and what its last one said.

Studies received before this revision had one SR an image already: none is pending.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("report_pending", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(
            sa.Column("report_revision", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("reported_result_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("reported_band", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("reported_above", sa.Boolean(), nullable=True))
        batch_op.add_column(
            sa.Column("reported_sop_instance_uid", sa.String(length=64), nullable=True)
        )
        batch_op.create_index("ix_studies_report_pending", ["report_pending"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_index("ix_studies_report_pending")
        batch_op.drop_column("reported_sop_instance_uid")
        batch_op.drop_column("reported_above")
        batch_op.drop_column("reported_band")
        batch_op.drop_column("reported_result_id")
        batch_op.drop_column("report_revision")
        batch_op.drop_column("report_pending")
