"""Xet storage: xorbs, the chunk index, and Xet-stored content on blobs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("blobs") as batch:
        batch.add_column(sa.Column("xet_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("terms", sa.LargeBinary, nullable=True))
        batch.create_index("ix_blobs_xet_hash", ["xet_hash"])
    op.create_table(
        "xorbs",
        sa.Column("xorb_hash", sa.String(64), primary_key=True),
        sa.Column("pack_sha256", sa.String(64), nullable=True),
        sa.Column("pack_bytes", sa.BigInteger, nullable=False),
        sa.Column("chunk_count", sa.Integer, nullable=False),
        sa.Column("raw_bytes", sa.BigInteger, nullable=False),
        sa.Column("chunks", sa.LargeBinary, nullable=False),
        sa.Column("spans", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_xorbs_pack_sha256", "xorbs", ["pack_sha256"])
    # Storage accounting and garbage collection read what a repository holds from
    # repo_objects; record every file of every commit there (0001 left out each repository's
    # first `.gitattributes`).
    op.execute(
        """
        WITH RECURSIVE walk(repo_pk, tree_sha) AS (
            SELECT repo_pk, tree FROM commits
            UNION
            SELECT w.repo_pk, e.oid FROM walk w
            JOIN tree_entries e ON e.tree_sha = w.tree_sha WHERE e.is_dir
        )
        INSERT INTO repo_objects (repo_pk, sha256)
        SELECT DISTINCT w.repo_pk, e.sha256 FROM walk w
        JOIN tree_entries e ON e.tree_sha = w.tree_sha
        WHERE NOT e.is_dir AND e.sha256 IS NOT NULL
        ON CONFLICT DO NOTHING
        """
    )
    op.create_table(
        "xet_file_xorbs",
        sa.Column("xorb_hash", sa.String(64), primary_key=True),
        sa.Column("sha256", sa.String(64), primary_key=True),
    )
    op.create_table(
        "xorb_chunks",
        sa.Column("chunk_hash", sa.LargeBinary(32), primary_key=True),
        sa.Column("xorb_hash", sa.String(64), nullable=False),
        sa.Column("chunk_index", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("xorb_chunks")
    op.drop_table("xet_file_xorbs")
    op.drop_table("xorbs")
    with op.batch_alter_table("blobs") as batch:
        batch.drop_index("ix_blobs_xet_hash")
        batch.drop_column("terms")
        batch.drop_column("xet_hash")
