"""Signed revisions: OMS signature bundles per revision and signer.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "revision_signatures",
        sa.Column(
            "repo_pk",
            sa.Integer,
            sa.ForeignKey("repos.pk", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("commit", sa.String(40), primary_key=True),
        sa.Column("signer", sa.String(16), primary_key=True),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("bundle", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("revision_signatures")
