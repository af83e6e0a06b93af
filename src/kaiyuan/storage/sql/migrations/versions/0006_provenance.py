"""Provenance: fingerprints per revision (also the work queue), tensor digests, matches.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fingerprints",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "repo_pk", sa.Integer, sa.ForeignKey("repos.pk", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("commit", sa.String(40), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("sketch", sa.LargeBinary, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("repo_pk", "commit", name="uq_fingerprints_revision"),
    )
    op.create_index("ix_fingerprints_queue", "fingerprints", ["status", "queued_at"])
    op.create_table(
        "tensor_digests",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "fingerprint_pk",
            sa.Integer,
            sa.ForeignKey("fingerprints.pk", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("dtype", sa.String(16), nullable=False),
        sa.Column("shape", sa.String(200), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
    )
    op.create_index("ix_tensor_digests_digest", "tensor_digests", ["digest"])
    op.create_index("ix_tensor_digests_fingerprint", "tensor_digests", ["fingerprint_pk"])
    op.create_table(
        "provenance_matches",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "fingerprint_pk",
            sa.Integer,
            sa.ForeignKey("fingerprints.pk", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "candidate_repo_pk",
            sa.Integer,
            sa.ForeignKey("repos.pk", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("candidate_commit", sa.String(40), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("null_level", sa.Float, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("relation", sa.String(24), nullable=False),
        sa.Column("shortlist_score", sa.Float, nullable=False),
        sa.Column("shared_tensors", sa.Integer, nullable=False),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_provenance_matches_fingerprint", "provenance_matches", ["fingerprint_pk"])


def downgrade() -> None:
    op.drop_table("provenance_matches")
    op.drop_table("tensor_digests")
    op.drop_table("fingerprints")
