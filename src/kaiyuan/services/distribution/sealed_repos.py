"""Sealed repositories: the policy, sealing files as they are committed, and the kept keys.

A repository's sealing policy names file patterns. A commit that puts a matching file stores
it sealed: the plaintext (already scanned) is encrypted into a new blob, the commit names the
ciphertext instead, the data key is kept only wrapped by the hub's KEK and owned by this
repository, and the plaintext upload is forgotten and deleted. Downloads then serve the
ciphertext through the normal protocol to anyone who may read the repository; keys go only
through key release (key_release.py). The hub's own readers unseal in memory (`unseal`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import timedelta

from kaiyuan.core.errors import (
    BlobNotFoundError,
    InvalidInputError,
    StorageUnavailableError,
)
from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.models import BlobInfo, Principal, Repo
from kaiyuan.core.ports import BlobStore, MetadataSession, MetadataStore
from kaiyuan.core.scanning import FileScan
from kaiyuan.core.sealing import (
    KeyEncryptionKeys,
    SealedFile,
    SealingPolicy,
    checked_policy,
)
from kaiyuan.services import access, revisions, trees
from kaiyuan.services.clock import Clock, utc_now
from kaiyuan.services.commits import Operation, PutLfsFile, SealedPuts
from kaiyuan.services.contents import ContentStore
from kaiyuan.services.distribution.sealing import (
    SealedReader,
    key_binding,
    new_data_key,
    seal,
)

RETIRE_AFTER = timedelta(hours=1)
_SEALED_FINDING = "sealed: the verdict on its plaintext, scanned before sealing"


@dataclass(frozen=True, slots=True)
class SealedListing:
    commit: str
    policy: SealingPolicy | None
    files: list[tuple[str, SealedFile]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Rotation:
    kek_id: str
    rewrapped: int
    retired: list[str]


class SealingService:
    def __init__(
        self,
        store: MetadataStore,
        blobs: BlobStore,
        contents: ContentStore,
        cache: trees.TreeCache,
        keys: KeyEncryptionKeys,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._contents = contents
        self._cache = cache
        self._keys = keys
        self._clock = clock

    # --- policy -----------------------------------------------------------------------------
    def policy(self, principal: Principal, kind: RepoKind, repo_id: RepoId) -> SealingPolicy | None:
        with self._store.session() as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            return session.sealing_policy(repo)

    def set_policy(
        self,
        principal: Principal,
        kind: RepoKind,
        repo_id: RepoId,
        patterns: object,
        attestation: object = None,
        allowed: object = None,
    ) -> SealingPolicy:
        """Seal files matching `patterns` from the next commit on.

        Files committed before stay as they are. A policy cannot be removed: sealed files stay
        sealed.
        """
        parts = checked_policy(patterns, attestation, allowed)
        with self._store.session(write=True) as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            access.require_write(principal, repo_id.namespace)
            policy = SealingPolicy(
                *parts, updated_at=self._clock(), updated_by=principal.user or ""
            )
            session.set_sealing_policy(repo, policy)
            return policy

    # --- sealing as files are committed -------------------------------------------------------
    def seal_puts(
        self,
        kind: RepoKind,
        repo_id: RepoId,
        operations: list[Operation],
        blobs: dict[int, BlobInfo],
    ) -> SealedPuts | None:
        """Seal the put operations the repository's policy names (None: nothing to seal).

        Runs after the scanner has judged the plaintext and before the commit's transaction;
        the ciphertext blobs are written here, recorded by `record` inside the transaction.
        """
        with self._store.session() as session:
            repo = session.get_repo(kind, repo_id)
            policy = session.sealing_policy(repo) if repo is not None else None
            already = session.sealed_files(b.sha256 for b in blobs.values())
        if policy is None or repo is None:
            return None
        ops, sealed_blobs = list(operations), dict(blobs)
        records: list[SealedFile] = []
        plaintexts: set[str] = set()
        for index, blob in blobs.items():
            path = ops[index].path
            found = already.get(blob.sha256)
            if found is not None:
                _check_recommitted(found, repo, path)
                continue  # this repository's sealed file, committed again at its own path
            if not policy.seals(path):
                continue
            record, info = self._seal_one(repo, path, blob)
            records.append(record)
            plaintexts.add(blob.sha256)
            ops[index] = PutLfsFile(path, info.sha256, info.size)
            sealed_blobs[index] = info
        if not records:
            return None
        return SealedPuts(ops, sealed_blobs, records, frozenset(plaintexts))

    def record(self, session: MetadataSession, repo: Repo, sealed: SealedPuts) -> None:
        """Inside the commit's transaction: keep the wrapped keys, hold the ciphertexts.

        A key wrapped before a KEK rotation is rewrapped with the current KEK here; if its KEK
        was already retired, the commit is refused (nothing is lost: the plaintext upload stays
        until the commit succeeds).
        """
        verdicts = session.scans(r.plaintext_sha256 for r in sealed.records)
        current = self._keys.current()
        for record in sealed.records:
            if record.key.kek_id != current:
                binding = key_binding(record.file_id, record.path)
                fresh = self._keys.wrap(self._keys.unwrap(record.key, binding), binding)
                record = replace(record, key=fresh)  # noqa: PLW2901 - the rewrapped record
            session.add_sealed_file(record)
            session.add_repo_object(repo.pk, record.sha256)
            found = verdicts.get(record.plaintext_sha256)
            if found is not None:
                # The scanner cannot see inside a sealed file: it carries the plaintext's verdict.
                session.save_scan(
                    FileScan(
                        record.sha256,
                        found.status,
                        found.format,
                        (_SEALED_FINDING, *found.findings),
                        found.imports,
                        found.scanner,
                        record.sealed_at,
                    )
                )

    def forget_plaintexts(self, kind: RepoKind, repo_id: RepoId, sealed: SealedPuts) -> None:
        """After the commit: drop the plaintext uploads no tree names and delete their bytes.

        A plaintext stored as Xet chunks loses its record here; the chunks go at the next
        garbage collection (`kaiyuan admin gc`).
        """
        doomed: list[str] = []
        with self._store.session(write=True) as session:
            repo = session.get_repo(kind, repo_id)
            if repo is None:
                return
            session.lock_for_collection()
            for sha256 in sorted(sealed.plaintexts):
                if session.forget_upload(repo.pk, sha256):
                    session.delete_contents({sha256})
                    doomed.append(sha256)
        for sha256 in doomed:
            with contextlib.suppress(BlobNotFoundError):
                self._blobs.delete(sha256)

    def _seal_one(self, repo: Repo, path: str, blob: BlobInfo) -> tuple[SealedFile, BlobInfo]:
        data_key = new_data_key()
        writer = self._blobs.writer()
        try:
            with self._contents.reader(blob.sha256, blob.size) as source:
                header = seal(source, blob.size, writer, data_key, path)
            info = writer.commit(None, header.sealed_size)
        finally:
            writer.abort()
        wrapped = self._keys.wrap(data_key, key_binding(header.file_id, path))
        record = SealedFile(
            info.sha256,
            repo.pk,
            header.file_id,
            path,
            blob.sha256,
            blob.size,
            wrapped,
            self._clock(),
        )
        return record, info

    def sealed_among(self, repo: Repo, sha256s: Iterable[str]) -> set[str]:
        """Which of these contents are files the repository sealed."""
        with self._store.session() as session:
            return set(session.sealed_files(sha256s, repo))

    def unseal(self, sha256: str, repo: Repo | None = None) -> SealedReader | None:
        """The plaintext of a sealed content, or None when it is not sealed (by `repo`).

        For the hub's own readers (the scanner, the fingerprint worker), in memory.
        """
        with self._store.session() as session:
            found = session.sealed_files([sha256], repo).get(sha256)
        if found is None:
            return None
        data_key = self._keys.unwrap(found.key, key_binding(found.file_id, found.path))
        size = self._contents.stat(sha256).size
        contents = self._contents

        def read_at(offset: int, length: int) -> bytes:
            return b"".join(contents.open(sha256, offset, offset + length))

        return SealedReader(read_at, size, data_key, found.path)

    # --- what is sealed ---------------------------------------------------------------------
    def listing(
        self, principal: Principal, kind: RepoKind, repo_id: RepoId, revision: str | None
    ) -> SealedListing:
        """The sealed files of a revision (path order) and the repository's policy."""
        with self._store.session() as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            commit = revisions.resolve(session, repo, revision or repo.default_branch)
            files = trees.flatten(session, self._cache, commit.tree)
            known = session.sealed_files((e.sha256 for e in files.values() if e.lfs), repo)
            found = [
                (path, known[entry.sha256])
                for path, entry in sorted(files.items())
                if entry.sha256 in known
            ]
            return SealedListing(commit.sha, session.sealing_policy(repo), found)

    def check_keys(self) -> None:
        """StorageUnavailable when the local key ring lacks a KEK that kept keys are wrapped with.

        A process given another key ring than the others (its own data directory, no shared
        `KAIYUAN_SEALING_KEY_DIR`) would otherwise fail every key release it serves. `kaiyuan
        serve` runs this at start; a KMS answers for itself.
        """
        ids = getattr(self._keys, "ids", None)
        if ids is None:
            return
        with self._store.session() as session:
            missing = sorted(session.kek_ids_in_use() - set(ids()))
        if missing:
            raise StorageUnavailableError(
                f"the key ring lacks {len(missing)} KEK(s) sealed files use ({missing[0]}…): "
                "give every process the same KAIYUAN_SEALING_KEY_DIR (or a KMS)"
            )

    # --- key rotation -----------------------------------------------------------------------
    def rotate(self, retire_after: timedelta = RETIRE_AFTER) -> Rotation:
        """A new current KEK; every kept key rewrapped with it; old KEKs no key uses retired.

        A KEK is retired only once it has not been current for `retire_after`: a commit that
        wrapped a key just before the rotation may still be on its way (it rewraps on record).
        """
        kek_id = self._keys.rotate()
        with self._store.session() as session:
            stale = session.sealed_files_wrapped_by(session.kek_ids_in_use() - {kek_id})
        rewrapped = 0
        for record in stale:
            binding = key_binding(record.file_id, record.path)
            fresh = self._keys.wrap(self._keys.unwrap(record.key, binding), binding)
            with self._store.session(write=True) as session:
                rewrapped += session.rewrap_sealed_file(record.sha256, record.key, fresh)
        with self._store.session() as session:
            in_use = session.kek_ids_in_use()
        return Rotation(kek_id, rewrapped, self._keys.retire(in_use, retire_after))

    def sweep_plaintexts(self) -> int:
        """Forget and delete plaintext uploads of sealed files that a commit left behind.

        That happens when a process stops between a sealed commit and its clean-up; how many
        were deleted.
        """
        with self._store.session() as session:
            records = session.sealed_files_wrapped_by(None)
        doomed: list[str] = []
        with self._store.session(write=True) as session:
            session.lock_for_collection()
            for record in records:
                if session.forget_upload(record.repo_pk, record.plaintext_sha256):
                    session.delete_contents({record.plaintext_sha256})
                    doomed.append(record.plaintext_sha256)
        deleted = 0
        for sha256 in doomed:
            if self._blobs.exists(sha256):
                with contextlib.suppress(BlobNotFoundError):
                    self._blobs.delete(sha256)
                deleted += 1
        return deleted


def _check_recommitted(found: SealedFile, repo: Repo, path: str) -> None:
    """A sealed file may be committed again only by its repository, at its own path.

    The container and the wrapped key are bound to the path it was sealed for.
    """
    if found.repo_pk != repo.pk:
        raise InvalidInputError(
            f"{path!r} is another repository's sealed file; push its plaintext to seal it here"
        )
    if found.path != path:
        raise InvalidInputError(
            f"{path!r}: a sealed file cannot be copied or moved (it is sealed for "
            f"{found.path!r}); push the plaintext to the new path"
        )
