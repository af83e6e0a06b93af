"""The Xet CAS under attack: bad tokens, forged xorbs and shards, other people's files.

Every refusal must be a clear 4xx and leave nothing behind: no xorb record, no pack blob, no
file record, no staging file.
"""

from __future__ import annotations

import os
import struct
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from huggingface_hub import HfApi

from kaiyuan.services.xet import hashing
from kaiyuan.services.xet.compression import decode_records
from tests.support import xetwire
from tests.support.hostile import Target, assert_log_clean, auth, refused, staging_files
from tests.support.hubs import ServerInfo
from tests.support.xetstats import pack_bytes, xorb_bytes


def token(server: ServerInfo, repo_id: str, kind: str, user_token: str | None) -> httpx.Response:
    return httpx.get(
        f"{server.url}/api/models/{repo_id}/xet-{kind}-token/main", headers=auth(user_token)
    )


def cas(server: ServerInfo, repo_id: str, kind: str = "write") -> tuple[str, dict[str, str]]:
    answer = token(server, repo_id, kind, server.alice)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert answer.headers["x-xet-access-token"] == body["accessToken"]
    assert answer.headers["x-xet-cas-url"] == body["casUrl"]
    return body["casUrl"], auth(body["accessToken"])


def put_xorb(url: str, headers: dict[str, str], name: str, body: bytes) -> httpx.Response:
    return httpx.post(f"{url}/v1/xorbs/default/{name}", content=body, headers=headers)


class Nothing:
    """Asserts a block leaves the CAS exactly as it was."""

    def __init__(self, server: ServerInfo) -> None:
        self.server = server

    def __enter__(self) -> None:
        self.before = (xorb_bytes(self.server), pack_bytes(self.server))

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            assert (xorb_bytes(self.server), pack_bytes(self.server)) == self.before
            assert staging_files(self.server) == []


@pytest.fixture(scope="module")
def uploaded(server: ServerInfo, private_repo: Target) -> xetwire.Upload:
    """A file stored through the CAS for alice's private repository."""
    url, headers = cas(server, private_repo.repo_id)
    upload = xetwire.plan_upload(os.urandom(400_000) + bytes(100_000), scheme=2)
    answer = put_xorb(url, headers, upload.xorb_hex, upload.xorb)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"was_inserted": True}
    again = put_xorb(url, headers, upload.xorb_hex, upload.xorb)
    assert again.json() == {"was_inserted": False}
    shard = httpx.post(f"{url}/v1/shards", content=upload.shard, headers=headers)
    assert shard.status_code == 200, shard.text
    return upload


def test_tokens_follow_repository_access(
    server: ServerInfo, repo: Target, private_repo: Target
) -> None:
    refused(token(server, repo.repo_id, "write", None), 401)
    refused(token(server, repo.repo_id, "write", server.bob), 403)
    refused(token(server, private_repo.repo_id, "read", server.bob), {404: "RepoNotFound"})
    refused(token(server, private_repo.repo_id, "read", None), {401: None, 404: "RepoNotFound"})
    no_branch = httpx.get(
        f"{server.url}/api/models/{repo.repo_id}/xet-read-token/no-such-branch",
        headers=auth(server.alice),
    )
    refused(no_branch, {404: "RevisionNotFound"})
    assert token(server, repo.repo_id, "read", None).status_code == 200  # public: anyone reads


@pytest.mark.parametrize(
    "credential", [None, "", "kyx1", "kyx1.1.w.9999999999.deadbeef", "Bearer x", "ky_notxet"]
)
def test_bad_cas_tokens_are_refused(
    server: ServerInfo, repo: Target, credential: str | None
) -> None:
    url, _ = cas(server, repo.repo_id)
    headers = {"Authorization": f"Bearer {credential}"} if credential else {}
    with Nothing(server):
        refused(httpx.post(f"{url}/v1/shards", content=b"x", headers=headers), 401)


def test_a_forged_token_signature_is_refused(server: ServerInfo, repo: Target) -> None:
    url, headers = cas(server, repo.repo_id, "read")
    prefix, pk, _, expires, signature = headers["Authorization"].split(" ")[1].split(".")
    forged = f"{prefix}.{pk}.w.{expires}.{signature}"  # promote a read token to write
    with Nothing(server):
        refused(httpx.post(f"{url}/v1/shards", content=b"x", headers=auth(forged)), 401)
        refused(httpx.post(f"{url}/v1/shards", content=b"x", headers=headers), 403)


def test_xorb_whose_hash_does_not_match_is_refused(server: ServerInfo, repo: Target) -> None:
    url, headers = cas(server, repo.repo_id)
    upload = xetwire.plan_upload(os.urandom(200_000))
    wrong = hashing.to_hex(os.urandom(32))
    with Nothing(server):
        refused(put_xorb(url, headers, wrong, upload.xorb), 400)


@pytest.mark.parametrize(
    "cut", [1, 7, 100, -1], ids=["one-byte", "in-header", "in-body", "last-byte-missing"]
)
def test_truncated_xorb_is_refused(server: ServerInfo, repo: Target, cut: int) -> None:
    url, headers = cas(server, repo.repo_id)
    upload = xetwire.plan_upload(os.urandom(150_000))
    body = upload.xorb[:cut]
    with Nothing(server):
        refused(put_xorb(url, headers, upload.xorb_hex, body), 400)


@pytest.mark.parametrize(
    ("name", "prefix", "body"),
    [
        ("0" * 64, "default", b""),
        ("0" * 64, "default", os.urandom(4096)),
        ("not-a-hash", "default", b"x"),
        ("A" * 64, "default", b"x"),
        ("0" * 64, "other", b"x"),
    ],
    ids=["empty", "garbage", "bad-name", "uppercase", "prefix"],
)
def test_garbage_xorbs_are_refused(
    server: ServerInfo, repo: Target, name: str, prefix: str, body: bytes
) -> None:
    url, headers = cas(server, repo.repo_id)
    with Nothing(server):
        answer = httpx.post(f"{url}/v1/xorbs/{prefix}/{name}", content=body, headers=headers)
        refused(answer, 400)


def test_xorb_larger_than_the_limit_is_refused(server: ServerInfo, repo: Target) -> None:
    url, headers = cas(server, repo.repo_id)
    with Nothing(server):
        answer = httpx.post(
            f"{url}/v1/xorbs/default/{'0' * 64}",
            content=iter([bytes(8 << 20)] * 10),  # 80 MiB, streamed without a length
            headers=headers,
        )
        refused(answer, 413)


def test_shard_referencing_an_unknown_xorb_is_refused(server: ServerInfo, repo: Target) -> None:
    url, headers = cas(server, repo.repo_id)
    upload = xetwire.plan_upload(os.urandom(120_000))  # its xorb is never sent
    with Nothing(server):
        refused(httpx.post(f"{url}/v1/shards", content=upload.shard, headers=headers), 400)


def _shard_with(upload: xetwire.Upload, **change: object) -> bytes:
    chunks = upload.chunks
    xorb = hashing.from_hex(upload.xorb_hex)
    file_hash = change.get("file_hash", hashing.from_hex(upload.file_hex))
    length = change.get("length", len(upload.data))
    proof = change.get("proof", hashing.range_hash([hashing.chunk_hash(c) for c in chunks]))
    sha = change.get("sha256", hashing.from_hex(upload.sha256))
    end = change.get("end", len(chunks))
    entry = xetwire.file_entry(file_hash, [(xorb, 0, end, length)], [proof], sha)  # type: ignore[list-item, arg-type]
    return xetwire.shard_bytes([entry], [])


@pytest.mark.parametrize(
    "change",
    [
        {"file_hash": os.urandom(32)},
        {"length": 1},
        {"proof": os.urandom(32)},
        {"sha256": os.urandom(32)},
        {"end": 10_000},
    ],
    ids=["file-hash", "term-length", "verification-hash", "sha256", "chunk-range"],
)
def test_shard_that_lies_about_a_stored_xorb_is_refused(
    server: ServerInfo, private_repo: Target, uploaded: xetwire.Upload, change: dict[str, object]
) -> None:
    url, headers = cas(server, private_repo.repo_id)
    with Nothing(server):
        answer = httpx.post(
            f"{url}/v1/shards", content=_shard_with(uploaded, **change), headers=headers
        )
        refused(answer, 400)


def test_shard_without_verification_entries_is_refused(
    server: ServerInfo, private_repo: Target, uploaded: xetwire.Upload
) -> None:
    url, headers = cas(server, private_repo.repo_id)
    entry = xetwire.file_entry(
        hashing.from_hex(uploaded.file_hex),
        [(hashing.from_hex(uploaded.xorb_hex), 0, len(uploaded.chunks), len(uploaded.data))],
        None,
        None,
    )
    refused(
        httpx.post(f"{url}/v1/shards", content=xetwire.shard_bytes([entry], []), headers=headers),
        400,
    )


def test_reconstruction_of_another_private_repository_is_refused(
    server: ServerInfo, repo: Target, private_repo: Target, uploaded: xetwire.Upload
) -> None:
    # bob's own repository gives him a valid read token, but not for alice's private file
    bob_repo = f"bob/{private_repo.repo_id.split('/')[1]}-b"
    HfApi(endpoint=server.url, token=server.bob).create_repo(bob_repo, exist_ok=True)
    answer = token(server, bob_repo, "read", server.bob)
    headers = auth(answer.json()["accessToken"])
    url = answer.json()["casUrl"]
    refused(httpx.get(f"{url}/v1/reconstructions/{uploaded.file_hex}", headers=headers), 404)
    # alice's public repository does not hold it either: tokens are per repository
    url, headers = cas(server, repo.repo_id, "read")
    refused(httpx.get(f"{url}/v1/reconstructions/{uploaded.file_hex}", headers=headers), 404)


def test_reconstruction_and_signed_xorb_links(
    server: ServerInfo, private_repo: Target, uploaded: xetwire.Upload
) -> None:
    url, headers = cas(server, private_repo.repo_id, "read")
    answer = httpx.get(f"{url}/v1/reconstructions/{uploaded.file_hex}", headers=headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    (term,) = body["terms"]
    assert term["unpacked_length"] == len(uploaded.data)
    (fetch,) = body["fetch_info"][term["hash"]]
    span = fetch["url_range"]
    got = httpx.get(fetch["url"], headers={"Range": f"bytes={span['start']}-{span['end']}"})
    assert got.status_code == 206
    # the hub serves chunks in the xorb format: they decode to the bytes uploaded
    assert b"".join(decode_records([got.content])) == uploaded.data
    parts = urlsplit(fetch["url"])
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    tampered = {**query, "last": str(int(query["last"]) - 1)}
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    refused(httpx.get(f"{base}?{urlencode(tampered)}"), 403)
    refused(httpx.get(f"{base}?{urlencode({**query, 'exp': '1'})}"), 403)
    wrong_range = {"Range": f"bytes=0-{span['end'] - 1}"}
    refused(httpx.get(fetch["url"], headers=wrong_range), 400)
    past = {**headers, "Range": f"bytes={len(uploaded.data)}-"}
    assert (
        httpx.get(f"{url}/v1/reconstructions/{uploaded.file_hex}", headers=past).status_code == 416
    )
    middle = {**headers, "Range": "bytes=100000-100099"}
    partial = httpx.get(f"{url}/v1/reconstructions/{uploaded.file_hex}", headers=middle).json()
    assert partial["offset_into_first_range"] > 0


def test_dedup_query(server: ServerInfo, private_repo: Target, uploaded: xetwire.Upload) -> None:
    url, headers = cas(server, private_repo.repo_id, "read")
    first = hashing.to_hex(hashing.chunk_hash(uploaded.chunks[0]))
    answer = httpx.get(f"{url}/v1/chunks/default/{first}", headers=headers)
    assert answer.status_code == 200
    footer = answer.content[-200:]
    key = footer[72:104]
    assert key != bytes(32)
    assert hashing.keyed(hashing.chunk_hash(uploaded.chunks[0]), key) in answer.content
    assert hashing.chunk_hash(uploaded.chunks[0]) not in answer.content  # hashes stay hidden
    assert struct.unpack_from("<Q", footer, 192)[0] == len(answer.content) - 200
    unknown = hashing.to_hex(os.urandom(32))
    assert httpx.get(f"{url}/v1/chunks/default/{unknown}", headers=headers).status_code == 404
    refused(httpx.get(f"{url}/v1/chunks/default/xyz", headers=headers), 400)


def test_server_log_is_clean(server: ServerInfo) -> None:
    assert_log_clean(server)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/storage/spaces/alice/x", 400),
        ("/api/storage/models/alice/%2E%2E", 400),
        ("/api/storage/models/alice/no-such-repo", 404),
        ("/api/storage/models/a%00b/c", 400),
        ("/api/storage/" + "n" * 500, 403),
        ("/api/storage/acme/extra", 404),
    ],
)
def test_storage_api_refuses_garbage(server: ServerInfo, path: str, status: int) -> None:
    answer = httpx.get(f"{server.url}{path}", headers=auth(server.bob))
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]
