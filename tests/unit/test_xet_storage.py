"""Xet storage over real backends (SQLite and PostgreSQL, local blobs): dedup, accounting, GC."""

from __future__ import annotations

import hashlib
import os
import random
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import delete

from kaiyuan.bootstrap import Hub
from kaiyuan.core.errors import (
    AccessDeniedError,
    AuthenticationError,
    BlobNotFoundError,
    ConflictError,
    RepoNotFoundError,
)
from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.models import Principal, Scope
from kaiyuan.services.clock import utc_now
from kaiyuan.services.repos import DEFAULT_GITATTRIBUTES
from kaiyuan.services.xet.compression import decode_records
from kaiyuan.services.xet.ingest import ChunkCompressor, _XorbAssembly
from kaiyuan.services.xet.packing import XorbBuilder
from kaiyuan.storage.sql import tables as t
from kaiyuan.storage.sql.store import SqlMetadataStore
from tests.support import xetwire
from tests.support.hubs import HubFactory

MODEL = RepoKind.MODEL
MiB = 1 << 20


@pytest.fixture
def hub(hub_factory: HubFactory, backend: str) -> Hub:
    built = hub_factory.make(backend)
    built.accounts.create_user("alice")
    built.accounts.create_user("bob")
    built.accounts.create_org("acme", ["alice"])
    return built


def who(hub: Hub, user: str) -> Principal:
    return hub.accounts.authenticate(hub.accounts.create_token(user, Scope.WRITE))


def new_repo(hub: Hub, principal: Principal, name: str) -> RepoId:
    repo_id = RepoId.parse(name)
    hub.repos.create(principal, MODEL, repo_id, private=False)
    return repo_id


def xet_upload(hub: Hub, principal: Principal, repo_id: RepoId, data: bytes) -> xetwire.Upload:
    """What hf_xet does: a xorb, then the shard naming the file."""
    issued = hub.cas.issue_token(principal, MODEL, repo_id, "main", write=True)
    grant = hub.cas.check_token(issued.token, write=True)
    upload = xetwire.plan_upload(data)
    hub.xet_ingest.receive_xorb(upload.xorb_hex, [upload.xorb])
    hub.cas.register_shard(grant, upload.shard)
    return upload


def lfs_upload(hub: Hub, principal: Principal, repo_id: RepoId, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    (plan,) = hub.uploads.plan(principal, MODEL, repo_id, [(sha, len(data))])
    assert plan.grant is not None
    writer = hub.uploads.receiver(plan.grant)
    writer.write(data)
    hub.uploads.finish(plan.grant, writer)
    return sha


def read(hub: Hub, sha: str) -> bytes:
    return b"".join(hub.contents.open(sha))


@pytest.fixture
def family() -> dict[str, bytes]:
    rng = random.Random(5)
    base = rng.randbytes(6 * MiB)
    return {
        "base": base,
        "derived": base[: 2 * MiB] + rng.randbytes(300_000) + base[2 * MiB :],
        "other": rng.randbytes(2 * MiB),
    }


def test_xet_and_lfs_uploads_share_chunks(hub: Hub, family: dict[str, bytes]) -> None:
    alice = who(hub, "alice")
    base_repo = new_repo(hub, alice, "acme/base")
    tuned_repo = new_repo(hub, alice, "alice/tuned")
    base = xet_upload(hub, alice, base_repo, family["base"])
    after_base = hub.usage.hub()
    derived = lfs_upload(hub, alice, tuned_repo, family["derived"])  # chunked on the server
    after = hub.usage.hub()
    assert read(hub, base.sha256) == family["base"]
    assert read(hub, derived) == family["derived"]
    added = after.physical_bytes - after_base.physical_bytes
    assert added < 600_000, added  # the inserted 300 kB and the chunks around it
    assert hub.blobs.exists(derived) is False  # the whole upload became chunks
    # A client xorb that repeats known chunks stores only its new ones.
    again = xet_upload(hub, alice, tuned_repo, family["derived"][: 4 * MiB] + b"tail")
    assert hub.usage.hub().physical_bytes - after.physical_bytes < 200_000
    assert read(hub, again.sha256) == family["derived"][: 4 * MiB] + b"tail"


def test_usage_per_repo_namespace_and_hub(hub: Hub, family: dict[str, bytes]) -> None:
    alice, bob = who(hub, "alice"), who(hub, "bob")
    base_repo = new_repo(hub, alice, "acme/base")
    tuned_repo = new_repo(hub, alice, "alice/tuned")
    xet_upload(hub, alice, base_repo, family["base"])
    xet_upload(hub, alice, tuned_repo, family["derived"])
    base = hub.usage.repo(alice, MODEL, base_repo)
    tuned = hub.usage.repo(alice, MODEL, tuned_repo)
    assert base.files == 2  # the weights and the initial .gitattributes
    assert len(family["base"]) < base.logical_bytes < len(family["base"]) + 2000
    assert base.stored_bytes <= base.logical_bytes
    assert tuned.logical_bytes >= len(family["derived"])
    total = hub.usage.hub()
    shared = len(DEFAULT_GITATTRIBUTES)  # both repositories hold the same .gitattributes
    assert total.held.logical_bytes == base.logical_bytes + tuned.logical_bytes - shared
    # shared chunks are stored once: the hub needs far less than the two repos alone
    assert total.held.stored_bytes < base.stored_bytes + tuned.stored_bytes - 5 * MiB
    assert hub.usage.namespace(alice, "acme").logical_bytes == base.logical_bytes
    with pytest.raises(AccessDeniedError):
        hub.usage.namespace(bob, "acme")
    with pytest.raises(AuthenticationError):
        hub.usage.namespace(Principal(), "acme")
    hub.repos.set_private(alice, MODEL, tuned_repo, True)
    with pytest.raises(RepoNotFoundError):
        hub.usage.repo(bob, MODEL, tuned_repo)


def test_gc_keeps_what_repositories_hold_and_frees_the_rest(
    hub: Hub, family: dict[str, bytes]
) -> None:
    alice = who(hub, "alice")
    base_repo = new_repo(hub, alice, "acme/base")
    other_repo = new_repo(hub, alice, "alice/other")
    tuned_repo = new_repo(hub, alice, "alice/tuned")
    base = xet_upload(hub, alice, base_repo, family["base"])
    other = lfs_upload(hub, alice, other_repo, family["other"])
    tuned = xet_upload(hub, alice, tuned_repo, family["derived"])
    before = hub.usage.hub()
    # Nothing is garbage yet, and young data is never touched.
    assert hub.garbage.collect(timedelta(0)).bytes_freed == 0
    hub.repos.delete(alice, MODEL, other_repo)
    hub.repos.delete(alice, MODEL, tuned_repo)
    young = hub.garbage.collect(timedelta(hours=1))
    assert (young.contents, young.xorbs, young.blobs) == (0, 0, 0)
    dry = hub.garbage.collect(timedelta(0), dry_run=True)
    assert dry.bytes_freed > 2 * MiB
    assert hub.usage.hub().physical_bytes == before.physical_bytes  # nothing deleted
    done = hub.garbage.collect(timedelta(0))
    assert done.bytes_freed == dry.bytes_freed
    assert done.contents >= 2
    after = hub.usage.hub()
    assert after.physical_bytes == before.physical_bytes - done.bytes_freed
    assert after.unreferenced_bytes == 0
    # The base is intact, though the deleted derivative shared most of its chunks.
    assert read(hub, base.sha256) == family["base"]
    for gone in (other, tuned.sha256):
        with pytest.raises(BlobNotFoundError):
            read(hub, gone)
    assert hub.garbage.collect(timedelta(0)).bytes_freed == 0  # idempotent


def test_gc_removes_orphan_blobs_only_when_old(hub: Hub) -> None:
    writer = hub.blobs.writer()
    writer.write(os.urandom(1000))
    orphan = writer.commit().sha256
    assert hub.garbage.collect(timedelta(hours=1)).blobs == 0
    assert hub.blobs.exists(orphan)
    report = hub.garbage.collect(timedelta(0))
    assert report.blob_digests == [orphan]
    assert not hub.blobs.exists(orphan)


def bf16_weights(count: int, seed: int) -> bytes:
    values = np.random.default_rng(seed).standard_normal(count, dtype=np.float32) * 0.02
    return (values.view(np.uint32) >> 16).astype(np.uint16).tobytes()


def test_compressible_chunks_are_stored_compressed_and_read_back(hub: Hub) -> None:
    alice = who(hub, "alice")
    repo = new_repo(hub, alice, "alice/bf16")
    weights = bf16_weights(2_000_000, 3)  # 4 MB of bf16: byte grouping + LZ4 pays
    sha = lfs_upload(hub, alice, repo, weights)
    stored = hub.usage.hub().physical_bytes
    assert stored < 0.92 * len(weights), stored
    assert read(hub, sha) == weights
    rng = random.Random(4)
    for _ in range(20):
        start = rng.randrange(len(weights))
        end = min(len(weights), start + rng.randrange(1, 300_000))
        assert b"".join(hub.contents.open(sha, start, end)) == weights[start:end]
    assert hub.contents.local_segments(hub.contents.segments(sha)) is None  # decoded, not sent
    # A client's compressed xorb for a derivative reuses the stored (compressed) chunks.
    derived = weights[:1_500_000] + bf16_weights(50_000, 9) + weights[1_500_000:]
    upload = xet_upload(hub, alice, repo, derived)
    assert hub.usage.hub().physical_bytes - stored < 400_000
    assert read(hub, upload.sha256) == derived
    issued = hub.cas.issue_token(alice, MODEL, repo, "main", write=False)
    grant = hub.cas.check_token(issued.token, write=False)
    answer = hub.cas.reconstruction(grant, upload.file_hex, None)
    assert answer is not None
    out = bytearray()
    for term, _ in answer.terms:
        fetch = next(
            f for f in answer.fetches if f.xorb_hash == term.xorb_hash and f.start == term.start
        )
        expires = grant.expires
        signature = hub.cas.fetch_signature(fetch, expires)
        _, body = hub.cas.read_xorb_range(
            fetch.xorb_hash, fetch.first, fetch.last, expires, signature
        )
        out += b"".join(decode_records(body))
    assert bytes(out) == derived


def test_a_writer_that_reuses_collected_chunks_is_refused_not_corrupted(
    hub: Hub, family: dict[str, bytes]
) -> None:
    """GC racing an upload: the upload looked chunks up, GC removed them, the upload then
    records its xorb. The record is refused (409, retry) instead of pointing at nothing."""
    alice = who(hub, "alice")
    old_repo = new_repo(hub, alice, "alice/old")
    xet_upload(hub, alice, old_repo, family["base"])
    hub.repos.delete(alice, MODEL, old_repo)  # its chunks are garbage now
    upload = xetwire.plan_upload(family["base"][: 3 * MiB])
    builder = XorbBuilder(hub.blobs)
    assembly = _XorbAssembly(hub.metadata, hub.contents.xorbs, builder, ChunkCompressor("none"))
    for chunk in upload.chunks:
        assembly.add(chunk, None)
    assembly.flush()  # all but the last chunk are found in the old xorb: pointed at, not stored
    assert builder.pack_size < 200_000
    assert hub.garbage.collect(timedelta(0)).bytes_freed > 0  # the old pack is gone
    stored = builder.close()
    with pytest.raises(ConflictError), hub.metadata.session(write=True) as session:
        session.add_xorb(stored, utc_now())
    # a retry stores the chunks afresh and reads back
    repo = new_repo(hub, alice, "alice/new")
    again = xet_upload(hub, alice, repo, family["base"][: 3 * MiB])
    assert read(hub, again.sha256) == family["base"][: 3 * MiB]


def test_fsck_is_clean_then_finds_what_was_broken(hub: Hub, family: dict[str, bytes]) -> None:
    alice = who(hub, "alice")
    repo = new_repo(hub, alice, "alice/fsck")
    upload = xet_upload(hub, alice, repo, family["base"])
    small = lfs_upload(hub, alice, repo, b"")  # empty content stays a whole blob
    report = hub.fsck.check(verify_data=True)
    assert report.clean, dict(report.problems)
    assert report.checked["contents"] >= 3
    # A pack and a whole blob vanish: the xorb, the file that reads it and the blob are reported.
    pack = hub.contents.segments(upload.sha256)[0].blob_sha256
    hub.blobs.delete(pack)
    hub.blobs.delete(small)
    broken = hub.fsck.check(verify_data=True)
    assert broken.counts["xorb-missing-data"] >= 1
    assert broken.counts["content-missing"] == 1
    assert broken.counts["content-corrupt"] >= 1
    assert not broken.clean


def test_fsck_repairs_index_rows_that_point_at_nothing(hub: Hub, family: dict[str, bytes]) -> None:
    alice = who(hub, "alice")
    repo = new_repo(hub, alice, "alice/index")
    upload = xet_upload(hub, alice, repo, family["other"])
    store = hub.metadata
    assert isinstance(store, SqlMetadataStore)
    with store.engine.begin() as connection:  # a xorb record lost by hand, its index kept
        connection.execute(delete(t.xorbs).where(t.xorbs.c.xorb_hash == upload.xorb_hex))
    found = hub.fsck.check()
    assert found.counts["index-dangling"] == 1
    assert found.counts["content-broken"] == 1
    repaired = hub.fsck.check(repair=True)
    assert repaired.repaired["index-dangling"] > 0
    again = hub.fsck.check()
    assert "index-dangling" not in again.counts
    assert again.counts["content-broken"] == 1  # lost data is reported, not papered over
