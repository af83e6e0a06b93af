"""Helpers for the hostile-input suites: raw requests, refusal checks, repo snapshots."""

import base64
import contextlib
import hashlib
import http.client
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from huggingface_hub import HfApi

from tests.support.hubs import ServerInfo

NDJSON = {"Content-Type": "application/x-ndjson"}
LFS_JSON = {
    "Accept": "application/vnd.git-lfs+json",
    "Content-Type": "application/vnd.git-lfs+json",
}
LFS_CONTENT = b"\x00\x01binary weights\xff" * 64
CONFIG = b'{"hidden_size": 8}\n'
HUGE_INT = "9" * 5000  # valid JSON; more digits than Python converts to int by default
DEEP_JSON = "[" * 100_000 + "]" * 100_000  # valid JSON nested far beyond any sane depth
MAX_CARD_BYTES = 1024 * 1024  # Settings.max_card_bytes default


# --- helpers --------------------------------------------------------------------------------
def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def describe(response: httpx.Response) -> str:
    code = response.headers.get("x-error-code")
    return (
        f"{response.request.method} {response.request.url} -> {response.status_code} "
        f"X-Error-Code={code} body={response.text[:300]!r}"
    )


def refused(response: httpx.Response, expected: int | dict[int, str | None]) -> None:
    """Status is one of `expected` (status -> required X-Error-Code), with a JSON `error`."""
    wanted = expected if isinstance(expected, dict) else {expected: None}
    assert response.status_code in wanted, describe(response)
    code = wanted[response.status_code]
    if code is not None:
        assert response.headers.get("x-error-code") == code, describe(response)
    if response.request.method != "HEAD":
        try:
            body = response.json()
        except ValueError:
            pytest.fail(f"error body is not JSON: {describe(response)}")
        assert isinstance(body, dict), describe(response)
        assert isinstance(body.get("error"), str), describe(response)
        assert body["error"], describe(response)


def raw(
    server: ServerInfo,
    method: str,
    target: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> httpx.Response:
    """A request whose target goes out byte for byte (httpx would normalise `..`)."""
    url = urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        reply = conn.getresponse()
        content = reply.read()
        return httpx.Response(
            reply.status,
            headers=reply.getheaders(),
            content=content,
            request=httpx.Request(method, server.url + target),
        )
    finally:
        conn.close()


def ndjson(*lines: object) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def header(**value: object) -> dict[str, Any]:
    return {"key": "header", "value": {"summary": "hostile", **value}}


def put_file(path: object, content: bytes = b"x") -> dict[str, Any]:
    return {"key": "file", "value": {"path": path, "content": b64(content), "encoding": "base64"}}


def put_lfs(path: object, oid: str, size: int | None) -> dict[str, Any]:
    value: dict[str, Any] = {"path": path, "algo": "sha256", "oid": oid}
    if size is not None:
        value["size"] = size
    return {"key": "lfsFile", "value": value}


def commit(
    server: ServerInfo,
    repo_id: str,
    body: bytes,
    *,
    token: str | None = "alice",  # noqa: S107 - a key into server.tokens, not a secret
    branch: str = "main",
) -> httpx.Response:
    secret = server.tokens.get(token) if token else None
    return httpx.post(
        f"{server.url}/api/models/{repo_id}/commit/{quote(branch, safe='')}",
        content=body,
        headers={**NDJSON, **auth(secret)},
        timeout=60,
    )


# --- repository state -----------------------------------------------------------------------
@dataclass(frozen=True)
class RepoState:
    sha: str
    tree: list[dict[str, Any]]
    refs: dict[str, Any]


def snapshot(server: ServerInfo, repo_id: str) -> RepoState:
    """What a client can observe of a repository: head of main, full tree, branches and tags."""
    headers = auth(server.alice)
    info = httpx.get(f"{server.url}/api/models/{repo_id}/revision/main", headers=headers)
    assert info.status_code == 200, describe(info)
    tree: list[dict[str, Any]] = []
    url: str | None = f"{server.url}/api/models/{repo_id}/tree/main?recursive=true&expand=false"
    while url:
        page = httpx.get(url, headers=headers)
        assert page.status_code == 200, describe(page)
        tree.extend(page.json())
        url = page.links.get("next", {}).get("url")
    refs = httpx.get(f"{server.url}/api/models/{repo_id}/refs", headers=headers)
    assert refs.status_code == 200, describe(refs)
    return RepoState(info.json()["sha"], tree, refs.json())


def staging_files(server: ServerInfo) -> list[str]:
    """Files left in the blob store's staging areas (temp uploads, multipart parts)."""
    blobs = server.data_dir / "blobs"
    return sorted(
        str(p.relative_to(blobs))
        for folder in ("tmp", "parts")
        for p in (blobs / folder).rglob("*")
        if p.is_file()
    )


def blob_stored(server: ServerInfo, digest: str) -> bool:
    return (server.data_dir / "blobs" / "objects" / digest[:2] / digest[2:4] / digest).exists()


@contextlib.contextmanager
def unchanged(server: ServerInfo, repo_id: str) -> Iterator[None]:
    """Assert the block leaves the repository and the blob staging areas exactly as they were."""
    before = snapshot(server, repo_id)
    yield
    after = snapshot(server, repo_id)
    assert after == before, f"{repo_id} changed: {before} -> {after}"
    assert staging_files(server) == [], "temp files left behind"


def repo_names(server: ServerInfo, author: str) -> set[str]:
    listing = httpx.get(
        f"{server.url}/api/models",
        params={"author": author, "limit": "1000"},
        headers=auth(server.alice),
    )
    assert listing.status_code == 200, describe(listing)
    return {item["id"] for item in listing.json()}


# --- repositories under attack ---------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    repo_id: str
    lfs_oid: str
    lfs_size: int


def populate(server: ServerInfo, repo_id: str, *, private: bool = False) -> Target:
    api = HfApi(endpoint=server.url, token=server.alice)
    api.create_repo(repo_id, private=private)
    api.upload_file(path_or_fileobj=CONFIG, path_in_repo="config.json", repo_id=repo_id)
    api.upload_file(path_or_fileobj=b"notes\n", path_in_repo="docs/notes.txt", repo_id=repo_id)
    api.upload_file(path_or_fileobj=LFS_CONTENT, path_in_repo="weights.bin", repo_id=repo_id)
    entry = next(e for e in snapshot(server, repo_id).tree if e["path"] == "weights.bin")
    assert entry["lfs"]["oid"] == sha256(LFS_CONTENT)  # it really went through LFS
    return Target(repo_id, sha256(LFS_CONTENT), len(LFS_CONTENT))


def assert_log_clean(server: ServerInfo) -> None:
    """Nothing the module did made the server log an unhandled error."""
    lines = server.log().splitlines()
    summary = [
        line.strip()
        for line in lines
        if "unhandled error on" in line or re.match(r"^[A-Za-z_.]+(Error|Exception): ", line)
    ]
    deduplicated = [line for i, line in enumerate(summary) if i == 0 or summary[i - 1] != line]
    assert deduplicated == [], "\n".join(deduplicated)
