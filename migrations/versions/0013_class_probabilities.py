"""N-class bundles: each result keeps the calibrated probability of every class.

A result of a binary bundle, and every result recorded before this revision, has none
(NULL).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("class_probabilities", sa.Text(), nullable=True))


def downgrade() -> None:
    # The score of an N-class result (the probability of "not normal") stays, and the
    # older schema reads it as it reads a binary bundle's; only the breakdown by class
    # goes, which the SRs already sent still state.
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.drop_column("class_probabilities")
