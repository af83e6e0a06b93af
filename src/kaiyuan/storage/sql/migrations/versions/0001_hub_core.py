"""Hub core: accounts, tokens, repositories, refs, commits, trees, blobs.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("name", sa.String(96), primary_key=True),
        sa.Column("is_org", sa.Boolean, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "memberships",
        sa.Column(
            "org",
            sa.String(96),
            sa.ForeignKey("accounts.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "member",
            sa.String(96),
            sa.ForeignKey("accounts.name", ondelete="CASCADE"),
            primary_key=True,
        ),
    )
    op.create_table(
        "tokens",
        sa.Column("token_id", sa.String(64), primary_key=True),
        sa.Column(
            "user_name",
            sa.String(96),
            sa.ForeignKey("accounts.name", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "repos",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("namespace", sa.String(96), nullable=False),
        sa.Column("name", sa.String(96), nullable=False),
        sa.Column("private", sa.Boolean, nullable=False),
        sa.Column("default_branch", sa.String(256), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.UniqueConstraint("kind", "namespace", "name", name="uq_repos_kind_namespace_name"),
    )
    op.create_table(
        "refs",
        sa.Column(
            "repo_pk", sa.Integer, sa.ForeignKey("repos.pk", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(256), primary_key=True),
        sa.Column("target", sa.String(40), nullable=False),
    )
    op.create_table(
        "commits",
        sa.Column(
            "repo_pk", sa.Integer, sa.ForeignKey("repos.pk", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("sha", sa.String(40), primary_key=True),
        sa.Column("tree", sa.String(40), nullable=False),
        sa.Column("parents", sa.String(200), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("author", sa.String(96), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table("trees", sa.Column("sha", sa.String(40), primary_key=True))
    op.create_table(
        "tree_entries",
        sa.Column(
            "tree_sha",
            sa.String(40),
            sa.ForeignKey("trees.sha", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("name", sa.String(1024), primary_key=True),
        sa.Column("is_dir", sa.Boolean, nullable=False),
        sa.Column("oid", sa.String(40), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("lfs", sa.Boolean, nullable=False),
    )
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "repo_objects",
        sa.Column(
            "repo_pk", sa.Integer, sa.ForeignKey("repos.pk", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("sha256", sa.String(64), primary_key=True),
    )
    op.create_index("ix_repos_updated_at", "repos", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_repos_updated_at", "repos")
    for table in (
        "repo_objects",
        "blobs",
        "tree_entries",
        "trees",
        "commits",
        "refs",
        "repos",
        "tokens",
        "memberships",
        "accounts",
    ):
        op.drop_table(table)
