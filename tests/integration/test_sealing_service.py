"""The sealing service in process, on SQLite and PostgreSQL: ownership of sealed files, copies,
and a KEK rotation racing a commit."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save

from kaiyuan.bootstrap import Hub
from kaiyuan.core.errors import IntegrityError, InvalidInputError
from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.models import Principal, Scope
from kaiyuan.services.commits import CommitRequest, PutRegularFile
from kaiyuan.services.distribution.sealing import MAGIC, SealedReader
from tests.support.hubs import HubFactory

ALICE = Principal("alice", Scope.WRITE)
BOB = Principal("bob", Scope.WRITE)
WEIGHTS = save({"w": np.arange(64, dtype="float32")})


@pytest.fixture
def hub(hub_factory: HubFactory, backend: str) -> Hub:
    made = hub_factory.make(backend)
    made.accounts.create_user("alice")
    made.accounts.create_user("bob")
    return made


def sealed_repo(hub: Hub, owner: Principal, name: str) -> RepoId:
    repo_id = RepoId(owner.user or "", name)
    hub.repos.create(owner, RepoKind.MODEL, repo_id, private=False)
    hub.sealing.set_policy(owner, RepoKind.MODEL, repo_id, ["*.safetensors"])
    return repo_id


def put(hub: Hub, who: Principal, repo_id: RepoId, path: str, content: bytes) -> Any:
    request = CommitRequest("add", "", [PutRegularFile(path, content)])
    return hub.commits.commit(who, RepoKind.MODEL, repo_id, "main", request)


def stored(hub: Hub, repo_id: RepoId, path: str) -> bytes:
    at = hub.reads.resolve(ALICE, RepoKind.MODEL, repo_id, None)
    return hub.reads.read_small(hub.reads.file(at, path), 10_000_000)


def test_a_sealed_file_is_only_its_repositorys(hub: Hub) -> None:
    mine = sealed_repo(hub, ALICE, "secret")
    put(hub, ALICE, mine, "model.safetensors", WEIGHTS)
    ciphertext = stored(hub, mine, "model.safetensors")
    assert ciphertext.startswith(MAGIC) and WEIGHTS[8:40] not in ciphertext
    # Someone who downloaded the ciphertext cannot make it theirs to release under their
    # own policy, inline or otherwise.
    theirs = sealed_repo(hub, BOB, "copy")
    with pytest.raises(InvalidInputError, match="another repository's sealed file"):
        put(hub, BOB, theirs, "model.safetensors", ciphertext)
    # In a repository without a policy it is an ordinary file: no key is kept for it there.
    plain = RepoId("bob", "plain")
    hub.repos.create(BOB, RepoKind.MODEL, plain, private=False)
    put(hub, BOB, plain, "model.safetensors", ciphertext)
    at = hub.reads.resolve(BOB, RepoKind.MODEL, plain, None)
    copied = hub.reads.file(at, "model.safetensors").sha256
    assert hub.sealing.sealed_among(at.repo, [copied]) == set()
    assert hub.sealing.unseal(copied, at.repo) is None
    assert hub.sealing.listing(BOB, RepoKind.MODEL, plain, None).files == []
    # Its own repository may not copy or move it either: it is sealed for its path.
    with pytest.raises(InvalidInputError, match="cannot be copied or moved"):
        put(hub, ALICE, mine, "v2/model.safetensors", ciphertext)
    put(hub, ALICE, mine, "model.safetensors", ciphertext)  # the same path: allowed


def test_a_rotation_racing_a_commit_never_loses_a_key(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo_id = sealed_repo(hub, ALICE, "race")
    sealing = hub.sealing
    original = sealing.seal_puts

    def rotate_in_between(*args: Any, **kwargs: Any) -> Any:
        made = original(*args, **kwargs)  # keys wrapped with the KEK current now
        sealing.rotate()  # ... which stops being current before the commit records them
        return made

    monkeypatch.setattr(sealing, "seal_puts", rotate_in_between)
    put(hub, ALICE, repo_id, "model.safetensors", WEIGHTS)
    at = hub.reads.resolve(ALICE, RepoKind.MODEL, repo_id, None)
    entry = hub.reads.file(at, "model.safetensors")
    reader = sealing.unseal(entry.sha256, at.repo)
    assert isinstance(reader, SealedReader)
    assert reader.read(0, reader.size) == WEIGHTS  # rewrapped with the new KEK on record

    def rotate_and_retire(*args: Any, **kwargs: Any) -> Any:
        made = original(*args, **kwargs)
        sealing.rotate(retire_after=timedelta(0))  # the wrapping KEK is destroyed at once
        return made

    monkeypatch.setattr(sealing, "seal_puts", rotate_and_retire)
    with pytest.raises(IntegrityError, match="not in the key ring"):
        put(hub, ALICE, repo_id, "other.safetensors", WEIGHTS)  # refused, nothing recorded
    assert [p for p, _ in sealing.listing(ALICE, RepoKind.MODEL, repo_id, None).files] == [
        "model.safetensors"
    ]


def test_leftover_plaintext_is_swept(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    repo_id = sealed_repo(hub, ALICE, "crash")
    # A process that stops between the commit and its clean-up leaves the plaintext behind.
    monkeypatch.setattr(hub.sealing, "forget_plaintexts", lambda *_: None)
    put(hub, ALICE, repo_id, "model.safetensors", WEIGHTS)
    monkeypatch.undo()
    plaintext = hashlib.sha256(WEIGHTS).hexdigest()
    assert hub.blobs.exists(plaintext)
    assert hub.sealing.sweep_plaintexts() == 1  # what `kaiyuan admin gc` runs first
    assert not hub.blobs.exists(plaintext)
    assert hub.sealing.sweep_plaintexts() == 0
    assert stored(hub, repo_id, "model.safetensors").startswith(MAGIC)  # the sealed file stays


def test_nothing_about_another_repositorys_upload_leaks_through_a_commit(hub: Hub) -> None:
    from kaiyuan.services.commits import PutLfsFile

    secret = b"---\nsecret_field: [unclosed\n---\n"
    private = RepoId("alice", "private")
    hub.repos.create(ALICE, RepoKind.MODEL, private, private=True)
    put(hub, ALICE, private, "notes.md", secret)
    known = hashlib.sha256(secret).hexdigest()
    theirs = RepoId("bob", "mine")
    hub.repos.create(BOB, RepoKind.MODEL, theirs, private=False)
    messages = []
    for sha, size in ((known, len(secret)), (known, 1), ("0" * 64, len(secret))):
        request = CommitRequest("x", "", [PutLfsFile("README.md", sha, size)])
        with pytest.raises(InvalidInputError) as refused:
            hub.commits.commit(BOB, RepoKind.MODEL, theirs, "main", request)
        messages.append(refused.value.message.replace(sha, "<sha>"))
    # The same answer whether the content exists, whatever its size: and never its text.
    assert len(set(messages)) == 1 and "not uploaded to bob/mine" in messages[0]


def test_a_sealed_models_fingerprints_are_for_its_namespace(hub: Hub) -> None:
    from kaiyuan.core.errors import AccessDeniedError
    from kaiyuan.services.commits import DeleteFile

    repo_id = sealed_repo(hub, ALICE, "fingerprinted")
    put(hub, ALICE, repo_id, "model.safetensors", WEIGHTS)
    with pytest.raises(AccessDeniedError, match="members"):
        hub.provenance.view(BOB, RepoKind.MODEL, repo_id, None)
    removed = CommitRequest("rm", "", [DeleteFile("model.safetensors")])
    hub.commits.commit(ALICE, RepoKind.MODEL, repo_id, "main", removed)
    # A later revision without the sealed file could show an older revision's fingerprint.
    with pytest.raises(AccessDeniedError, match="members"):
        hub.provenance.view(BOB, RepoKind.MODEL, repo_id, None)
    assert hub.provenance.view(ALICE, RepoKind.MODEL, repo_id, None).repo_id == repo_id


def test_a_failing_plug_in_is_audited_without_its_text(hub: Hub) -> None:
    import base64

    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from kaiyuan.services.distribution.key_release import KeyReleaseService, KeyRequest
    from kaiyuan.services.distribution.keyring import LocalKeyRing
    from kaiyuan.services.trees import TreeCache

    class Broken:
        name = "broken"

        def verify(self, _evidence: object, _report_data: bytes) -> object:
            raise RuntimeError("KMS https://kms.internal:8443 denied role arn:secret")

    repo_id = sealed_repo(hub, ALICE, "audited")
    put(hub, ALICE, repo_id, "model.safetensors", WEIGHTS)
    ring = LocalKeyRing(hub.settings.data_dir / "sealing-keys")
    release = KeyReleaseService(hub.metadata, TreeCache(), ring, Broken())  # type: ignore[arg-type]
    nonce = release.challenge(ALICE, RepoKind.MODEL, repo_id).nonce
    public = X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    with pytest.raises(RuntimeError):
        release.release(
            ALICE, RepoKind.MODEL, repo_id, KeyRequest(public, nonce, evidence={"x": 1})
        )
    [entry] = release.releases(ALICE, RepoKind.MODEL, repo_id)
    assert entry.outcome.value == "refused"
    assert entry.reason == "internal error (RuntimeError); see the hub's log"
    assert base64.b64encode(public)


def test_a_process_with_another_key_ring_will_not_start(hub: Hub) -> None:
    from kaiyuan.core.errors import StorageUnavailableError

    repo_id = sealed_repo(hub, ALICE, "ring")
    hub.sealing.check_keys()  # a fresh ring
    put(hub, ALICE, repo_id, "model.safetensors", WEIGHTS)
    hub.sealing.check_keys()
    for key in (hub.settings.data_dir / "sealing-keys").glob("kek-*.key"):
        key.unlink()  # as if this process had been given another ring
    with pytest.raises(StorageUnavailableError, match="KAIYUAN_SEALING_KEY_DIR"):
        hub.sealing.check_keys()
