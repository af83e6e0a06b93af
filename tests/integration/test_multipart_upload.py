"""LFS multipart uploads with the real client: parts to signed links, ETags, completion."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download

from tests.support.hubs import ServerInfo, start_server

PART = 1024 * 1024


@pytest.fixture(scope="module")
def small_parts_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    root = tmp_path_factory.mktemp("multipart")
    with start_server(
        root, "sqlite", None, multipart_threshold_bytes=2 * PART, multipart_part_bytes=PART
    ) as info:
        yield info


def test_multipart_upload_round_trip(small_parts_server: ServerInfo, tmp_path: Path) -> None:
    server = small_parts_server
    api = HfApi(endpoint=server.url, token=server.alice)
    api.create_repo("alice/parts")
    payload = np.random.default_rng(3).bytes(5 * PART + 12345)
    api.upload_file(path_or_fileobj=payload, path_in_repo="big.bin", repo_id="alice/parts")
    path = hf_hub_download(
        "alice/parts", "big.bin", endpoint=server.url, token=server.alice, cache_dir=tmp_path
    )
    assert Path(path).read_bytes() == payload
    assert list((server.data_dir / "blobs" / "parts").iterdir()) == []


def test_batch_offers_parts_and_refuses_bad_completion(small_parts_server: ServerInfo) -> None:
    server = small_parts_server
    api = HfApi(endpoint=server.url, token=server.alice)
    api.create_repo("alice/parts2")
    data = b"z" * (2 * PART + 1)
    oid = hashlib.sha256(data).hexdigest()
    answer = httpx.post(
        f"{server.url}/alice/parts2.git/info/lfs/objects/batch",
        json={
            "operation": "upload",
            "transfers": ["basic", "multipart"],
            "objects": [{"oid": oid, "size": len(data)}],
        },
        headers={
            "authorization": f"Bearer {server.alice}",
            "accept": "application/vnd.git-lfs+json",
        },
    ).json()
    upload = answer["objects"][0]["actions"]["upload"]
    header = upload["header"]
    assert header["chunk_size"] == str(PART)
    assert sorted(k for k in header if k.isdigit()) == ["1", "2", "3"]
    etags = []
    for number in (1, 2, 3):
        piece = data[(number - 1) * PART : number * PART]
        reply = httpx.put(header[str(number)], content=piece)
        assert reply.status_code == 200
        etags.append(reply.headers["etag"])
    wrong = httpx.post(
        upload["href"], json={"oid": oid, "parts": [{"partNumber": 2, "etag": etags[1]}]}
    )
    assert wrong.status_code == 400
    # A part bigger than announced is refused and leaves nothing behind.
    too_big = httpx.put(header["3"], content=b"z" * 5)
    assert too_big.status_code == 413
    done = httpx.post(
        upload["href"],
        json={"oid": oid, "parts": [{"partNumber": n, "etag": e} for n, e in enumerate(etags, 1)]},
    )
    assert done.status_code == 200, done.text
    api.create_commit(
        "alice/parts2",
        [CommitOperationAdd("z.bin", io.BytesIO(data))],
        commit_message="parts joined",
    )
    got = httpx.get(f"{server.url}/alice/parts2/resolve/main/z.bin")
    assert got.content == data
