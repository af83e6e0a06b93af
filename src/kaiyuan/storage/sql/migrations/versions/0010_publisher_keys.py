"""Publisher keys: public keys a namespace registered for its own OMS signatures.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "publisher_keys",
        sa.Column("namespace", sa.String(96), primary_key=True),
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("public_pem", sa.Text, nullable=False),
        sa.Column("added_by", sa.String(96), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("publisher_keys")
