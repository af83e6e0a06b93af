"""The hub's key-encryption keys on local disk, and how a KMS takes their place.

`LocalKeyRing` keeps each KEK as a 0600 file under `<data dir>/sealing-keys/`, named by its id,
and a `CURRENT` file naming the one new keys are wrapped with. Rotation adds a KEK and makes it
current; data keys are then rewrapped (the data never changes) and KEKs nothing uses any more
are retired. A hub that keeps its KEKs in a KMS or HSM names a factory instead
(`KAIYUAN_SEALING_KMS=package.module:factory`), which gets the settings and returns an object
with the same methods (`kaiyuan.core.sealing.KeyEncryptionKeys`).
"""

from __future__ import annotations

import os
import re
import secrets
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kaiyuan.core.errors import IntegrityError, StorageUnavailableError
from kaiyuan.core.sealing import KeyEncryptionKeys, WrappedKey
from kaiyuan.services.distribution.plugins import build_plugin

_KEK_ID = re.compile(r"kek-[0-9a-f]{16}")
_CURRENT = "CURRENT"
_NONCE = 12
_KEY_BYTES = 32


class LocalKeyRing:
    """KEKs in files: AES-256-GCM wraps, the KEK id and the binding authenticated."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        if not (folder / _CURRENT).exists():
            self._make_current(self._create())

    def current(self) -> str:
        kek_id = (self._folder / _CURRENT).read_text().strip()
        if not _KEK_ID.fullmatch(kek_id):
            raise StorageUnavailableError(f"{self._folder / _CURRENT} does not name a KEK")
        return kek_id

    def wrap(self, data_key: bytes, binding: bytes) -> WrappedKey:
        kek_id = self.current()
        nonce = secrets.token_bytes(_NONCE)
        sealed = AESGCM(self._kek(kek_id)).encrypt(nonce, data_key, _aad(kek_id, binding))
        return WrappedKey(kek_id, nonce + sealed)

    def unwrap(self, key: WrappedKey, binding: bytes) -> bytes:
        try:
            return AESGCM(self._kek(key.kek_id)).decrypt(
                key.blob[:_NONCE], key.blob[_NONCE:], _aad(key.kek_id, binding)
            )
        except (InvalidTag, ValueError):
            raise IntegrityError("a wrapped data key does not open with its KEK") from None

    def rotate(self) -> str:
        previous = self.current()
        kek_id = self._create()
        self._make_current(kek_id)
        # When it stopped being current: it is retired only a while later (see retire).
        (self._folder / f"{previous}.superseded").write_text(f"{time.time()}\n")
        return kek_id

    def retire(self, in_use: set[str], after: timedelta) -> list[str]:
        keep = in_use | {self.current()}
        gone = []
        for path in sorted(self._folder.glob("kek-*.key")):
            kek_id = path.name.removesuffix(".key")
            if kek_id in keep or not self._superseded_before(
                kek_id, time.time() - after.total_seconds()
            ):
                continue
            path.unlink()
            (self._folder / f"{kek_id}.superseded").unlink(missing_ok=True)
            gone.append(kek_id)
        return gone

    def _superseded_before(self, kek_id: str, moment: float) -> bool:
        marker = self._folder / f"{kek_id}.superseded"
        try:
            return float(marker.read_text().strip()) <= moment
        except FileNotFoundError:
            marker.write_text(f"{time.time()}\n")  # not current, never marked: from now
            return False
        except ValueError:
            return False

    def ids(self) -> list[str]:
        return sorted(p.name.removesuffix(".key") for p in self._folder.glob("kek-*.key"))

    def _kek(self, kek_id: str) -> bytes:
        if not _KEK_ID.fullmatch(kek_id):
            raise IntegrityError(f"unknown KEK id {kek_id[:40]!r}")
        path = self._folder / f"{kek_id}.key"
        try:
            key = bytes.fromhex(path.read_text().strip())
        except FileNotFoundError:
            raise IntegrityError(f"KEK {kek_id} is not in the key ring (retired?)") from None
        except ValueError:
            raise StorageUnavailableError(f"{path} is not a hex key") from None
        if len(key) != _KEY_BYTES:
            raise StorageUnavailableError(f"{path} does not hold a 256-bit key")
        return key

    def _create(self) -> str:
        self._folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        kek_id = f"kek-{secrets.token_hex(8)}"
        fd = os.open(self._folder / f"{kek_id}.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(AESGCM.generate_key(bit_length=256).hex())
            handle.flush()
            os.fsync(handle.fileno())
        return kek_id

    def _make_current(self, kek_id: str) -> None:
        staged = self._folder / f"{_CURRENT}.{secrets.token_hex(4)}.tmp"
        staged.write_text(kek_id + "\n")
        staged.replace(self._folder / _CURRENT)


def load_key_ring(folder: Path, kms: str | None, settings: Any) -> KeyEncryptionKeys:
    """The local key ring in `folder`, or the KMS adapter a `module:factory` setting names."""
    if not kms:
        return LocalKeyRing(folder)
    ring: KeyEncryptionKeys = build_plugin(kms, "KAIYUAN_SEALING_KMS", settings)
    return ring


def _aad(kek_id: str, binding: bytes) -> bytes:
    return b"kaiyuan-kek/v1|" + kek_id.encode() + b"|" + binding
