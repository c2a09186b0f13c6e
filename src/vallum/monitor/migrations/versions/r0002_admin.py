"""Versioned policies and admin-made client keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "policy_versions",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("label", sa.String(), nullable=False),
        sa.Column("author", sa.String(), nullable=False),
        sa.Column("time", sa.Float(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", "version"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("sha256", sa.String(), nullable=False, unique=True),
        sa.Column("tenant", sa.String()),
        sa.Column("user_id", sa.String()),
        sa.Column("policy", sa.String(), nullable=False),
        sa.Column("models", sa.Text(), nullable=False),
        sa.Column("limits", sa.Text()),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(), nullable=False),
        sa.Column("revoked", sa.Float()),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_table("policy_versions")
