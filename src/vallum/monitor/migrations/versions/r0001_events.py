"""The events table.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("time", sa.Float(), nullable=False),
        sa.Column("api", sa.String()),
        sa.Column("route", sa.String()),
        sa.Column("model", sa.String()),
        sa.Column("upstream", sa.String()),
        sa.Column("tenant", sa.String()),
        sa.Column("user_id", sa.String()),
        sa.Column("api_key", sa.String()),
        sa.Column("ip", sa.String()),
        sa.Column("status", sa.Integer()),
        sa.Column("code", sa.String()),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("input_action", sa.String()),
        sa.Column("output_action", sa.String()),
        sa.Column("categories", sa.Text(), nullable=False),
        sa.Column("policy_version", sa.String()),
        sa.Column("shadow", sa.Boolean(), nullable=False),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("tokens", sa.Integer()),
        sa.Column("guard_ms", sa.Float()),
        sa.Column("upstream_ms", sa.Float()),
        sa.Column("total_ms", sa.Float()),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("text", sa.Text()),
        sa.Column("text_mode", sa.String(), nullable=False),
        sa.Column("key_id", sa.String()),
    )
    op.create_index("ix_events_time", "events", ["time"])
    op.create_index("ix_events_tenant_user", "events", ["tenant", "user_id"])
    op.create_index("ix_events_api_key", "events", ["api_key"])
    op.create_index("ix_events_action_time", "events", ["action", "time"])


def downgrade() -> None:
    op.drop_table("events")
