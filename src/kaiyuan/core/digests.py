"""Git-compatible object ids (blob, tree and commit sha1) and the LFS pointer file."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

LFS_SPEC = "https://git-lfs.github.com/spec/v1"
FILE_MODE = "100644"
DIR_MODE = "40000"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a regular file's content: sha1 of `blob <size>`, NUL, content."""
    digest = hashlib.sha1(f"blob {len(data)}\0".encode(), usedforsecurity=False)
    digest.update(data)
    return digest.hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The pointer file git stores in place of an LFS object."""
    return f"version {LFS_SPEC}\noid sha256:{sha256}\nsize {size}\n".encode()


def lfs_pointer_sha1(sha256: str, size: int) -> str:
    """The git object id of an LFS file, i.e. of its pointer (what `oid` means in a tree)."""
    return git_blob_sha1(lfs_pointer(sha256, size))


@dataclass(frozen=True, slots=True)
class GitTreeItem:
    """One line of a git tree object: a file (mode 100644) or a folder (mode 40000)."""

    name: str
    oid: str
    is_dir: bool


def _git_sort_key(item: GitTreeItem) -> bytes:
    # git orders tree entries by name bytes, comparing a folder as if it ended with '/'.
    name = item.name.encode()
    return name + b"/" if item.is_dir else name


def git_tree_sha1(items: Iterable[GitTreeItem]) -> str:
    """The git object id of a tree with these items (order does not matter; git's is applied)."""
    body = bytearray()
    for item in sorted(items, key=_git_sort_key):
        mode = DIR_MODE if item.is_dir else FILE_MODE
        body += f"{mode} {item.name}\0".encode() + bytes.fromhex(item.oid)
    header = f"tree {len(body)}\0".encode()
    return hashlib.sha1(header + bytes(body), usedforsecurity=False).hexdigest()


@dataclass(frozen=True, slots=True)
class GitSignature:
    name: str
    email: str
    timestamp: int  # seconds since the epoch, UTC


def git_commit_sha1(tree: str, parents: Iterable[str], author: GitSignature, message: str) -> str:
    """The git object id of a commit (author and committer are the same person here)."""
    lines = [f"tree {tree}"]
    lines += [f"parent {p}" for p in parents]
    who = f"{_clean(author.name)} <{_clean(author.email)}> {author.timestamp} +0000"
    lines += [f"author {who}", f"committer {who}"]
    body = ("\n".join(lines) + "\n\n" + message.rstrip("\n") + "\n").encode()
    header = f"commit {len(body)}\0".encode()
    return hashlib.sha1(header + body, usedforsecurity=False).hexdigest()


def _clean(value: str) -> str:
    # '<', '>' and newlines would break the signature line.
    return "".join(c for c in value if c not in "<>\n\r\0")


def xet_hex(raw: bytes) -> str:
    """The wire form of a 32-byte Xet hash: each 8-byte little-endian word printed as hex."""
    return b"".join(raw[i : i + 8][::-1] for i in range(0, 32, 8)).hex()


def xet_raw(text: str) -> bytes:
    """The 32 raw bytes of a Xet hash from its wire form (the caller validated the text)."""
    value = bytes.fromhex(text)
    return b"".join(value[i : i + 8][::-1] for i in range(0, 32, 8))
