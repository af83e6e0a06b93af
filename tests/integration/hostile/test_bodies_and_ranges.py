"""Garbage JSON bodies, odd URLs and queries, and bad Range headers.

Each refusal must be a clear 4xx and leave the hub exactly as it was (see tests/support/hostile.py).
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.hostile import (
    CONFIG,
    DEEP_JSON,
    HUGE_INT,
    LFS_CONTENT,
    LFS_JSON,
    Target,
    assert_log_clean,
    auth,
    b64,
    describe,
    raw,
    refused,
    repo_names,
    unchanged,
    unique,
)
from tests.support.hubs import ServerInfo

pytestmark = pytest.mark.slow  # hundreds of cases against live servers


# --- garbage JSON bodies ----------------------------------------------------------------------
def _garbage(valid_shape: str) -> dict[str, bytes]:
    return {
        "array": b"[]",
        "array-of-object": b"[" + valid_shape.encode() + b"]",
        "string": b'"x"',
        "null": b"null",
        "number": b"1e999",
        "not-json": b"{nope",
        "invalid-utf8": b'{"\xff": 1}',
        "huge-int": ('{"x": ' + HUGE_INT + "}").encode(),
        "deeply-nested": DEEP_JSON.encode(),
    }


CREATE_BODIES = {
    **_garbage('{"name": "x"}'),
    "name-int": b'{"name": 5}',
    "name-list": b'{"name": ["x"]}',
    "name-huge-int": ('{"name": ' + HUGE_INT + "}").encode(),
    "name-inf": b'{"name": 1e999}',
    "org-int": b'{"name": "ok-name", "organization": 5}',
    "private-string": b'{"name": "ok-name", "private": "yes"}',
    "visibility-bad": b'{"name": "ok-name", "visibility": "secret"}',
    "type-bad": b'{"name": "ok-name", "type": "spaceship"}',
    "type-list": b'{"name": "ok-name", "type": ["model"]}',
}


@pytest.mark.parametrize("body", CREATE_BODIES.values(), ids=CREATE_BODIES.keys())
def test_create_repo_garbage_body_is_400(server: ServerInfo, body: bytes) -> None:
    """repos/create answers garbage with a JSON 400 and creates nothing."""
    before = repo_names(server, "alice")
    response = httpx.post(
        f"{server.url}/api/repos/create",
        content=body,
        headers={"Content-Type": "application/json", **auth(server.alice)},
    )
    refused(response, 400)
    assert repo_names(server, "alice") == before


REF_BODIES = {
    **_garbage("{}"),
    "start-int": b'{"startingPoint": 5}',
    "start-list": b'{"startingPoint": ["main"]}',
    "start-object": b'{"startingPoint": {"a": 1}}',
    "start-huge": ('{"startingPoint": ' + HUGE_INT + "}").encode(),
}


@pytest.mark.parametrize("body", REF_BODIES.values(), ids=REF_BODIES.keys())
def test_branch_create_garbage_body_is_400(server: ServerInfo, repo: Target, body: bytes) -> None:
    """Branch creation answers garbage with a JSON 400 and adds no branch."""
    with unchanged(server, repo.repo_id):
        response = httpx.post(
            f"{server.url}/api/models/{repo.repo_id}/branch/{unique('b')}",
            content=body,
            headers={"Content-Type": "application/json", **auth(server.alice)},
        )
        refused(response, 400)


@pytest.mark.parametrize(
    ("name", "body", "expected"),
    [
        ("..", b"{}", {400: None}),
        ("a%00b", b"{}", {400: None}),
        ("-lead", b"{}", {400: None}),
        ("x.lock", b"{}", {400: None}),
        ("b" * 300, b"{}", {400: None}),
        ("0" * 40, b"{}", {400: None}),
        ("main", b"{}", {409: None}),
        ("ok-branch", b'{"startingPoint": "nope"}', {404: "RevisionNotFound"}),
    ],
    ids=["dotdot", "nul", "dash", "lock", "too-long", "sha-like", "exists", "bad-start"],
)
def test_branch_create_refuses_bad_name_or_start(
    server: ServerInfo, repo: Target, name: str, body: bytes, expected: dict[int, str | None]
) -> None:
    """Bad branch names are 400, an existing one 409, an unknown start RevisionNotFound."""
    with unchanged(server, repo.repo_id):
        response = raw(
            server,
            "POST",
            f"/api/models/{repo.repo_id}/branch/{name}",
            headers={"Content-Type": "application/json", **auth(server.alice)},
            body=body,
        )
        refused(response, expected)


TAG_BODIES = {
    **_garbage('{"tag": "v1"}'),
    "tag-missing": b"{}",
    "tag-int": b'{"tag": 5}',
    "tag-list": b'{"tag": ["v1"]}',
    "tag-empty": b'{"tag": ""}',
    "tag-dotdot": b'{"tag": "../v1"}',
    "tag-nul": b'{"tag": "v\\u0000"}',
    "tag-huge": ('{"tag": ' + HUGE_INT + "}").encode(),
}


@pytest.mark.parametrize("body", TAG_BODIES.values(), ids=TAG_BODIES.keys())
def test_tag_create_garbage_body_is_400(server: ServerInfo, repo: Target, body: bytes) -> None:
    """Tag creation answers garbage with a JSON 400 and adds no tag."""
    with unchanged(server, repo.repo_id):
        response = httpx.post(
            f"{server.url}/api/models/{repo.repo_id}/tag/main",
            content=body,
            headers={"Content-Type": "application/json", **auth(server.alice)},
        )
        refused(response, 400)


PATHS_INFO_BODIES = {
    **_garbage('{"paths": ["config.json"]}'),
    "paths-string": b'{"paths": "config.json"}',
    "paths-ints": b'{"paths": [1, 2]}',
    "paths-objects": b'{"paths": [{"p": "a"}]}',
    "paths-huge": ('{"paths": [' + HUGE_INT + "]}").encode(),
    "too-many": json.dumps({"paths": [f"f{i}" for i in range(1001)]}).encode(),
}


@pytest.mark.parametrize("body", PATHS_INFO_BODIES.values(), ids=PATHS_INFO_BODIES.keys())
def test_paths_info_garbage_json_is_400(server: ServerInfo, repo: Target, body: bytes) -> None:
    """Paths-info with a JSON body of the wrong shape is a JSON 400."""
    response = httpx.post(
        f"{server.url}/api/models/{repo.repo_id}/paths-info/main",
        content=body,
        headers={"Content-Type": "application/json", **auth(server.alice)},
    )
    refused(response, 400)


def test_paths_info_invalid_utf8_form_is_400(server: ServerInfo, repo: Target) -> None:
    """A form body that is not UTF-8 is a 400."""
    response = httpx.post(
        f"{server.url}/api/models/{repo.repo_id}/paths-info/main",
        content=b"paths=\xff\xfe",
        headers={"Content-Type": "application/x-www-form-urlencoded", **auth(server.alice)},
    )
    refused(response, 400)


def _preupload_item(**item: object) -> bytes:
    return json.dumps(
        {"files": [{"path": "a.txt", "sample": b64(b"a"), "size": 1, **item}]}
    ).encode()


PREUPLOAD_BODIES = {
    **_garbage('{"files": []}'),
    "files-missing": b"{}",
    "files-object": b'{"files": {"path": "a"}}',
    "files-string": b'{"files": "a.txt"}',
    "file-int": b'{"files": [1]}',
    "file-list": b'{"files": [["a.txt", 1]]}',
    "size-string": _preupload_item(size="1"),
    "size-float": _preupload_item(size=1.5),
    "size-bool": _preupload_item(size=True),
    "size-negative": _preupload_item(size=-1),
    "size-missing": json.dumps({"files": [{"path": "a.txt", "sample": ""}]}).encode(),
    "size-huge": (
        '{"files": [{"path": "a.txt", "sample": "", "size": ' + HUGE_INT + "}]}"
    ).encode(),
    "size-inf": b'{"files": [{"path": "a.txt", "sample": "", "size": 1e999}]}',
    "sample-int": _preupload_item(sample=5),
    "sample-bad-base64": _preupload_item(sample="!!!"),
    "sample-too-long": _preupload_item(sample=b64(b"a" * 600_000)),
    "path-int": _preupload_item(path=5),
    "too-many": json.dumps(
        {"files": [{"path": f"f{i}", "sample": "", "size": 1} for i in range(1001)]}
    ).encode(),
}


@pytest.mark.parametrize("body", PREUPLOAD_BODIES.values(), ids=PREUPLOAD_BODIES.keys())
def test_preupload_garbage_body_is_400(server: ServerInfo, repo: Target, body: bytes) -> None:
    """Preupload answers garbage with a JSON 400."""
    with unchanged(server, repo.repo_id):
        response = httpx.post(
            f"{server.url}/api/models/{repo.repo_id}/preupload/main",
            content=body,
            headers={"Content-Type": "application/json", **auth(server.alice)},
        )
        refused(response, 400)


LFS_BATCH_BODIES = {
    **_garbage('{"operation": "upload", "objects": []}'),
    "objects-missing": b'{"operation": "upload"}',
    "objects-object": b'{"operation": "upload", "objects": {"oid": "a"}}',
    "object-int": b'{"operation": "upload", "objects": [1]}',
    "hash-md5": b'{"operation": "upload", "objects": [], "hash_algo": "md5"}',
    "size-huge": (
        '{"operation": "upload", "objects": [{"oid": "'
        + "a" * 64
        + '", "size": '
        + HUGE_INT
        + "}]}"
    ).encode(),
}


@pytest.mark.parametrize("body", LFS_BATCH_BODIES.values(), ids=LFS_BATCH_BODIES.keys())
def test_lfs_batch_garbage_body_is_4xx(server: ServerInfo, repo: Target, body: bytes) -> None:
    """The LFS batch endpoint answers garbage with a JSON 4xx."""
    with unchanged(server, repo.repo_id):
        response = httpx.post(
            f"{server.url}/{repo.repo_id}.git/info/lfs/objects/batch",
            content=body,
            headers={**LFS_JSON, **auth(server.alice)},
        )
        refused(response, {400: None, 422: None})


@pytest.mark.parametrize(
    ("method", "target", "body"),
    [
        ("POST", "/api/models/{rid}/branch/nul-start", b'{"startingPoint": "main\\u0000"}'),
        ("POST", "/api/models/{rid}/tag/main%00", b'{"tag": "nul-tag"}'),
        ("POST", "/api/models/{rid}/preupload/main%00", b'{"files": []}'),
    ],
    ids=["branch-start", "tag-revision", "preupload-revision"],
)
def test_nul_in_revision_is_refused(
    server: ServerInfo, repo: Target, method: str, target: str, body: bytes | None
) -> None:
    """A NUL inside a revision name is a 400 or 404, never a database error."""
    headers = {"Content-Type": "application/json", **auth(server.alice)}
    with unchanged(server, repo.repo_id):
        response = raw(server, method, target.format(rid=repo.repo_id), headers=headers, body=body)
        refused(response, {400: None, 404: None})
        if response.status_code == 404:
            assert response.headers.get("x-error-code") == "RevisionNotFound", describe(response)


MALFORMED_URLS = {
    "refs-suffix": ("GET", "/api/models/{rid}/refs/extra"),
    "tree-no-revision": ("GET", "/api/models/{rid}/tree/"),
    "revision-empty": ("GET", "/api/models/{rid}/revision/"),
    "revision-extra": ("GET", "/api/models/{rid}/revision/main/extra"),
    "commits-no-revision": ("GET", "/api/models/{rid}/commits/"),
    "unknown-action": ("GET", "/api/models/{rid}/nonsense/main"),
    "commit-no-branch": ("POST", "/api/models/{rid}/commit/"),
    "preupload-no-revision": ("POST", "/api/models/{rid}/preupload/"),
    "paths-info-no-revision": ("POST", "/api/models/{rid}/paths-info/"),
    "branch-no-name": ("POST", "/api/models/{rid}/branch/"),
    "resolve-no-revision": ("GET", "/{rid}/resolve/"),
    "lfs-unknown": ("POST", "/{rid}.git/info/lfs/objects/nonsense"),
    "space-kind": ("GET", "/api/spaces/{rid}"),
}


@pytest.mark.parametrize(("method", "target"), MALFORMED_URLS.values(), ids=MALFORMED_URLS.keys())
def test_malformed_repo_url_is_json_4xx(
    server: ServerInfo, repo: Target, method: str, target: str
) -> None:
    """A repo-scoped URL of the wrong shape is a 400/404 with a JSON `error`, not a bare 404."""
    headers = {"Content-Type": "application/json", **auth(server.alice)}
    with unchanged(server, repo.repo_id):
        response = raw(server, method, target.format(rid=repo.repo_id), headers=headers, body=b"{}")
        refused(response, {400: None, 404: None, 405: None})


@pytest.mark.parametrize(
    "query",
    ["search=%00", "author=%00", "search=%25%5F%5C", "limit=abc", "limit=-1", "limit=" + "9" * 30],
    ids=[
        "search-nul",
        "author-nul",
        "search-wildcards",
        "limit-text",
        "limit-negative",
        "limit-huge",
    ],
)
def test_repo_listing_survives_odd_query(server: ServerInfo, query: str) -> None:
    """Listing repositories with odd filters is a 200 or a JSON 400, never a 5xx."""
    response = raw(server, "GET", f"/api/models?{query}", headers=auth(server.alice))
    if response.status_code == 200:
        assert isinstance(response.json(), list), describe(response)
    else:
        refused(response, 400)


@pytest.mark.parametrize(
    "target",
    [
        "tree/main?cursor=-1",
        "tree/main?cursor=abc",
        "tree/main?limit=0",
        "tree/main?limit=%00",
        "commits/main?cursor=x",
        "commits/main?limit=-5",
    ],
)
def test_garbage_paging_params_are_400(server: ServerInfo, repo: Target, target: str) -> None:
    """Pagination cursors and limits that are not non-negative integers are a JSON 400."""
    response = raw(
        server, "GET", f"/api/models/{repo.repo_id}/{target}", headers=auth(server.alice)
    )
    refused(response, 400)


# --- Range headers --------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["config.json", "weights.bin"])
@pytest.mark.parametrize(
    "range_header",
    [
        "bytes=999999999-",
        "bytes=5-2",
        "bytes=abc",
        "bytes=",
        "bytes=-",
        "bytes=-0",
        "bytes=1-2-3",
        "bytes=--5",
        "bytes=0-" + "9" * 40,
        "bytes=" + ",".join(["0-0"] * 500),
        "items=0-1",
        "bytes 0-1",
        "garbage",
    ],
)
def test_bad_range_is_416_or_full_file(
    server: ServerInfo, repo: Target, path: str, range_header: str
) -> None:
    """A bad or unsatisfiable Range gets 416 or the whole file, never a 400 or a 5xx."""
    content = CONFIG if path == "config.json" else LFS_CONTENT
    response = httpx.get(
        f"{server.url}/{repo.repo_id}/resolve/main/{path}",
        headers={"Range": range_header, **auth(server.alice)},
    )
    assert response.status_code in {200, 206, 416}, describe(response)
    if response.status_code == 416:
        assert response.headers.get("content-range") == f"bytes */{len(content)}", describe(
            response
        )
    elif response.status_code == 200:
        assert response.content == content
    else:  # a 206 is acceptable only when it is a real slice of the file
        assert response.content, describe(response)
        assert response.content in content


def test_server_log_has_no_unhandled_errors(server: ServerInfo) -> None:
    """Runs last in the module: nothing above made the server log an unhandled error."""
    assert_log_clean(server)
