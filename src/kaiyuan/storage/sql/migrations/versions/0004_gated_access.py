"""Gated repositories: how each grants access, and users' requests for their files.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("repos") as batch:
        batch.add_column(sa.Column("gated", sa.String(16), nullable=True))
    op.create_table(
        "access_requests",
        sa.Column(
            "repo_pk",
            sa.Integer,
            sa.ForeignKey("repos.pk", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("user", sa.String(96), primary_key=True),
        sa.Column("request_id", sa.String(32), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("fields", sa.Text, nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(96), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("access_requests")
    with op.batch_alter_table("repos") as batch:
        batch.drop_column("gated")
