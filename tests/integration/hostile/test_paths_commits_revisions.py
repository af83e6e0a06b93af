"""Hostile paths, malformed commits, stale parents and unknown revisions.

Each refusal must be a clear 4xx and leave the hub exactly as it was (see tests/support/hostile.py).
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote

import httpx
import pytest

from tests.support.hostile import (
    DEEP_JSON,
    HUGE_INT,
    LFS_CONTENT,
    Target,
    assert_log_clean,
    auth,
    b64,
    commit,
    describe,
    header,
    ndjson,
    put_file,
    put_lfs,
    raw,
    refused,
    sha256,
    snapshot,
    unchanged,
)
from tests.support.hubs import ServerInfo

pytestmark = pytest.mark.slow  # hundreds of cases against live servers

# --- hostile paths --------------------------------------------------------------------------
HOSTILE_PATHS = {
    "dotdot": "../x",
    "dotdot-deep": "a/../../b",
    "dotdot-only": "..",
    "dot": "./a",
    "absolute": "/etc/passwd",
    "nul": "a\x00b",
    "control": "a\nb",
    "backslash": "..\\..\\x",
    "backslash-inner": "a\\b",
    "drive": "C:/x",
    "git-config": ".git/config",
    # git refuses a `.git` component anywhere and in any case (fsck `hasDotgit`); on a
    # case-insensitive disk a downloaded `.GIT/config` lands in the user's own .git folder.
    "git-upper": ".GIT/config",
    "git-nested": "sub/.git/config",
    "empty": "",
    "double-slash": "a//b",
    "too-long": "a" * 1025,
}


@pytest.mark.parametrize("op", ["file", "lfsFile", "deletedFile", "deletedFolder"])
@pytest.mark.parametrize("path", HOSTILE_PATHS.values(), ids=HOSTILE_PATHS.keys())
def test_commit_refuses_hostile_path(server: ServerInfo, repo: Target, op: str, path: str) -> None:
    """No commit operation accepts a path that escapes, is absolute, empty, or names .git."""
    operation = {
        "file": put_file(path),
        "lfsFile": put_lfs(path, repo.lfs_oid, repo.lfs_size),
        "deletedFile": {"key": "deletedFile", "value": {"path": path}},
        "deletedFolder": {"key": "deletedFolder", "value": {"path": path}},
    }[op]
    with unchanged(server, repo.repo_id):
        refused(commit(server, repo.repo_id, ndjson(header(), operation)), 400)


@pytest.mark.parametrize("path", HOSTILE_PATHS.values(), ids=HOSTILE_PATHS.keys())
def test_preupload_refuses_hostile_path(server: ServerInfo, repo: Target, path: str) -> None:
    """Preupload refuses the same paths a commit would refuse."""
    body = {"files": [{"path": path, "sample": b64(b"x"), "size": 1}]}
    with unchanged(server, repo.repo_id):
        response = httpx.post(
            f"{server.url}/api/models/{repo.repo_id}/preupload/main",
            json=body,
            headers=auth(server.alice),
        )
        refused(response, 400)


RESOLVE_TARGETS = {
    "encoded-dotdot": "..%2F..%2Fetc%2Fpasswd",
    "literal-dotdot": "../../etc/passwd",
    "dotdot-then-file": "docs/../../config.json",
    "encoded-absolute": "%2Fetc%2Fpasswd",
    "double-slash-absolute": "/etc/passwd",
    "nul": "config.json%00.txt",
    "backslash": "..%5C..%5Cetc%5Cpasswd",
    "git-config": ".git/config",
    "invalid-utf8": "%FF%FE",
    "too-long": "a" * 2000,
}


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("target", RESOLVE_TARGETS.values(), ids=RESOLVE_TARGETS.keys())
def test_resolve_refuses_hostile_path(
    server: ServerInfo, repo: Target, target: str, method: str
) -> None:
    """A resolve URL never reaches outside the repository: 400, or 404 EntryNotFound."""
    response = raw(
        server, method, f"/{repo.repo_id}/resolve/main/{target}", headers=auth(server.alice)
    )
    refused(response, {400: None, 404: "EntryNotFound"})
    assert b"root:" not in response.content
    if response.status_code == 404:
        assert response.headers.get("x-repo-commit") == snapshot(server, repo.repo_id).sha


def test_resolve_empty_path_is_entry_not_found(server: ServerInfo, repo: Target) -> None:
    """`resolve/main/` names no file: 404 EntryNotFound with the commit."""
    response = httpx.get(f"{server.url}/{repo.repo_id}/resolve/main/", headers=auth(server.alice))
    refused(response, {404: "EntryNotFound"})
    assert response.headers.get("x-repo-commit") == snapshot(server, repo.repo_id).sha


TREE_TARGETS = {
    "encoded-dotdot": quote("../..", safe=""),
    "literal-dotdot": "../../etc",
    "encoded-deep": quote("docs/../../x", safe=""),
    "nul": "docs%00",
    "backslash": quote("..\\..", safe=""),
    "git": quote(".git/config", safe=""),
    "invalid-utf8": "%C3%28",
    "too-long": "a" * 2000,
}


@pytest.mark.parametrize("target", TREE_TARGETS.values(), ids=TREE_TARGETS.keys())
def test_tree_refuses_hostile_path(server: ServerInfo, repo: Target, target: str) -> None:
    """Tree listings refuse escaping paths: 400, or 404 EntryNotFound, never another folder."""
    response = raw(
        server, "GET", f"/api/models/{repo.repo_id}/tree/main/{target}", headers=auth(server.alice)
    )
    refused(response, {400: None, 404: "EntryNotFound"})


@pytest.mark.parametrize("path", ["../config.json", "/etc/passwd", "a\x00b", ".git/config"])
def test_paths_info_hostile_path_reveals_nothing(
    server: ServerInfo, repo: Target, path: str
) -> None:
    """Paths-info answers 400 or an empty list for a hostile path, never an entry."""
    response = httpx.post(
        f"{server.url}/api/models/{repo.repo_id}/paths-info/main",
        data={"paths": [path], "expand": "false"},
        headers=auth(server.alice),
    )
    if response.status_code == 200:
        assert response.json() == [], describe(response)
    else:
        refused(response, 400)


# --- malformed NDJSON commits ---------------------------------------------------------------
def _malformed_bodies() -> dict[str, bytes]:
    ok = json.dumps(put_file("ok.txt")).encode()
    head = json.dumps(header()).encode()
    return {
        "not-json": b"{not json\n",
        "array-line": head + b"\n[1, 2, 3]\n",
        "array-first": b'[{"key": "header"}]\n',
        "scalar-line": head + b"\n42\n",
        "missing-header": ok + b"\n",
        "header-not-first": ok + b"\n" + head + b"\n",
        "two-headers": head + b"\n" + head + b"\n" + ok + b"\n",
        "unknown-op": ndjson(header(), {"key": "symlink", "value": {"path": "a", "target": "/"}}),
        "missing-key": ndjson(header(), {"value": {"path": "a"}}),
        "key-not-string": ndjson(header(), {"key": 1, "value": {"path": "a"}}),
        "bad-base64": ndjson(
            header(), {"key": "file", "value": {"path": "a", "content": "!!not base64!!"}}
        ),
        "bad-encoding": ndjson(
            header(), {"key": "file", "value": {"path": "a", "content": "eA==", "encoding": "hex"}}
        ),
        "content-not-string": ndjson(
            header(), {"key": "file", "value": {"path": "a", "content": 7}}
        ),
        "path-int": ndjson(header(), put_file(5)),
        "path-list": ndjson(header(), put_file(["a"])),
        "path-null": ndjson(header(), put_file(None)),
        "path-object": ndjson(header(), put_file({"a": 1})),
        "value-string": ndjson(header(), {"key": "file", "value": "a"}),
        "value-list": ndjson(header(), {"key": "file", "value": [{"path": "a"}]}),
        "value-missing": ndjson(header(), {"key": "deletedFile"}),
        "header-value-list": ndjson({"key": "header", "value": []}),
        "summary-missing": ndjson({"key": "header", "value": {}}, put_file("a")),
        "summary-empty": ndjson({"key": "header", "value": {"summary": "  "}}, put_file("a")),
        "summary-int": ndjson({"key": "header", "value": {"summary": 1}}, put_file("a")),
        "summary-too-long": ndjson(header(summary="s" * 5000), put_file("a")),
        "empty-body": b"",
        "blank-lines": b"\n\n  \n",
        "invalid-utf8": b'{"key": "header", "value": {"summary": "\xff\xfe"}}\n' + ok + b"\n",
        "invalid-utf8-path": head + b'\n{"key": "file", "value": {"path": "\xc3\x28", '
        b'"content": "eA=="}}\n',
        "nan-size": head
        + b'\n{"key": "lfsFile", "value": {"path": "a", "oid": "'
        + sha256(b"a").encode()
        + b'", "size": NaN}}\n',
        "huge-int": head
        + b'\n{"key": "lfsFile", "value": {"path": "a", "oid": "'
        + sha256(b"a").encode()
        + b'", "size": '
        + HUGE_INT.encode()
        + b"}}\n",
        "deeply-nested": head + b"\n" + DEEP_JSON.encode() + b"\n",
        "file-under-file": ndjson(header(), put_file("config.json/inner.txt")),
        "valid-then-bad": ndjson(header(), put_file("ok.txt"), put_file("../escape")),
    }


MALFORMED = _malformed_bodies()


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_commit_is_refused(server: ServerInfo, repo: Target, body: bytes) -> None:
    """A broken NDJSON commit is a 400 (413 for a too-long summary) and applies nothing."""
    with unchanged(server, repo.repo_id):
        refused(commit(server, repo.repo_id, body), {400: None, 413: None})


def test_delete_missing_file_is_refused(server: ServerInfo, repo: Target) -> None:
    """Deleting a file that is not there fails the whole commit (400 or 404 EntryNotFound)."""
    body = ndjson(header(), put_file("new.txt"), {"key": "deletedFile", "value": {"path": "nope"}})
    with unchanged(server, repo.repo_id):
        refused(commit(server, repo.repo_id, body), {400: None, 404: "EntryNotFound"})


@pytest.mark.parametrize(
    ("oid", "size"),
    [
        ("xyz", 10),
        ("A" * 64, 10),  # upper-case hex is not how LFS names objects
        ("a" * 63, 10),
        (sha256(LFS_CONTENT), -1),
        (sha256(LFS_CONTENT), len(LFS_CONTENT) + 1),  # stored, but the size lies
    ],
    ids=["not-hex", "upper-hex", "short", "negative-size", "wrong-size"],
)
def test_commit_refuses_bad_lfs_reference(
    server: ServerInfo, repo: Target, oid: str, size: int
) -> None:
    """lfsFile with a malformed oid or a size that does not match the stored object is a 400."""
    with unchanged(server, repo.repo_id):
        refused(commit(server, repo.repo_id, ndjson(header(), put_lfs("w2.bin", oid, size))), 400)


# --- parentCommit -------------------------------------------------------------------------------
def test_stale_parent_commit_is_412(server: ServerInfo, fresh_repo: Target) -> None:
    """A commit whose parentCommit is no longer the head of main is refused with 412."""
    old = snapshot(server, fresh_repo.repo_id).sha
    moved = commit(server, fresh_repo.repo_id, ndjson(header(), put_file("moved.txt")))
    assert moved.status_code == 200, describe(moved)
    with unchanged(server, fresh_repo.repo_id):
        body = ndjson(header(parentCommit=old), put_file("late.txt"))
        refused(commit(server, fresh_repo.repo_id, body), 412)
        unknown = ndjson(header(parentCommit="0" * 40), put_file("late.txt"))
        refused(commit(server, fresh_repo.repo_id, unknown), 412)


@pytest.mark.parametrize(
    "parent",
    ["xyz", "g" * 40, "A" * 40, "a" * 41, "a" * 39, 12345, ["a" * 40]],
    ids=["short", "not-hex", "upper", "41", "39", "int", "list"],
)
def test_malformed_parent_commit_is_400(server: ServerInfo, repo: Target, parent: object) -> None:
    """A parentCommit that is not a 40-hex commit id is a 400, not a 412."""
    with unchanged(server, repo.repo_id):
        body = ndjson(header(parentCommit=parent), put_file("p.txt"))
        refused(commit(server, repo.repo_id, body), 400)


# --- unknown revisions ----------------------------------------------------------------------
REVISIONS = {
    "missing": "nope",
    "missing-sha": "0" * 40,
    "missing-slash": quote("feature/none", safe=""),
    "dotdot": quote("../main", safe=""),
    "nul": "main%00",
    "too-long": "r" * 300,
}


@pytest.mark.parametrize("rev", REVISIONS.values(), ids=REVISIONS.keys())
def test_unknown_revision_is_revision_not_found(server: ServerInfo, repo: Target, rev: str) -> None:
    """info, tree, paths-info, commits and resolve (HEAD and GET) all answer RevisionNotFound."""
    h = auth(server.alice)
    rid = repo.repo_id
    not_found = {404: "RevisionNotFound"}
    refused(raw(server, "GET", f"/api/models/{rid}/revision/{rev}", headers=h), not_found)
    refused(raw(server, "GET", f"/api/models/{rid}/tree/{rev}", headers=h), not_found)
    refused(raw(server, "GET", f"/api/models/{rid}/tree/{rev}/docs", headers=h), not_found)
    refused(raw(server, "GET", f"/api/models/{rid}/commits/{rev}", headers=h), not_found)
    form = {**h, "Content-Type": "application/x-www-form-urlencoded"}
    refused(
        raw(server, "POST", f"/api/models/{rid}/paths-info/{rev}", headers=form, body=b"paths=a"),
        not_found,
    )
    for method in ("HEAD", "GET"):
        refused(raw(server, method, f"/{rid}/resolve/{rev}/config.json", headers=h), not_found)


@pytest.mark.parametrize("branch", ["nope", "0" * 40, "feature/none", "main\x00"])
def test_commit_to_missing_branch_is_revision_not_found(
    server: ServerInfo, repo: Target, branch: str
) -> None:
    """A commit never creates a branch: 404 RevisionNotFound and nothing changes."""
    body = ndjson(header(), put_file("branchless.txt", uuid.uuid4().bytes))
    with unchanged(server, repo.repo_id):
        refused(commit(server, repo.repo_id, body, branch=branch), {404: "RevisionNotFound"})


def test_server_log_has_no_unhandled_errors(server: ServerInfo) -> None:
    """Runs last in the module: nothing above made the server log an unhandled error."""
    assert_log_clean(server)
