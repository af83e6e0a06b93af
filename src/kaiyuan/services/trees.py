"""Reading and building git-style trees. Trees are immutable, so they are cached by sha."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

from kaiyuan.core.digests import GitTreeItem, git_tree_sha1
from kaiyuan.core.errors import InvalidInputError
from kaiyuan.core.models import FileEntry, FolderEntry, TreeEntry
from kaiyuan.core.ports import MetadataSession

EMPTY_TREE = git_tree_sha1([])


class TreeCache:
    """A bounded LRU of tree sha -> entries, shared by every request (entries never change)."""

    def __init__(self, max_trees: int = 4096) -> None:
        self._items: OrderedDict[str, tuple[tuple[TreeEntry, ...], dict[str, TreeEntry]]] = (
            OrderedDict()
        )
        self._max = max_trees
        self._lock = threading.Lock()

    def get(self, session: MetadataSession, sha: str) -> tuple[TreeEntry, ...]:
        """The entries of a tree, sorted by name."""
        return self._load(session, sha)[0]

    def child(self, session: MetadataSession, sha: str, name: str) -> TreeEntry | None:
        return self._load(session, sha)[1].get(name)

    def _load(
        self, session: MetadataSession, sha: str
    ) -> tuple[tuple[TreeEntry, ...], dict[str, TreeEntry]]:
        with self._lock:
            found = self._items.get(sha)
            if found is not None:
                self._items.move_to_end(sha)
                return found
        entries = session.get_tree(sha)
        if entries is None:
            if sha != EMPTY_TREE:
                raise LookupError(f"tree {sha} is missing from the metadata store")
            entries = []
        ordered = tuple(sorted(entries, key=lambda e: e.name))
        value = (ordered, {e.name: e for e in ordered})
        with self._lock:
            self._items[sha] = value
            while len(self._items) > self._max:
                self._items.popitem(last=False)
        return value


def find(session: MetadataSession, cache: TreeCache, root: str, path: str) -> TreeEntry | None:
    """The entry at `path` under tree `root` ('' is the root folder itself)."""
    if path == "":
        return TreeEntry("", is_dir=True, oid=root)
    current = root
    parts = path.split("/")
    for index, part in enumerate(parts):
        match = cache.child(session, current, part)
        if match is None:
            return None
        if index == len(parts) - 1:
            return match
        if not match.is_dir:
            return None
        current = match.oid
    return None


def walk(
    session: MetadataSession, cache: TreeCache, tree: str, prefix: str, recursive: bool
) -> Iterator[FileEntry | FolderEntry]:
    """Entries below a folder in path order; folders before their contents when recursive."""
    for entry in cache.get(session, tree):
        path = f"{prefix}/{entry.name}" if prefix else entry.name
        if entry.is_dir:
            yield FolderEntry(path, entry.oid)
            if recursive:
                yield from walk(session, cache, entry.oid, path, recursive=True)
        else:
            yield as_file(entry, path)


def as_file(entry: TreeEntry, path: str) -> FileEntry:
    assert entry.sha256 is not None  # noqa: S101 - files always carry a content digest
    return FileEntry(path, entry.oid, entry.size, entry.sha256, entry.lfs)


@dataclass(frozen=True, slots=True)
class FileChange:
    """One file's change between two trees: `added`, `deleted` or `modified`."""

    path: str
    change: str
    old: FileEntry | None
    new: FileEntry | None


def diff(
    session: MetadataSession, cache: TreeCache, old_root: str | None, new_root: str
) -> list[FileChange]:
    """The files that differ between two trees, in path order.

    Sub-trees with the same sha are identical and skipped, so a commit touching one file of a
    large repository costs the depth of that file, not the size of the repository.
    """
    changes: list[FileChange] = []
    _diff_folder(session, cache, old_root, new_root, "", changes)
    return changes


def _diff_folder(
    session: MetadataSession,
    cache: TreeCache,
    old: str | None,
    new: str | None,
    prefix: str,
    out: list[FileChange],
) -> None:
    if old == new:
        return
    before = {e.name: e for e in cache.get(session, old)} if old else {}
    after = {e.name: e for e in cache.get(session, new)} if new else {}
    for name in sorted(before.keys() | after.keys()):
        path = f"{prefix}/{name}" if prefix else name
        was, now = before.get(name), after.get(name)
        if was is not None and now is not None and was.oid == now.oid and was.is_dir == now.is_dir:
            continue
        was_file = as_file(was, path) if was is not None and not was.is_dir else None
        now_file = as_file(now, path) if now is not None and not now.is_dir else None
        if was_file and now_file:
            out.append(FileChange(path, "modified", was_file, now_file))
        elif was_file:
            out.append(FileChange(path, "deleted", was_file, None))
        elif now_file:
            out.append(FileChange(path, "added", None, now_file))
        was_dir = was.oid if was is not None and was.is_dir else None
        now_dir = now.oid if now is not None and now.is_dir else None
        if was_dir or now_dir:
            _diff_folder(session, cache, was_dir, now_dir, path, out)


def flatten(session: MetadataSession, cache: TreeCache, root: str) -> dict[str, FileEntry]:
    """Every file of a tree, keyed by path."""
    return {
        e.path: e
        for e in walk(session, cache, root, "", recursive=True)
        if isinstance(e, FileEntry)
    }


@dataclass
class _Folder:
    files: dict[str, FileEntry] = field(default_factory=dict)
    folders: dict[str, _Folder] = field(default_factory=dict)


def build(files: dict[str, FileEntry]) -> tuple[str, dict[str, list[TreeEntry]]]:
    """Tree objects for a set of files: the root sha and every tree (sha -> entries)."""
    root = _Folder()
    for path, entry in files.items():
        folder = root
        parts = path.split("/")
        for part in parts[:-1]:
            if part in folder.files:
                raise InvalidInputError(f"{path!r} needs folder {part!r}, but a file has that name")
            folder = folder.folders.setdefault(part, _Folder())
        if parts[-1] in folder.folders:
            raise InvalidInputError(f"{path!r} is a file, but a folder of that name exists")
        folder.files[parts[-1]] = entry
    out: dict[str, list[TreeEntry]] = {}
    return _hash_folder(root, out), out


def _hash_folder(folder: _Folder, out: dict[str, list[TreeEntry]]) -> str:
    entries = [
        TreeEntry(name, is_dir=False, oid=f.oid, size=f.size, sha256=f.sha256, lfs=f.lfs)
        for name, f in folder.files.items()
    ]
    for name, sub in folder.folders.items():
        entries.append(TreeEntry(name, is_dir=True, oid=_hash_folder(sub, out)))
    sha = git_tree_sha1(GitTreeItem(e.name, e.oid, e.is_dir) for e in entries)
    out[sha] = entries
    return sha
