"""Behaviour-risk snapshots per identity over time, for the dashboard's identity history.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "risk_snapshots",
        sa.Column("identity", sa.String(), nullable=False),
        sa.Column("time", sa.Float(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("level", sa.String(), nullable=False),
        sa.Column("features", sa.Text(), nullable=False),
        sa.Column("contributions", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("identity", "time"),
    )
    op.create_index("ix_risk_snapshots_time", "risk_snapshots", ["time"])


def downgrade() -> None:
    op.drop_index("ix_risk_snapshots_time", table_name="risk_snapshots")
    op.drop_table("risk_snapshots")
