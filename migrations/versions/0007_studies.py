"""The study table: one row per study with what the worklist sorts and shows, the
identifying fields of its header (kept until retention blanks them), and whether and
why it left the open list. Filled here from the images already scored; identifying
fields of older studies stay empty (no table held them), their modality is taken from
their images.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PRIORITY_ORDER = {"HIGH": 0, "MEDIUM": 1, "LOW": 2}
NOT_ASSESSED_RANK = 0.5


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("patient_name", sa.String(length=64), nullable=True),
        sa.Column("patient_id", sa.String(length=64), nullable=True),
        sa.Column("accession_number", sa.String(length=64), nullable=True),
        sa.Column("study_date", sa.String(length=8), nullable=True),
        sa.Column("study_time", sa.String(length=16), nullable=True),
        sa.Column("patient_age", sa.String(length=4), nullable=True),
        sa.Column("patient_sex", sa.String(length=16), nullable=True),
        sa.Column("study_description", sa.String(length=64), nullable=True),
        sa.Column("modality", sa.String(length=16), nullable=True),
        sa.Column("identity_blanked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("arrived_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("images", sa.Integer(), nullable=False),
        sa.Column("requested_priority", sa.String(length=8), nullable=False),
        sa.Column("raised_by_sender", sa.Boolean(), nullable=False),
        sa.Column("band", sa.String(length=16), nullable=True),
        sa.Column("band_rank", sa.Float(), nullable=False),
        sa.Column("not_assessed", sa.Boolean(), nullable=False),
        sa.Column("unscored", sa.Boolean(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("logit", sa.Float(), nullable=True),
        sa.Column("order_score", sa.Float(), nullable=False),
        sa.Column("order_logit", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("result_id", sa.Integer(), nullable=True),
        sa.Column("not_assessed_count", sa.Integer(), nullable=False),
        sa.Column("not_assessed_reason", sa.String(length=16), nullable=True),
        sa.Column("not_assessed_detail", sa.Text(), nullable=True),
        sa.Column("not_assessed_result_id", sa.Integer(), nullable=True),
        sa.Column("model_version", sa.String(length=128), nullable=True),
        sa.Column("calibration_version", sa.Integer(), nullable=True),
        sa.Column("listed", sa.Boolean(), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_reason", sa.String(length=32), nullable=True),
        sa.Column("closed_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("study_instance_uid"),
    )
    op.create_index(
        "ix_studies_listed_arrived",
        "studies",
        ["listed", "arrived_at", "band_rank", "unscored", "order_score", "order_logit"],
    )
    op.create_index(
        "ix_studies_listed_order",
        "studies",
        [
            "listed",
            "band_rank",
            "unscored",
            "order_score",
            "order_logit",
            "arrived_at",
        ],
    )
    op.create_index("ix_studies_accession", "studies", ["accession_number"])
    op.create_index("ix_studies_patient_id", "studies", ["patient_id"])
    op.create_index("ix_studies_closed_at", "studies", ["closed_at"])
    op.create_index("ix_studies_last_received", "studies", ["last_received_at"])
    _backfill(op.get_bind())


def _when(value: Any) -> datetime:
    """A stored timestamp as aware UTC (SQLite gives text or naive datetimes)."""
    when: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _backfill(bind: sa.engine.Connection) -> None:
    """One row per study with a scored image, summed up as the daemon does at scoring.

    The bands' order is not in the database; it is taken from the scores themselves
    (bands are score intervals: a band whose lowest score is higher ranks higher).
    """
    rows = bind.execute(
        sa.text(
            "SELECT i.study_instance_uid, i.received_at, i.requested_priority, i.modality, "
            "r.id, r.score, r.logit, r.threshold, r.priority, r.assessable, "
            "r.not_assessable_reason, r.not_assessable_detail, r.model_version, "
            "r.calibration_version "
            "FROM instances i JOIN jobs j ON j.instance_id = i.id "
            "JOIN results r ON r.job_id = j.id WHERE j.state = 'done'"
        )
    ).all()
    lowest: dict[str, float] = {}
    for row in rows:
        if row.priority is not None:
            lowest[row.priority] = min(lowest.get(row.priority, 1.0), row.score)
    names = sorted(lowest, key=lambda name: lowest[name], reverse=True)
    reads = {
        row.study_instance_uid: row
        for row in bind.execute(
            sa.text("SELECT study_instance_uid, read_by, read_at FROM study_reads")
        ).all()
    }
    studies: dict[str, list[Any]] = {}
    for row in rows:
        studies.setdefault(row.study_instance_uid, []).append(row)
    table = sa.table(
        "studies",
        *(
            sa.column(name, sa.DateTime(timezone=True) if name.endswith("_at") else None)
            for name in (
                "study_instance_uid",
                "modality",
                "last_received_at",
                "arrived_at",
                "images",
                "requested_priority",
                "raised_by_sender",
                "band",
                "band_rank",
                "not_assessed",
                "unscored",
                "score",
                "logit",
                "order_score",
                "order_logit",
                "threshold",
                "result_id",
                "not_assessed_count",
                "not_assessed_reason",
                "not_assessed_detail",
                "not_assessed_result_id",
                "model_version",
                "calibration_version",
                "listed",
                "closed_at",
                "closed_reason",
                "closed_by",
            )
        ),
    )
    batch = [_summary(uid, images, names, reads.get(uid)) for uid, images in studies.items()]
    for start in range(0, len(batch), 1000):
        bind.execute(table.insert(), batch[start : start + 1000])


def _summary(uid: str, images: list[Any], names: list[str], read: Any) -> dict[str, Any]:
    assessed = [r for r in images if r.assessable]
    unjudged = sorted(
        (r for r in images if not r.assessable), key=lambda r: (_when(r.received_at), r.id)
    )
    best = max(assessed, key=lambda r: (r.score, r.logit)) if assessed else None
    lead = best if best is not None else unjudged[0]
    first = unjudged[0] if unjudged else None
    ranks = []
    if best is not None:
        ranks.append(float(names.index(best.priority)) if best.priority in names else 0.0)
    if first is not None or best is None:
        ranks.append(NOT_ASSESSED_RANK)
    rank = min(ranks)
    priority = min((r.requested_priority for r in images), key=lambda p: PRIORITY_ORDER.get(p, 1))
    raised = priority == "HIGH" and rank > 0
    unscored = rank == NOT_ASSESSED_RANK or best is None
    received = [_when(r.received_at) for r in images]
    return {
        "study_instance_uid": uid,
        "modality": next((r.modality for r in images if r.modality), None),
        "last_received_at": max(received),
        "arrived_at": min(received),
        "images": len(images),
        "requested_priority": priority,
        "raised_by_sender": raised,
        "band": None if best is None else best.priority,
        "band_rank": 0.0 if raised else rank,
        "not_assessed": rank == NOT_ASSESSED_RANK,
        "unscored": unscored,
        "score": None if best is None else best.score,
        "logit": None if best is None else best.logit,
        "order_score": 0.0 if unscored or best is None else -best.score,
        "order_logit": 0.0 if unscored or best is None else -best.logit,
        "threshold": lead.threshold,
        "result_id": lead.id,
        "not_assessed_count": len(unjudged),
        "not_assessed_reason": None if first is None else first.not_assessable_reason,
        "not_assessed_detail": None if first is None else first.not_assessable_detail,
        "not_assessed_result_id": None if first is None else first.id,
        "model_version": lead.model_version,
        "calibration_version": lead.calibration_version,
        "listed": read is None,
        "closed_at": None if read is None else _when(read.read_at),
        "closed_reason": None if read is None else "read",
        "closed_by": None if read is None else read.read_by,
    }


def downgrade() -> None:
    op.drop_index("ix_studies_last_received", table_name="studies")
    op.drop_index("ix_studies_closed_at", table_name="studies")
    op.drop_index("ix_studies_patient_id", table_name="studies")
    op.drop_index("ix_studies_accession", table_name="studies")
    op.drop_index("ix_studies_listed_order", table_name="studies")
    op.drop_index("ix_studies_listed_arrived", table_name="studies")
    op.drop_table("studies")
