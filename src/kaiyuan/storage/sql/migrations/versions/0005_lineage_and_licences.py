"""Lineage edges, licence reports per revision, licence policies, licence acceptances.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lineage_edges",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "child_repo_pk",
            sa.Integer,
            sa.ForeignKey("repos.pk", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("child_commit", sa.String(40), nullable=False),
        sa.Column("parent", sa.String(200), nullable=False),
        sa.Column("parent_kind", sa.String(16), nullable=False),
        sa.Column(
            "parent_repo_pk",
            sa.Integer,
            sa.ForeignKey("repos.pk", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("parent_commit", sa.String(40), nullable=True),
        sa.Column("relation", sa.String(32), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_lineage_child", "lineage_edges", ["child_repo_pk", "child_commit"])
    op.create_index("ix_lineage_parent", "lineage_edges", ["parent_repo_pk"])
    op.create_table(
        "licence_reports",
        sa.Column(
            "repo_pk",
            sa.Integer,
            sa.ForeignKey("repos.pk", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("commit", sa.String(40), primary_key=True),
        sa.Column("licence", sa.String(200), nullable=True),
        sa.Column("facts", sa.Text, nullable=False),
        sa.Column("findings", sa.Text, nullable=False),
        sa.Column("catalog_version", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "licence_policies",
        sa.Column("scope", sa.String(96), primary_key=True),
        sa.Column("check_id", sa.String(16), primary_key=True),
        sa.Column("action", sa.String(16), nullable=False),
    )
    op.create_table(
        "licence_acceptances",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "repo_pk",
            sa.Integer,
            sa.ForeignKey("repos.pk", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("user", sa.String(96), nullable=False),
        sa.Column("licence", sa.String(200), nullable=True),
        sa.Column("licence_version", sa.String(64), nullable=True),
        sa.Column("commit", sa.String(40), nullable=False),
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_acceptances_repo", "licence_acceptances", ["repo_pk", "accepted_at"])


def downgrade() -> None:
    op.drop_table("licence_acceptances")
    op.drop_table("licence_policies")
    op.drop_table("licence_reports")
    op.drop_table("lineage_edges")
