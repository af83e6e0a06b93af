"""MetadataStore over SQLAlchemy Core; one class for SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from importlib import resources
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError as SqlIntegrityError
from sqlalchemy.exc import OperationalError

from kaiyuan.core.errors import AlreadyExistsError, StorageUnavailableError
from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.models import (
    AccessToken,
    Account,
    BlobInfo,
    Commit,
    Gating,
    Ref,
    RefKind,
    Repo,
    Scope,
    TreeEntry,
)
from kaiyuan.storage.sql import tables as t
from kaiyuan.storage.sql.cobuild_rows import CoBuildRows
from kaiyuan.storage.sql.collection_rows import CollectionRows, ConsistencyRows
from kaiyuan.storage.sql.dialects import (
    WRITE_FLAG,
    as_utc,
    count_up,
    insert_ignoring_duplicates,
    make_engine,
)
from kaiyuan.storage.sql.gating_rows import GatingRows
from kaiyuan.storage.sql.lineage_rows import LineageRows
from kaiyuan.storage.sql.provenance_rows import ProvenanceRows
from kaiyuan.storage.sql.scan_rows import ScanRows
from kaiyuan.storage.sql.sealing_rows import SealingRows
from kaiyuan.storage.sql.xet_rows import UsageRows, XetRows

log = logging.getLogger("kaiyuan.storage")

# An arbitrary application-wide key for PostgreSQL's advisory lock around migrations.
MIGRATION_LOCK = 0x4B6169_7975


class SqlMetadataStore:
    """Metadata in a SQL database. `migrate()` brings the schema to the newest revision."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = make_engine(url)

    def migrate(self) -> bool:
        """Upgrade to this version's newest revision; False when the database is *ahead*.

        A schema from a newer version (during a rolling upgrade, or after a roll-back of the
        code) is left alone: migrations only add within a minor version, so this version still
        works on it.
        """
        config = Config()
        config.set_main_option(
            "script_location", str(resources.files("kaiyuan.storage.sql") / "migrations")
        )
        known = {s.revision for s in ScriptDirectory.from_config(config).walk_revisions()}
        with self._connect() as connection:
            connection.info[WRITE_FLAG] = True
            try:
                if connection.dialect.name == "postgresql":
                    # Several server processes may start at once: one migrates, the others wait
                    # for it and then find the schema current. (SQLite: BEGIN IMMEDIATE does it.)
                    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
                current = MigrationContext.configure(connection).get_current_revision()
                if current is not None and current not in known:
                    log.warning(
                        "database schema %s is newer than this version knows; not migrating",
                        current,
                    )
                    connection.rollback()
                    return False
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
                connection.commit()
                return True
            finally:
                connection.info[WRITE_FLAG] = False

    def schema_revision(self) -> str | None:
        """The migration the database is at (None: an empty database)."""
        with self._connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def _connect(self) -> Connection:
        try:
            return self.engine.connect()
        except OperationalError as exc:
            reason = " ".join(str(exc.orig or exc).split())
            raise StorageUnavailableError(
                f"the metadata database is unavailable: {reason}"
            ) from None

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[SqlSession]:
        with self._connect() as connection:
            connection.info[WRITE_FLAG] = write
            try:
                with connection.begin():
                    yield SqlSession(connection, self.engine)
            except OperationalError as exc:
                # The database went away mid-transaction: nothing was committed; say so clearly.
                reason = " ".join(str(exc.orig or exc).split())
                raise StorageUnavailableError(f"the metadata database failed: {reason}") from None
            finally:
                connection.info[WRITE_FLAG] = False

    def close(self) -> None:
        self.engine.dispose()


class SqlSession(
    XetRows,
    UsageRows,
    CollectionRows,
    ConsistencyRows,
    GatingRows,
    LineageRows,
    ProvenanceRows,
    ScanRows,
    SealingRows,
    CoBuildRows,
):
    def __init__(self, connection: Connection, engine: Engine) -> None:
        self._c = connection
        self._engine = engine

    # --- rate limits ----------------------------------------------------------------------
    def count_request(self, subject: str, window: int) -> int:
        table = t.request_counts
        keys = {"subject": subject, "window": window}
        count = int(self._c.execute(count_up(self._engine, table, keys, "count")).scalar_one())
        if count == 1:  # the first request of a new minute: drop this subject's older ones
            self._c.execute(
                delete(table).where(table.c.subject == subject, table.c.window < window)
            )
        return count

    # --- accounts -------------------------------------------------------------------------
    def add_account(self, account: Account) -> None:
        try:
            with self._c.begin_nested():
                self._c.execute(
                    insert(t.accounts).values(
                        name=account.name, is_org=account.is_org, created_at=account.created_at
                    )
                )
        except SqlIntegrityError:
            raise AlreadyExistsError(f"the name {account.name!r} is taken") from None

    def get_account(self, name: str) -> Account | None:
        row = self._c.execute(select(t.accounts).where(t.accounts.c.name == name)).first()
        return Account(row.name, row.is_org, as_utc(row.created_at)) if row else None

    def add_member(self, org: str, user: str) -> None:
        self._c.execute(
            insert_ignoring_duplicates(self._engine, t.memberships).values(org=org, member=user)
        )

    def orgs_of(self, user: str) -> list[str]:
        query = select(t.memberships.c.org).where(t.memberships.c.member == user)
        return sorted(self._c.execute(query).scalars())

    def is_member(self, org: str, user: str) -> bool:
        query = select(t.memberships.c.org).where(
            and_(t.memberships.c.org == org, t.memberships.c.member == user)
        )
        return self._c.execute(query).first() is not None

    def add_token(self, token: AccessToken) -> None:
        self._c.execute(
            insert(t.tokens).values(
                token_id=token.token_id,
                user_name=token.user,
                scope=token.scope.value,
                secret_sha256=token.secret_sha256,
                display_name=token.display_name,
                created_at=token.created_at,
            )
        )

    def delete_token(self, token_id: str) -> bool:
        result = self._c.execute(delete(t.tokens).where(t.tokens.c.token_id == token_id))
        return bool(result.rowcount)

    def find_token(self, token_id: str) -> AccessToken | None:
        row = self._c.execute(select(t.tokens).where(t.tokens.c.token_id == token_id)).first()
        if row is None:
            return None
        return AccessToken(
            row.token_id,
            row.user_name,
            Scope(row.scope),
            row.secret_sha256,
            row.display_name,
            as_utc(row.created_at),
        )

    # --- repositories ---------------------------------------------------------------------
    def add_repo(self, kind: RepoKind, repo_id: RepoId, private: bool, now: datetime) -> Repo:
        try:
            with self._c.begin_nested():
                result = self._c.execute(
                    insert(t.repos)
                    .values(
                        kind=kind.value,
                        namespace=repo_id.namespace,
                        name=repo_id.name,
                        private=private,
                        default_branch="main",
                        created_at=now,
                        updated_at=now,
                    )
                    .returning(t.repos.c.pk)
                )
                pk = result.scalar_one()
        except SqlIntegrityError:
            raise AlreadyExistsError(f"repository {repo_id} already exists") from None
        return Repo(pk, kind, repo_id, private, now, now)

    def get_repo(self, kind: RepoKind, repo_id: RepoId) -> Repo | None:
        query = select(t.repos).where(
            and_(
                t.repos.c.kind == kind.value,
                t.repos.c.namespace == repo_id.namespace,
                t.repos.c.name == repo_id.name,
            )
        )
        row = self._c.execute(query).first()
        return _repo(row) if row else None

    def _repo_by_pk(self, pk: int) -> Repo | None:
        row = self._c.execute(select(t.repos).where(t.repos.c.pk == pk)).first()
        return _repo(row) if row else None

    def delete_repo(self, repo: Repo) -> None:
        for table in (t.refs, t.commits, t.repo_objects):
            self._c.execute(delete(table).where(table.c.repo_pk == repo.pk))
        self._c.execute(delete(t.repos).where(t.repos.c.pk == repo.pk))

    def touch_repo(self, repo: Repo, now: datetime) -> None:
        self._c.execute(update(t.repos).where(t.repos.c.pk == repo.pk).values(updated_at=now))

    def set_private(self, repo: Repo, private: bool) -> None:
        self._c.execute(update(t.repos).where(t.repos.c.pk == repo.pk).values(private=private))

    def list_repos(
        self,
        kind: RepoKind,
        *,
        visible_to: str | None,
        visible_namespaces: tuple[str, ...],
        search: str | None,
        author: str | None,
        limit: int,
    ) -> list[Repo]:
        del visible_to  # visibility is by namespace membership, passed in resolved form
        query = select(t.repos).where(t.repos.c.kind == kind.value)
        query = query.where(
            or_(t.repos.c.private.is_(False), t.repos.c.namespace.in_(visible_namespaces))
        )
        if author:
            query = query.where(t.repos.c.namespace == author)
        if search:
            pattern = (
                "%"
                + search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                + "%"
            )
            full = func.lower(t.repos.c.namespace + "/" + t.repos.c.name)
            query = query.where(full.like(pattern, escape="\\"))
        query = query.order_by(t.repos.c.updated_at.desc(), t.repos.c.pk.desc()).limit(limit)
        return [_repo(row) for row in self._c.execute(query)]

    # --- refs -----------------------------------------------------------------------------
    def get_ref(self, repo: Repo, kind: RefKind, name: str) -> Ref | None:
        query = select(t.refs.c.target).where(
            and_(t.refs.c.repo_pk == repo.pk, t.refs.c.kind == kind.value, t.refs.c.name == name)
        )
        target = self._c.execute(query).scalar()
        return Ref(kind, name, target) if target else None

    def list_refs(self, repo: Repo) -> list[Ref]:
        query = select(t.refs).where(t.refs.c.repo_pk == repo.pk).order_by(t.refs.c.name)
        return [Ref(RefKind(r.kind), r.name, r.target) for r in self._c.execute(query)]

    def add_ref(self, repo: Repo, ref: Ref) -> None:
        try:
            with self._c.begin_nested():
                self._c.execute(
                    insert(t.refs).values(
                        repo_pk=repo.pk, kind=ref.kind.value, name=ref.name, target=ref.target
                    )
                )
        except SqlIntegrityError:
            raise AlreadyExistsError(f"{ref.kind.value} {ref.name!r} already exists") from None

    def lock_branch(self, repo: Repo, name: str) -> None:
        # PostgreSQL: a row lock other committers wait on (READ COMMITTED would let them race to
        # the compare-and-swap). SQLite: writers already hold the database lock (BEGIN IMMEDIATE).
        self._c.execute(
            select(t.refs.c.target)
            .where(
                t.refs.c.repo_pk == repo.pk,
                t.refs.c.kind == RefKind.BRANCH.value,
                t.refs.c.name == name,
            )
            .with_for_update()
        )

    def move_branch(self, repo: Repo, name: str, old: str, new: str) -> bool:
        result = self._c.execute(
            update(t.refs)
            .where(
                and_(
                    t.refs.c.repo_pk == repo.pk,
                    t.refs.c.kind == RefKind.BRANCH.value,
                    t.refs.c.name == name,
                    t.refs.c.target == old,
                )
            )
            .values(target=new)
        )
        return result.rowcount == 1

    def delete_ref(self, repo: Repo, kind: RefKind, name: str) -> None:
        self._c.execute(
            delete(t.refs).where(
                and_(
                    t.refs.c.repo_pk == repo.pk, t.refs.c.kind == kind.value, t.refs.c.name == name
                )
            )
        )

    # --- commits and trees ----------------------------------------------------------------
    def add_commit(self, repo: Repo, commit: Commit) -> None:
        self._c.execute(
            insert_ignoring_duplicates(self._engine, t.commits).values(
                repo_pk=repo.pk,
                sha=commit.sha,
                tree=commit.tree,
                parents=" ".join(commit.parents),
                title=commit.title,
                message=commit.message,
                author=commit.author,
                created_at=commit.created_at,
            )
        )

    def get_commit(self, repo: Repo, sha: str) -> Commit | None:
        query = select(t.commits).where(
            and_(t.commits.c.repo_pk == repo.pk, t.commits.c.sha == sha)
        )
        row = self._c.execute(query).first()
        return _commit(row) if row else None

    def find_commits(self, repo: Repo, sha_prefix: str, limit: int) -> list[Commit]:
        query = (
            select(t.commits)
            .where(and_(t.commits.c.repo_pk == repo.pk, t.commits.c.sha.startswith(sha_prefix)))
            .limit(limit)
        )
        return [_commit(row) for row in self._c.execute(query)]

    def add_tree(self, sha: str, entries: list[TreeEntry]) -> None:
        exists = self._c.execute(select(t.trees.c.sha).where(t.trees.c.sha == sha)).first()
        if exists:
            return
        self._c.execute(insert_ignoring_duplicates(self._engine, t.trees).values(sha=sha))
        if entries:
            self._c.execute(
                insert_ignoring_duplicates(self._engine, t.tree_entries),
                [
                    {
                        "tree_sha": sha,
                        "name": e.name,
                        "is_dir": e.is_dir,
                        "oid": e.oid,
                        "size": e.size,
                        "sha256": e.sha256,
                        "lfs": e.lfs,
                    }
                    for e in entries
                ],
            )

    def get_tree(self, sha: str) -> list[TreeEntry] | None:
        if self._c.execute(select(t.trees.c.sha).where(t.trees.c.sha == sha)).first() is None:
            return None
        query = select(t.tree_entries).where(t.tree_entries.c.tree_sha == sha)
        return [
            TreeEntry(r.name, r.is_dir, r.oid, r.size, r.sha256, r.lfs)
            for r in self._c.execute(query)
        ]

    # --- blobs ----------------------------------------------------------------------------
    def add_blob(self, blob: BlobInfo, now: datetime) -> None:
        self._c.execute(
            insert_ignoring_duplicates(self._engine, t.blobs).values(
                sha256=blob.sha256, size=blob.size, created_at=now
            )
        )

    def get_blob(self, sha256: str) -> BlobInfo | None:
        row = self._c.execute(select(t.blobs).where(t.blobs.c.sha256 == sha256)).first()
        return BlobInfo(row.sha256, row.size) if row else None

    def add_repo_object(self, repo_pk: int, sha256: str) -> None:
        self._c.execute(
            insert_ignoring_duplicates(self._engine, t.repo_objects).values(
                repo_pk=repo_pk, sha256=sha256
            )
        )

    def has_repo_object(self, repo_pk: int, sha256: str) -> bool:
        query = select(t.repo_objects.c.sha256).where(
            and_(t.repo_objects.c.repo_pk == repo_pk, t.repo_objects.c.sha256 == sha256)
        )
        return self._c.execute(query).first() is not None


def _repo(row: Any) -> Repo:
    return Repo(
        pk=row.pk,
        kind=RepoKind(row.kind),
        repo_id=RepoId(row.namespace, row.name),
        private=row.private,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
        default_branch=row.default_branch,
        gated=Gating(row.gated) if row.gated else None,
    )


def _commit(row: Any) -> Commit:
    return Commit(
        sha=row.sha,
        tree=row.tree,
        parents=tuple(row.parents.split()),
        title=row.title,
        message=row.message,
        author=row.author,
        created_at=as_utc(row.created_at),
    )
