"""Hostile repo ids, private repositories and bad credentials.

Each refusal must be a clear 4xx and leave the hub exactly as it was (see tests/support/hostile.py).
"""

from __future__ import annotations

import httpx
import pytest

from tests.support.hostile import (
    LFS_CONTENT,
    LFS_JSON,
    NDJSON,
    Target,
    assert_log_clean,
    auth,
    b64,
    commit,
    describe,
    header,
    ndjson,
    put_file,
    raw,
    refused,
    repo_names,
    sha256,
    staging_files,
    unchanged,
    unique,
)
from tests.support.hubs import ServerInfo

pytestmark = pytest.mark.slow  # hundreds of cases against live servers

# --- repository ids and namespaces on create ----------------------------------------------------
ILLEGAL_NAMES = {
    "three-parts": "a/b/c",
    "dotdot": "..",
    "dot": ".",
    "leading-dash": "-x",
    "double-dash": "x--y",
    "double-dot": "x..y",
    "trailing-dot": "x.",
    "dot-git": "x.git",
    "too-long": "x" * 97,
    "unicode": "模型",
    "accent": "café",
    "percent-nul": "%00",
    "nul": "a\x00b",
    "space": "a b",
    "slash-only": "/",
    "empty": "",
    "traversal": "../alice/x",
}


@pytest.mark.parametrize("name", ILLEGAL_NAMES.values(), ids=ILLEGAL_NAMES.keys())
def test_create_refuses_illegal_repo_id(server: ServerInfo, name: str) -> None:
    """Illegal repository names are a 400 and create nothing."""
    before = repo_names(server, "alice")
    response = httpx.post(
        f"{server.url}/api/repos/create", json={"name": name}, headers=auth(server.alice)
    )
    refused(response, 400)
    assert repo_names(server, "alice") == before
    assert staging_files(server) == []


def test_create_refuses_too_long_name_with_org(server: ServerInfo) -> None:
    """A 97-character name is refused even when the namespace is given separately."""
    response = httpx.post(
        f"{server.url}/api/repos/create",
        json={"name": "y" * 97, "organization": "acme"},
        headers=auth(server.alice),
    )
    refused(response, 400)


@pytest.mark.parametrize(
    ("token", "body", "status"),
    [
        ("alice", {"name": "bob/{name}"}, 403),
        ("alice", {"name": "{name}", "organization": "bob"}, 403),
        ("bob", {"name": "acme/{name}"}, 403),
        ("bob", {"name": "{name}", "organization": "acme"}, 403),
        ("alice", {"name": "nosuchorg/{name}"}, 403),
        ("alice_read", {"name": "{name}"}, 403),
        ("alice_read", {"name": "acme/{name}"}, 403),
        (None, {"name": "alice/{name}"}, 401),
    ],
    ids=[
        "other-user-id",
        "other-user-org-field",
        "foreign-org-id",
        "foreign-org-field",
        "missing-namespace",
        "read-token",
        "read-token-org",
        "anonymous",
    ],
)
def test_create_outside_own_namespaces_is_refused(
    server: ServerInfo, token: str | None, body: dict[str, str], status: int
) -> None:
    """Only a write token of the user (or an org member) may create in a namespace."""
    name = unique("nope")
    payload = {k: v.format(name=name) for k, v in body.items()}
    owners = ("alice", "bob", "acme")
    before = {owner: repo_names(server, owner) for owner in owners}
    secret = server.tokens[token] if token else None
    response = httpx.post(f"{server.url}/api/repos/create", json=payload, headers=auth(secret))
    refused(response, status)
    assert {owner: repo_names(server, owner) for owner in owners} == before


# --- private repositories -------------------------------------------------------------------
def _probe(server: ServerInfo, repo_id: str, token: str | None) -> dict[str, httpx.Response]:
    """Every read and write endpoint, hit as `token`, for one repository id."""
    h = auth(token)
    api = f"{server.url}/api/models/{repo_id}"
    lfs = f"{server.url}/{repo_id}.git/info/lfs/objects"
    oid = sha256(LFS_CONTENT)
    return {
        "info": httpx.get(api, headers=h),
        "info-blobs": httpx.get(api, params={"blobs": "true"}, headers=h),
        "revision": httpx.get(f"{api}/revision/main", headers=h),
        "tree": httpx.get(f"{api}/tree/main", params={"recursive": "true"}, headers=h),
        "tree-folder": httpx.get(f"{api}/tree/main/docs", headers=h),
        "refs": httpx.get(f"{api}/refs", headers=h),
        "commits": httpx.get(f"{api}/commits/main", headers=h),
        "paths-info": httpx.post(
            f"{api}/paths-info/main", data={"paths": ["config.json"]}, headers=h
        ),
        "resolve-head": httpx.head(f"{server.url}/{repo_id}/resolve/main/config.json", headers=h),
        "resolve-get": httpx.get(f"{server.url}/{repo_id}/resolve/main/config.json", headers=h),
        "resolve-missing": httpx.get(f"{server.url}/{repo_id}/resolve/main/nope", headers=h),
        "preupload": httpx.post(
            f"{api}/preupload/main",
            json={"files": [{"path": "a.txt", "sample": b64(b"a"), "size": 1}]},
            headers=h,
        ),
        "commit": httpx.post(
            f"{api}/commit/main",
            content=ndjson(header(), put_file("pwned.txt")),
            headers={**NDJSON, **h},
        ),
        "branch": httpx.post(f"{api}/branch/pwned", json={}, headers=h),
        "tag": httpx.post(f"{api}/tag/main", json={"tag": "pwned"}, headers=h),
        "delete-branch": httpx.delete(f"{api}/branch/main", headers=h),
        "settings": httpx.put(f"{api}/settings", json={"private": False}, headers=h),
        "lfs-batch": httpx.post(
            f"{lfs}/batch",
            json={"operation": "upload", "objects": [{"oid": oid, "size": len(LFS_CONTENT)}]},
            headers={**LFS_JSON, **h},
        ),
        "lfs-verify": httpx.post(
            f"{lfs}/verify", json={"oid": oid, "size": len(LFS_CONTENT)}, headers={**LFS_JSON, **h}
        ),
    }


@pytest.mark.parametrize("who", ["anonymous", "bob"])
def test_private_repo_is_indistinguishable_from_missing(
    server: ServerInfo, private_repo: Target, who: str
) -> None:
    """Anonymous callers and bob get 404 RepoNotFound everywhere, worded as for a missing repo."""
    token = server.bob if who == "bob" else None
    ghost = f"alice/{unique('ghost')}"
    with unchanged(server, private_repo.repo_id):
        hidden = _probe(server, private_repo.repo_id, token)
        missing = _probe(server, ghost, token)
    for endpoint, response in hidden.items():
        refused(response, {404: "RepoNotFound"})
        twin = missing[endpoint]
        assert twin.status_code == response.status_code, endpoint
        assert twin.headers.get("x-error-code") == response.headers.get("x-error-code"), endpoint
        if response.request.method != "HEAD":
            assert (
                response.json()["error"].replace(private_repo.repo_id, ghost)
                == (twin.json()["error"])
            ), endpoint
    listed = httpx.get(f"{server.url}/api/models", params={"author": "alice"}, headers=auth(token))
    assert listed.status_code == 200, describe(listed)
    assert private_repo.repo_id not in {item["id"] for item in listed.json()}


@pytest.mark.parametrize(
    ("token", "status"),
    [("bob", 403), ("alice_read", 403), (None, 401)],
    ids=["other-user", "read-token", "anonymous"],
)
def test_commit_to_public_repo_needs_write_access(
    server: ServerInfo, repo: Target, token: str | None, status: int
) -> None:
    """A public repo is readable by all but writable only by its namespace's write tokens."""
    with unchanged(server, repo.repo_id):
        response = commit(
            server, repo.repo_id, ndjson(header(), put_file("pwned.txt")), token=token
        )
        refused(response, status)
        h = auth(server.tokens[token] if token else None)
        api = f"{server.url}/api/models/{repo.repo_id}"
        refused(httpx.post(f"{api}/branch/pwned", json={}, headers=h), status)
        refused(httpx.post(f"{api}/tag/main", json={"tag": "pwned"}, headers=h), status)


# --- bearer tokens ----------------------------------------------------------------------------
def _bad_authorizations(server: ServerInfo) -> dict[str, str]:
    alice = server.alice
    flipped = alice[:-1] + ("A" if alice[-1] != "A" else "B")
    return {
        "bearer-only": "Bearer",
        "bearer-space": "Bearer ",
        "garbage": "Bearer garbage",
        "basic": "Basic YWxpY2U6c2VjcmV0",
        "right-prefix": "Bearer ky_" + "0" * 40,
        "wrong-secret": f"Bearer {flipped}",
        "token-without-scheme": alice,
        "two-tokens": f"Bearer {alice} {alice}",
    }


@pytest.mark.parametrize(
    "kind",
    [
        "bearer-only",
        "bearer-space",
        "garbage",
        "basic",
        "right-prefix",
        "wrong-secret",
        "token-without-scheme",
        "two-tokens",
    ],
)
def test_bad_authorization_is_401(server: ServerInfo, repo: Target, kind: str) -> None:
    """A malformed or unknown credential is a 401 everywhere, even on public reads."""
    h = {"Authorization": _bad_authorizations(server)[kind]}
    rid = repo.repo_id
    with unchanged(server, rid):
        refused(raw(server, "GET", "/api/whoami-v2", headers=h), 401)
        refused(raw(server, "GET", f"/api/models/{rid}", headers=h), 401)
        refused(raw(server, "GET", f"/api/models/{rid}/tree/main", headers=h), 401)
        refused(raw(server, "GET", f"/{rid}/resolve/main/config.json", headers=h), 401)
        refused(raw(server, "HEAD", f"/{rid}/resolve/main/config.json", headers=h), 401)
        body = ndjson(header(), put_file("pwned.txt"))
        target = f"/api/models/{rid}/commit/main"
        refused(raw(server, "POST", target, headers={**NDJSON, **h}, body=body), 401)


def test_server_log_has_no_unhandled_errors(server: ServerInfo) -> None:
    """Runs last in the module: nothing above made the server log an unhandled error."""
    assert_log_clean(server)
