"""Reading a repository at a revision: resolve, list, look up files, history, file bytes."""

from __future__ import annotations

import dataclasses

from kaiyuan.core.errors import EntryNotFoundError, InvalidInputError
from kaiyuan.core.ids import RepoId, RepoKind, normalize_folder, validate_path
from kaiyuan.core.models import Commit, Entry, FileEntry, FolderEntry, Principal, ResolvedRevision
from kaiyuan.core.ports import MetadataSession, MetadataStore
from kaiyuan.services import access, revisions, trees
from kaiyuan.services.contents import ContentStore

MAX_PATHS_PER_QUERY = 1000
MAX_HISTORY_PAGE = 1000


class ReadService:
    def __init__(
        self, store: MetadataStore, contents: ContentStore, cache: trees.TreeCache
    ) -> None:
        self._store = store
        self._contents = contents
        self._cache = cache

    def resolve(
        self,
        principal: Principal,
        kind: RepoKind,
        repo_id: RepoId,
        revision: str | None,
        *,
        files: bool = False,
    ) -> ResolvedRevision:
        """The commit a revision names, for a caller allowed to see the repository.

        `files=True`: the caller wants file contents, which a gated repository keeps for those
        it granted access.
        """
        with self._store.session() as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            if files:
                access.require_files(session, principal, repo)
            name = revision or repo.default_branch
            return ResolvedRevision(repo, name, revisions.resolve(session, repo, name))

    def downloadable(
        self, principal: Principal, kind: RepoKind, repo_id: RepoId, revision: str, path: str
    ) -> tuple[ResolvedRevision, FileEntry]:
        """A file to download, for a caller allowed to read it.

        A gated repository keeps its files for those it granted access, except sealed files:
        they are ciphertext, served to anyone who may see the repository (so caches and
        mirrors work); their keys are what the gate keeps.
        """
        at = self.resolve(principal, kind, repo_id, revision)
        if not path:
            raise EntryNotFoundError("no file path given", at.commit.sha)
        with self._store.session() as session:
            entry = trees.find(session, self._cache, at.commit.tree, path)
            sealed = (
                entry is not None
                and not entry.is_dir
                and entry.sha256 is not None
                and bool(session.sealed_files([entry.sha256], at.repo))
            )
            if not sealed:
                access.require_files(session, principal, at.repo)
        return at, self.file(at, path)

    def list_tree(self, at: ResolvedRevision, folder: str, *, recursive: bool) -> list[Entry]:
        """Entries below `folder` ('' = root), in path order; EntryNotFound if it is no folder."""
        folder = normalize_folder(folder)
        with self._store.session() as session:
            found = trees.find(session, self._cache, at.commit.tree, folder)
            if found is None or not found.is_dir:
                raise EntryNotFoundError(
                    f"folder {folder!r} not found at {at.commit.sha[:12]}", at.commit.sha
                )
            entries = list(trees.walk(session, self._cache, found.oid, folder, recursive=recursive))
            return _with_xet_hashes(session, entries)

    def paths_info(self, at: ResolvedRevision, paths: list[str]) -> list[Entry]:
        """The entries for these paths; paths that do not exist are left out."""
        if len(paths) > MAX_PATHS_PER_QUERY:
            raise InvalidInputError(f"at most {MAX_PATHS_PER_QUERY} paths per request")
        result: list[Entry] = []
        seen: set[str] = set()
        with self._store.session() as session:
            for raw in paths:
                path = normalize_folder(raw)
                if path in seen or path == "":
                    continue
                seen.add(path)
                entry = trees.find(session, self._cache, at.commit.tree, path)
                if entry is None:
                    continue
                if entry.is_dir:
                    result.append(FolderEntry(path, entry.oid))
                else:
                    result.append(trees.as_file(entry, path))
            return _with_xet_hashes(session, result)

    def file(self, at: ResolvedRevision, path: str) -> FileEntry:
        """The file at `path`; EntryNotFound (carrying the commit) when absent or a folder."""
        validate_path(path)
        with self._store.session() as session:
            entry = trees.find(session, self._cache, at.commit.tree, path)
            if entry is None or entry.is_dir:
                raise EntryNotFoundError(
                    f"{path!r} not found at revision {at.commit.sha}", at.commit.sha
                )
            found = _with_xet_hashes(session, [trees.as_file(entry, path)])[0]
        assert isinstance(found, FileEntry)  # noqa: S101 - as_file gives a file
        return found

    def history(
        self, at: ResolvedRevision, *, offset: int, limit: int
    ) -> tuple[list[Commit], bool]:
        """First-parent history from the resolved commit, newest first; and whether more follow."""
        limit = max(1, min(limit, MAX_HISTORY_PAGE))
        result: list[Commit] = []
        current: Commit | None = at.commit
        index = 0
        with self._store.session() as session:
            while current is not None and len(result) <= limit:
                if index >= offset:
                    result.append(current)
                index += 1
                parent = current.parents[0] if current.parents else None
                current = session.get_commit(at.repo, parent) if parent else None
        return result[:limit], len(result) > limit

    def changes(self, at: ResolvedRevision) -> list[trees.FileChange]:
        """The files the resolved commit changed against its first parent (all, for a root)."""
        parent = at.commit.parents[0] if at.commit.parents else None
        with self._store.session() as session:
            old = session.get_commit(at.repo, parent) if parent else None
            return trees.diff(session, self._cache, old.tree if old else None, at.commit.tree)

    def head(self, entry: FileEntry, limit: int) -> bytes:
        """The first `limit` bytes of a file (all of it when smaller), read as a stream."""
        return b"".join(self._contents.open(entry.sha256, 0, min(limit, entry.size)))

    def read_small(self, entry: FileEntry, limit: int) -> bytes:
        """A whole file that is known to be small (a model card), refused above `limit`."""
        if entry.size > limit:
            raise InvalidInputError(f"{entry.path!r} is larger than {limit} bytes")
        return b"".join(self._contents.open(entry.sha256))


def _with_xet_hashes(session: MetadataSession, entries: list[Entry]) -> list[Entry]:
    """LFS files whose content is stored as Xet chunks, marked with their Xet file id."""
    lfs = [e.sha256 for e in entries if isinstance(e, FileEntry) and e.lfs]
    if not lfs:
        return entries
    known = session.xet_hashes(lfs)
    return [
        dataclasses.replace(e, xet_hash=known[e.sha256])
        if isinstance(e, FileEntry) and e.lfs and e.sha256 in known
        else e
        for e in entries
    ]
