"""Co-built datasets (policies, contributions) and the background job queue.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _repo() -> sa.ForeignKey:
    return sa.ForeignKey("repos.pk", ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "cobuild_policies",
        sa.Column("repo_pk", sa.Integer, _repo(), primary_key=True),
        sa.Column("organisations", sa.Text, nullable=False),
        sa.Column("licences", sa.Text, nullable=False),
        sa.Column("updated_by", sa.String(96), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "contributions",
        sa.Column("repo_pk", sa.Integer, _repo(), primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("organisation", sa.String(96), nullable=False),
        sa.Column("contributor", sa.String(96), nullable=False),
        sa.Column("licence", sa.String(64), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("branch", sa.String(255), nullable=False),
        sa.Column("commit", sa.String(40), nullable=False),
        sa.Column("files", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reviewed_by", sa.String(96), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True)),
        sa.Column("review_note", sa.Text, nullable=False),
        sa.Column("merged_commit", sa.String(40), nullable=False),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("repo_pk", sa.Integer, _repo(), nullable=False),
        sa.Column("revision", sa.String(40), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress", sa.Float, nullable=False),
        sa.Column("stage", sa.String(200), nullable=False),
        sa.Column("created_by", sa.String(96), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("result", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("log", sa.Text, nullable=False),
    )
    op.create_index("ix_jobs_status_created", "jobs", ["status", "created_at"])
    op.create_index("ix_jobs_repo_kind", "jobs", ["repo_pk", "kind"])


def downgrade() -> None:
    op.drop_index("ix_jobs_repo_kind", "jobs")
    op.drop_index("ix_jobs_status_created", "jobs")
    op.drop_table("jobs")
    op.drop_table("contributions")
    op.drop_table("cobuild_policies")
