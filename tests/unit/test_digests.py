"""Our object ids must equal what git itself computes for the same content."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kaiyuan.core.digests import (
    GitSignature,
    GitTreeItem,
    git_blob_sha1,
    git_commit_sha1,
    git_tree_sha1,
    lfs_pointer,
    lfs_pointer_sha1,
    sha256_hex,
)

pytestmark = pytest.mark.skipif(
    subprocess.run(["git", "--version"], capture_output=True).returncode != 0, reason="git missing"
)


def git(
    cwd: Path, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> str:
    result = subprocess.run(
        ["git", *args], cwd=cwd, input=stdin, capture_output=True, check=True, env=env
    )
    return result.stdout.decode().strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q")
    return tmp_path


@pytest.mark.parametrize("content", [b"", b"hello", b"\x00\xff" * 1000, "中文".encode()])
def test_blob_sha1_matches_git(repo: Path, content: bytes) -> None:
    assert git_blob_sha1(content) == git(repo, "hash-object", "--stdin", stdin=content)


def test_lfs_pointer_sha1_is_the_pointer_blob(repo: Path) -> None:
    digest = sha256_hex(b"weights")
    pointer = lfs_pointer(digest, 7)
    assert pointer.startswith(b"version https://git-lfs.github.com/spec/v1\noid sha256:")
    assert lfs_pointer_sha1(digest, 7) == git(repo, "hash-object", "--stdin", stdin=pointer)


def test_tree_and_commit_sha1_match_git(repo: Path) -> None:
    blob_a = git(repo, "hash-object", "-w", "--stdin", stdin=b"a")
    blob_b = git(repo, "hash-object", "-w", "--stdin", stdin=b"b")
    # 'sub' (a folder) sorts after 'sub.txt' in git order, which compares it as 'sub/'.
    inner = git(repo, "mktree", stdin=f"100644 blob {blob_b}\tx.txt\n".encode())
    listing = f"100644 blob {blob_a}\tsub.txt\n040000 tree {inner}\tsub\n100644 blob {blob_b}\tA\n"
    root = git(repo, "mktree", stdin=listing.encode())
    ours_inner = git_tree_sha1([GitTreeItem("x.txt", blob_b, is_dir=False)])
    ours_root = git_tree_sha1(
        [
            GitTreeItem("sub", ours_inner, is_dir=True),
            GitTreeItem("sub.txt", blob_a, is_dir=False),
            GitTreeItem("A", blob_b, is_dir=False),
        ]
    )
    assert (ours_inner, ours_root) == (inner, root)
    env = {
        "GIT_AUTHOR_NAME": "alice",
        "GIT_AUTHOR_EMAIL": "alice@example.org",
        "GIT_AUTHOR_DATE": "1700000000 +0000",
        "GIT_COMMITTER_NAME": "alice",
        "GIT_COMMITTER_EMAIL": "alice@example.org",
        "GIT_COMMITTER_DATE": "1700000000 +0000",
        "PATH": "/usr/bin:/bin",
    }
    first = git(repo, "commit-tree", root, "-m", "first", env=env)
    second = git(repo, "commit-tree", root, "-p", first, "-m", "second\n\nbody text", env=env)
    who = GitSignature("alice", "alice@example.org", 1_700_000_000)
    assert git_commit_sha1(root, [], who, "first") == first
    assert git_commit_sha1(root, [first], who, "second\n\nbody text") == second


def test_empty_tree() -> None:
    assert git_tree_sha1([]) == "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
