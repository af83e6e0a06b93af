"""SQL rows for sealed repositories: policies, sealed files' kept keys, challenges, audit."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, update

from kaiyuan.core.models import Repo
from kaiyuan.core.sealing import (
    Attestation,
    Challenge,
    KeyRelease,
    ReleaseOutcome,
    SealedFile,
    SealingPolicy,
    WrappedKey,
)
from kaiyuan.storage.sql import tables as t
from kaiyuan.storage.sql.dialects import as_utc

_BATCH = 500


class SealingRows:
    """Mixed into the SQL session; `_c` comes from it."""

    _c: Connection

    # --- policies ---------------------------------------------------------------------------
    def sealing_policy(self, repo: Repo) -> SealingPolicy | None:
        table = t.sealing_policies
        row = self._c.execute(select(table).where(table.c.repo_pk == repo.pk)).first()
        if row is None:
            return None
        return SealingPolicy(
            tuple(json.loads(row.patterns)),
            Attestation(row.attestation),
            tuple(json.loads(row.allowed)),
            as_utc(row.updated_at),
            row.updated_by,
        )

    def set_sealing_policy(self, repo: Repo, policy: SealingPolicy | None) -> None:
        table = t.sealing_policies
        self._c.execute(delete(table).where(table.c.repo_pk == repo.pk))
        if policy is None:
            return
        self._c.execute(
            insert(table).values(
                repo_pk=repo.pk,
                patterns=json.dumps(list(policy.patterns)),
                attestation=policy.attestation.value,
                allowed=json.dumps(list(policy.allowed)),
                updated_at=policy.updated_at,
                updated_by=policy.updated_by,
            )
        )

    # --- sealed files -----------------------------------------------------------------------
    def add_sealed_file(self, sealed: SealedFile) -> None:
        self._c.execute(
            insert(t.sealed_files).values(
                sha256=sealed.sha256,
                repo_pk=sealed.repo_pk,
                file_id=sealed.file_id,
                path=sealed.path,
                plaintext_sha256=sealed.plaintext_sha256,
                plaintext_size=sealed.plaintext_size,
                kek_id=sealed.key.kek_id,
                wrapped_key=sealed.key.blob,
                sealed_at=sealed.sealed_at,
            )
        )

    def sealed_files(
        self, sha256s: Iterable[str], repo: Repo | None = None
    ) -> dict[str, SealedFile]:
        """The sealed files among these contents (the others are left out).

        With `repo`, only those that repository sealed.
        """
        wanted = sorted(set(sha256s))
        table = t.sealed_files
        found: dict[str, SealedFile] = {}
        for start in range(0, len(wanted), _BATCH):
            query = select(table).where(table.c.sha256.in_(wanted[start : start + _BATCH]))
            if repo is not None:
                query = query.where(table.c.repo_pk == repo.pk)
            for row in self._c.execute(query):
                found[row.sha256] = _sealed(row)
        return found

    def repo_has_sealed_files(self, repo: Repo) -> bool:
        table = t.sealed_files
        found = self._c.execute(select(table.c.sha256).where(table.c.repo_pk == repo.pk).limit(1))
        return found.first() is not None

    def sealed_files_wrapped_by(self, kek_ids: set[str] | None) -> list[SealedFile]:
        """Sealed files whose key is wrapped by one of these KEKs (all, for None)."""
        table = t.sealed_files
        query = select(table).order_by(table.c.sha256)
        if kek_ids is not None:
            query = query.where(table.c.kek_id.in_(sorted(kek_ids)))
        return [_sealed(row) for row in self._c.execute(query)]

    def kek_ids_in_use(self) -> set[str]:
        table = t.sealed_files
        return {row.kek_id for row in self._c.execute(select(table.c.kek_id).distinct())}

    def rewrap_sealed_file(self, sha256: str, old: WrappedKey, new: WrappedKey) -> bool:
        """Replace a kept key if it is still `old`; whether it was."""
        table = t.sealed_files
        result = self._c.execute(
            update(table)
            .where(
                table.c.sha256 == sha256,
                table.c.kek_id == old.kek_id,
                table.c.wrapped_key == old.blob,
            )
            .values(kek_id=new.kek_id, wrapped_key=new.blob)
        )
        return result.rowcount == 1

    def forget_upload(self, repo_pk: int, sha256: str) -> bool:
        """Drop a repository's claim on an uploaded content that no tree names anywhere.

        What sealing does with a plaintext upload once its ciphertext is committed; whether the
        content is now held by no repository at all (then it may be deleted).
        """
        entries = t.tree_entries
        named = self._c.execute(
            select(entries.c.tree_sha).where(entries.c.sha256 == sha256).limit(1)
        ).first()
        if named is not None:
            return False  # committed in the clear somewhere: not a secret, and still needed
        held = t.repo_objects
        self._c.execute(delete(held).where(held.c.repo_pk == repo_pk, held.c.sha256 == sha256))
        return (
            self._c.execute(select(held.c.repo_pk).where(held.c.sha256 == sha256)).first() is None
        )

    # --- challenges -------------------------------------------------------------------------
    def add_challenge(self, repo: Repo, challenge: Challenge, now: datetime) -> None:
        """Store a challenge; expired ones (used or not) go at the same time."""
        table = t.sealing_challenges
        self._c.execute(delete(table).where(table.c.expires_at < now))
        self._c.execute(
            insert(table).values(
                nonce=challenge.nonce,
                repo_pk=repo.pk,
                user=challenge.user,
                expires_at=challenge.expires_at,
            )
        )

    def take_challenge(self, repo: Repo, nonce: str, user: str, now: datetime) -> bool:
        """Use up a challenge issued to `user` for `repo`; whether it was there and fresh."""
        table = t.sealing_challenges
        result = self._c.execute(
            delete(table).where(
                table.c.nonce == nonce,
                table.c.repo_pk == repo.pk,
                table.c.user == user,
                table.c.expires_at >= now,
            )
        )
        return result.rowcount == 1

    # --- audit ------------------------------------------------------------------------------
    def add_key_release(self, repo: Repo, release: KeyRelease) -> None:
        self._c.execute(
            insert(t.key_releases).values(
                repo_pk=repo.pk,
                at=release.at,
                user=release.user,
                token_id=release.token_id,
                revision=release.revision,
                outcome=release.outcome.value,
                reason=release.reason,
                paths=json.dumps(list(release.paths)),
                file_ids=json.dumps(list(release.file_ids)),
                address=release.address,
            )
        )

    def key_releases(self, repo: Repo, limit: int) -> list[KeyRelease]:
        """The newest `limit` audit records of a repository, newest first."""
        table = t.key_releases
        rows = self._c.execute(
            select(table).where(table.c.repo_pk == repo.pk).order_by(table.c.pk.desc()).limit(limit)
        )
        return [
            KeyRelease(
                as_utc(row.at),
                row.user,
                row.token_id,
                row.revision,
                ReleaseOutcome(row.outcome),
                row.reason,
                tuple(json.loads(row.paths)),
                tuple(json.loads(row.file_ids)),
                row.address,
            )
            for row in rows
        ]

    # --- revocations ------------------------------------------------------------------------
    def revoke_keys(self, repo: Repo, subject: str, now: datetime, by: str) -> bool:
        """Refuse `subject`'s key requests from now on; False if it already was."""
        table = t.sealing_revocations
        found = self._c.execute(
            select(table.c.subject).where(table.c.repo_pk == repo.pk, table.c.subject == subject)
        ).first()
        if found is not None:
            return False
        self._c.execute(
            insert(table).values(repo_pk=repo.pk, subject=subject, revoked_at=now, revoked_by=by)
        )
        return True

    def restore_keys(self, repo: Repo, subject: str) -> bool:
        table = t.sealing_revocations
        result = self._c.execute(
            delete(table).where(table.c.repo_pk == repo.pk, table.c.subject == subject)
        )
        return result.rowcount == 1

    def revocations(self, repo: Repo) -> list[tuple[str, datetime, str]]:
        table = t.sealing_revocations
        rows = self._c.execute(
            select(table).where(table.c.repo_pk == repo.pk).order_by(table.c.subject)
        )
        return [(row.subject, as_utc(row.revoked_at), row.revoked_by) for row in rows]


def _sealed(row: Row[Any]) -> SealedFile:
    return SealedFile(
        row.sha256,
        row.repo_pk,
        row.file_id,
        row.path,
        row.plaintext_sha256,
        row.plaintext_size,
        WrappedKey(row.kek_id, bytes(row.wrapped_key)),
        as_utc(row.sealed_at),
    )
