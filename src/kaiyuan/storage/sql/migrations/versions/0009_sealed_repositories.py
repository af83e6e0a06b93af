"""Sealed repositories: policies, sealed files and their wrapped keys, key releases.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_tree_entries_sha256", "tree_entries", ["sha256"])
    op.create_table(
        "sealing_policies",
        sa.Column(
            "repo_pk",
            sa.Integer,
            sa.ForeignKey("repos.pk", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("patterns", sa.Text, nullable=False),
        sa.Column("attestation", sa.String(16), nullable=False),
        sa.Column("allowed", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(96), nullable=False),
    )
    op.create_table(
        "sealed_files",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column(
            "repo_pk", sa.Integer, sa.ForeignKey("repos.pk", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("file_id", sa.String(32), nullable=False, unique=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("plaintext_sha256", sa.String(64), nullable=False),
        sa.Column("plaintext_size", sa.BigInteger, nullable=False),
        sa.Column("kek_id", sa.String(64), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary, nullable=False),
        sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_sealed_files_kek", "sealed_files", ["kek_id"])
    op.create_index("ix_sealed_files_repo", "sealed_files", ["repo_pk"])
    op.create_table(
        "key_releases",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "repo_pk", sa.Integer, sa.ForeignKey("repos.pk", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user", sa.String(96), nullable=False),
        sa.Column("token_id", sa.String(64), nullable=False),
        sa.Column("revision", sa.String(255), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("paths", sa.Text, nullable=False),
        sa.Column("file_ids", sa.Text, nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
    )
    op.create_index("ix_key_releases_repo", "key_releases", ["repo_pk", "pk"])
    op.create_table(
        "sealing_challenges",
        sa.Column("nonce", sa.String(64), primary_key=True),
        sa.Column(
            "repo_pk", sa.Integer, sa.ForeignKey("repos.pk", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("user", sa.String(96), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "sealing_revocations",
        sa.Column(
            "repo_pk",
            sa.Integer,
            sa.ForeignKey("repos.pk", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("subject", sa.String(96), primary_key=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_by", sa.String(96), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sealing_revocations")
    op.drop_table("sealing_challenges")
    op.drop_index("ix_key_releases_repo", "key_releases")
    op.drop_table("key_releases")
    op.drop_index("ix_sealed_files_repo", "sealed_files")
    op.drop_index("ix_sealed_files_kek", "sealed_files")
    op.drop_table("sealed_files")
    op.drop_table("sealing_policies")
    op.drop_index("ix_tree_entries_sha256", "tree_entries")
