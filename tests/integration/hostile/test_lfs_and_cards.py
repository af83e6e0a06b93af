"""Hostile LFS batches, upload links and model cards.

Each refusal must be a clear 4xx and leave the hub exactly as it was (see tests/support/hostile.py).
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from huggingface_hub import HfApi

from tests.support.hostile import (
    DEEP_JSON,
    HUGE_INT,
    LFS_JSON,
    MAX_CARD_BYTES,
    Target,
    assert_log_clean,
    auth,
    blob_stored,
    commit,
    describe,
    header,
    ndjson,
    put_file,
    put_lfs,
    refused,
    sha256,
    snapshot,
    staging_files,
    unchanged,
    unique,
)
from tests.support.hubs import ServerInfo

pytestmark = pytest.mark.slow  # hundreds of cases against live servers


# --- LFS batch and upload links -------------------------------------------------------------
def batch(
    server: ServerInfo, repo_id: str, objects: list[Any], token: str | None
) -> httpx.Response:
    return httpx.post(
        f"{server.url}/{repo_id}.git/info/lfs/objects/batch",
        json={
            "operation": "upload",
            "transfers": ["basic", "multipart"],
            "objects": objects,
            "hash_algo": "sha256",
        },
        headers={**LFS_JSON, **auth(token)},
    )


def upload_href(server: ServerInfo, repo_id: str, content: bytes) -> str:
    """The signed upload link the batch endpoint hands out for `content`."""
    response = batch(
        server, repo_id, [{"oid": sha256(content), "size": len(content)}], server.alice
    )
    assert response.status_code == 200, describe(response)
    (item,) = response.json()["objects"]
    return str(item["actions"]["upload"]["href"])


BAD_OBJECTS = {
    "oid-not-hex": {"oid": "z" * 64, "size": 1},
    "oid-upper": {"oid": "A" * 64, "size": 1},
    "oid-short": {"oid": "ab", "size": 1},
    "oid-int": {"oid": 12, "size": 1},
    "oid-missing": {"size": 1},
    "size-negative": {"oid": sha256(b"neg"), "size": -1},
    "size-string": {"oid": sha256(b"str"), "size": "10"},
    "size-float": {"oid": sha256(b"flt"), "size": 1.5},
    "size-bool": {"oid": sha256(b"bool"), "size": True},
    "size-missing": {"oid": sha256(b"miss")},
    "size-2**64": {"oid": sha256(b"big"), "size": 2**64},
}


@pytest.mark.parametrize("item", BAD_OBJECTS.values(), ids=BAD_OBJECTS.keys())
def test_lfs_batch_refuses_bad_object(server: ServerInfo, repo: Target, item: Any) -> None:
    """A bad oid or size gets no upload action: a 4xx, or a per-object 4xx error (git-lfs spec)."""
    with unchanged(server, repo.repo_id):
        response = batch(server, repo.repo_id, [item], server.alice)
        if response.status_code == 200:
            (answer,) = response.json()["objects"]
            assert "actions" not in answer, describe(response)
            assert 400 <= answer["error"]["code"] < 500, describe(response)
        else:
            refused(response, {400: None, 413: None, 422: None})


@pytest.mark.parametrize(
    ("token", "status"),
    [("bob", 403), ("alice_read", 403), (None, 401)],
    ids=["other-user", "read-token", "anonymous"],
)
def test_lfs_batch_needs_write_access(
    server: ServerInfo, repo: Target, token: str | None, status: int
) -> None:
    """Only writers of the namespace get upload links."""
    content = b"batch-access" + uuid.uuid4().bytes
    secret = server.tokens[token] if token else None
    response = batch(server, repo.repo_id, [{"oid": sha256(content), "size": len(content)}], secret)
    refused(response, status)


def _put(href: str, data: bytes) -> httpx.Response:
    return httpx.put(href, content=data, timeout=60)


@pytest.mark.parametrize(
    "data",
    [b"Y" * 4096, b"X" * 4095, b"X" * 4097, b"X" * 4096 * 3, b""],
    ids=["wrong-bytes", "one-short", "one-extra", "triple", "empty"],
)
def test_lfs_put_refuses_bytes_that_do_not_match(
    server: ServerInfo, repo: Target, data: bytes
) -> None:
    """The upload link only accepts exactly the announced bytes; nothing is stored otherwise."""
    content = b"X" * 4096
    href = upload_href(server, repo.repo_id, content)
    with unchanged(server, repo.repo_id):
        refused(_put(href, data), {400: None, 413: None})
        assert not blob_stored(server, sha256(data))
        assert not blob_stored(server, sha256(content))


def _tamper(href: str, **changes: str) -> str:
    parts = urlsplit(href)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return parts._replace(query=urlencode(query)).geturl()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("sig", "0" * 64),
        ("sig", ""),
        ("size", "+1"),
        ("repo", "+1"),
        ("expires", "+1"),
        ("upload_id", "forged"),
    ],
    ids=["sig-zeros", "sig-empty", "size", "repo", "expires-later", "upload-id"],
)
def test_lfs_put_refuses_tampered_link(
    server: ServerInfo, repo: Target, name: str, value: str
) -> None:
    """Changing any signed field of an upload link makes it worthless (401/403)."""
    content = b"tamper " + uuid.uuid4().bytes
    href = upload_href(server, repo.repo_id, content)
    if value == "+1":
        value = str(int(parse_qs(urlsplit(href).query)[name][0]) + 1)
    with unchanged(server, repo.repo_id):
        refused(_put(_tamper(href, **{name: value}), content), {401: None, 403: None})
        assert not blob_stored(server, sha256(content))


def test_lfs_put_refuses_link_for_other_oid(server: ServerInfo, repo: Target) -> None:
    """A link signed for one oid cannot store another object, even with matching bytes."""
    content, other = b"first " + uuid.uuid4().bytes, b"other " + uuid.uuid4().bytes
    href = upload_href(server, repo.repo_id, content).replace(sha256(content), sha256(other))
    with unchanged(server, repo.repo_id):
        refused(_put(href, other), {401: None, 403: None})
        assert not blob_stored(server, sha256(other))


@pytest.mark.parametrize("drop", ["repo", "size", "expires"])
def test_lfs_put_refuses_incomplete_link(server: ServerInfo, repo: Target, drop: str) -> None:
    """A link missing one of its signed numbers is refused, not guessed."""
    content = b"incomplete " + uuid.uuid4().bytes
    href = upload_href(server, repo.repo_id, content)
    parts = urlsplit(href)
    query = {k: v[0] for k, v in parse_qs(parts.query).items() if k != drop}
    with unchanged(server, repo.repo_id):
        refused(
            _put(parts._replace(query=urlencode(query)).geturl(), content), {400: None, 403: None}
        )
        assert not blob_stored(server, sha256(content))


def test_lfs_put_refuses_expired_link(server: ServerInfo, repo: Target) -> None:
    """A correctly signed link whose expiry has passed is refused."""
    key_file = server.data_dir / "secret.key"
    if not key_file.exists():
        pytest.skip("the server's signing key is not in its data dir")
    content = b"expired " + uuid.uuid4().bytes
    href = upload_href(server, repo.repo_id, content)
    query = {k: v[0] for k, v in parse_qs(urlsplit(href).query).items()}
    expires = str(int(time.time()) - 60)
    payload = (
        f"{query['repo']}:{sha256(content)}:{query['size']}:{expires}:{query.get('upload_id', '')}"
    )
    signature = hmac.new(
        key_file.read_text().strip().encode(), payload.encode(), hashlib.sha256
    ).hexdigest()
    with unchanged(server, repo.repo_id):
        refused(
            _put(_tamper(href, expires=expires, sig=signature), content), {401: None, 403: None}
        )
        assert not blob_stored(server, sha256(content))


def test_commit_refuses_never_stored_oid(server: ServerInfo, repo: Target) -> None:
    """After failed uploads, a commit naming the object still fails: it was never stored."""
    content = b"never stored " + uuid.uuid4().bytes
    href = upload_href(server, repo.repo_id, content)
    # the last byte flipped (replacing it with a fixed byte left it unchanged 1 time in 256)
    refused(_put(href, content[:-1] + bytes([content[-1] ^ 1])), 400)
    refused(_put(_tamper(href, sig="f" * 64), content), {401: None, 403: None})
    with unchanged(server, repo.repo_id):
        verify = httpx.post(
            f"{server.url}/{repo.repo_id}.git/info/lfs/objects/verify",
            json={"oid": sha256(content), "size": len(content)},
            headers={**LFS_JSON, **auth(server.alice)},
        )
        refused(verify, {400: None, 404: None, 422: None})
        body = ndjson(header(), put_lfs("never.bin", sha256(content), len(content)))
        refused(commit(server, repo.repo_id, body), {400: None, 404: None, 422: None})
        body = ndjson(header(), put_lfs("never.bin", sha256(content), None))
        refused(commit(server, repo.repo_id, body), {400: None, 404: None, 422: None})


def test_lfs_object_of_another_repo_needs_proof_of_possession(
    server: ServerInfo, repo: Target
) -> None:
    """alice cannot commit, verify or skip uploading an object she only knows the sha256 of."""
    bob_repo = f"bob/{unique('bobs')}"
    secret = b"\x00bob's private weights " + uuid.uuid4().bytes
    bob = HfApi(endpoint=server.url, token=server.bob)
    bob.create_repo(bob_repo, private=True)
    bob.upload_file(path_or_fileobj=secret, path_in_repo="w.bin", repo_id=bob_repo)
    oid = sha256(secret)
    assert blob_stored(server, oid)
    with unchanged(server, repo.repo_id):
        for size in (len(secret), None):
            body = ndjson(header(), put_lfs("stolen.bin", oid, size))
            refused(commit(server, repo.repo_id, body), {400: None, 403: None, 404: None})
        verify = httpx.post(
            f"{server.url}/{repo.repo_id}.git/info/lfs/objects/verify",
            json={"oid": oid, "size": len(secret)},
            headers={**LFS_JSON, **auth(server.alice)},
        )
        refused(verify, {400: None, 403: None, 404: None, 422: None})
        answer = batch(server, repo.repo_id, [{"oid": oid, "size": len(secret)}], server.alice)
        assert answer.status_code == 200, describe(answer)
        (item,) = answer.json()["objects"]
        assert "upload" in item.get("actions", {}), f"batch skipped the upload: {item}"


# --- model cards ------------------------------------------------------------------------------
def test_oversized_readme_commit_is_413(server: ServerInfo, repo: Target) -> None:
    """An inline README.md over max_card_bytes is refused with 413."""
    card = b"---\nlicense: mit\n---\n" + b"#" * MAX_CARD_BYTES
    with unchanged(server, repo.repo_id):
        refused(commit(server, repo.repo_id, ndjson(header(), put_file("README.md", card))), 413)


def test_oversized_readme_through_lfs_is_413(server: ServerInfo, fresh_repo: Target) -> None:
    """The card limit holds when README.md arrives as an LFS object too."""
    repo = fresh_repo
    card = b"---\nlicense: mit\n---\n" + uuid.uuid4().hex.encode() * (MAX_CARD_BYTES // 32 + 1)
    stored = _put(upload_href(server, repo.repo_id, card), card)
    assert stored.status_code == 200, describe(stored)
    with unchanged(server, repo.repo_id):
        body = ndjson(header(), put_lfs("README.md", sha256(card), len(card)))
        refused(commit(server, repo.repo_id, body), 413)


ALIAS_BOMB = "\n".join(
    [
        "---",
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)),
        "---",
        "# bomb",
    ]
)

BAD_CARDS = {
    "invalid-yaml": "---\nlicense: [unclosed\n---\n# card\n",
    "tab-indent": "---\ntags:\n\t- a\n---\n",
    "not-a-mapping": "---\n- a\n- b\n---\n",
    "never-closed": "---\nlicense: mit\n# no end\n",
    "tags-number": "---\ntags: 5\n---\n",
    "license-list": "---\nlicense: [1, {a: b}]\n---\n",  # a list must hold identifiers
    "base-model-int": "---\nbase_model: 5\n---\n",
    "non-string-key": "---\n1: a\n---\n",
    "python-tag": "---\nx: !!python/object/apply:os.system ['true']\n---\n",
    "alias-bomb": ALIAS_BOMB,
    "deeply-nested": "---\nx: " + "[" * 50_000 + "]" * 50_000 + "\n---\n",
}


@pytest.mark.parametrize("card", BAD_CARDS.values(), ids=BAD_CARDS.keys())
def test_validate_yaml_refuses_bad_card(server: ServerInfo, card: str) -> None:
    """validate-yaml answers 400 with a JSON `errors` list of messages for bad metadata."""
    response = httpx.post(
        f"{server.url}/api/validate-yaml",
        json={"content": card, "repoType": "model"},
        headers=auth(server.alice),
        timeout=30,
    )
    assert response.status_code == 400, describe(response)
    errors = response.json()["errors"]
    assert isinstance(errors, list), describe(response)
    assert errors, describe(response)
    assert all(isinstance(e["message"], str) and e["message"] for e in errors)


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b'"text"',
        b"{not json",
        b'{"content": 5}',
        b"{}",
        ('{"content": ' + HUGE_INT + "}").encode(),
        DEEP_JSON.encode(),
    ],
    ids=["array", "string", "not-json", "content-int", "content-missing", "huge-int", "deep"],
)
def test_validate_yaml_garbage_body_is_json_400(server: ServerInfo, body: bytes) -> None:
    """validate-yaml always answers JSON; garbage is a 400 with an `errors` list."""
    response = httpx.post(
        f"{server.url}/api/validate-yaml",
        content=body,
        headers={"Content-Type": "application/json", **auth(server.alice)},
    )
    assert response.status_code == 400, describe(response)
    assert response.json()["errors"], describe(response)


@pytest.mark.parametrize(
    "card",
    [ALIAS_BOMB, "---\nx: " + "[" * 50_000 + "]" * 50_000 + "\n---\n"],
    ids=["alias-bomb", "deeply-nested"],
)
def test_pathological_card_commit_cannot_break_repo_info(
    server: ServerInfo, fresh_repo: Target, card: str
) -> None:
    """A pathological README is refused, or stored without making repo info fail."""
    rid = fresh_repo.repo_id
    before = snapshot(server, rid)
    response = commit(server, rid, ndjson(header(), put_file("README.md", card.encode())))
    if response.status_code == 200:
        info = httpx.get(f"{server.url}/api/models/{rid}", headers=auth(server.alice), timeout=30)
        assert info.status_code == 200, describe(info)
    else:
        refused(response, 400)
        assert snapshot(server, rid) == before
    assert staging_files(server) == []


def test_server_log_has_no_unhandled_errors(server: ServerInfo) -> None:
    """Runs last in the module: nothing above made the server log an unhandled error."""
    assert_log_clean(server)
