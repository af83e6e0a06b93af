"""In-process blob store: a dict of bytes. A real backend, used by unit and contract tests."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from kaiyuan.core.errors import BlobNotFoundError, InvalidInputError
from kaiyuan.core.ids import validate_sha256
from kaiyuan.core.models import BlobInfo
from kaiyuan.storage.blobs.verify import check_blob, check_upload_id

READ_PIECE = 4 * 1024 * 1024


class _MemoryWriter:
    def __init__(self, on_commit: _Sink) -> None:
        self._buffer = bytearray()
        self._hash = hashlib.sha256()
        self._on_commit = on_commit
        self._done = False

    def write(self, data: bytes) -> None:
        if self._done:
            raise InvalidInputError("writer already finished")
        self._buffer += data
        self._hash.update(data)

    @property
    def size(self) -> int:
        return len(self._buffer)

    def commit(
        self, expected_sha256: str | None = None, expected_size: int | None = None
    ) -> BlobInfo:
        if self._done:
            raise InvalidInputError("writer already finished")
        self._done = True
        digest = self._hash.hexdigest()
        try:
            check_blob(digest, len(self._buffer), expected_sha256, expected_size)
        finally:
            data = bytes(self._buffer)
            self._buffer = bytearray()
        info = BlobInfo(digest, len(data))
        self._on_commit(info, data)
        return info

    def abort(self) -> None:
        self._done = True
        self._buffer = bytearray()


class _Sink:
    def __init__(
        self,
        target: dict[str, bytes],
        key: str | None,
        lock: threading.Lock,
        times: dict[str, float] | None = None,
    ) -> None:
        self._target = target
        self._key = key
        self._lock = lock
        self._times = times

    def __call__(self, info: BlobInfo, data: bytes) -> None:
        with self._lock:
            key = self._key or info.sha256
            self._target[key] = data
            if self._times is not None:
                self._times[key] = time.time()


class MemoryBlobStore:
    """Keeps every blob in memory. Not for model files; for tests and tiny deployments."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}
        self._times: dict[str, float] = {}
        self._parts: dict[str, bytes] = {}
        self._part_times: dict[str, float] = {}
        self._lock = threading.Lock()

    def writer(self) -> _MemoryWriter:
        return _MemoryWriter(_Sink(self._blobs, None, self._lock, self._times))

    def modified_at(self, sha256: str) -> float:
        self._get(sha256)
        return self._times.get(sha256, 0.0)

    def exists(self, sha256: str) -> bool:
        return validate_sha256(sha256) in self._blobs

    def stat(self, sha256: str) -> BlobInfo:
        return BlobInfo(sha256, len(self._get(sha256)))

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        data = self._get(sha256)
        stop = len(data) if end is None else min(end, len(data))
        for offset in range(start, stop, READ_PIECE):
            yield data[offset : min(offset + READ_PIECE, stop)]

    def local_path(self, sha256: str) -> Path | None:  # noqa: ARG002 - no files in memory
        return None

    def delete(self, sha256: str) -> None:
        with self._lock:
            self._blobs.pop(sha256, None)

    def iter_digests(self) -> Iterator[str]:
        return iter(sorted(self._blobs))

    def write_part(self, upload_id: str, part_number: int) -> _MemoryWriter:
        check_upload_id(upload_id)
        if part_number < 1:
            raise InvalidInputError("part numbers start at 1")
        key = f"{upload_id}/{part_number}"
        return _MemoryWriter(_Sink(self._parts, key, self._lock, self._part_times))

    def sweep_abandoned(self, cutoff: float) -> int:
        with self._lock:
            stale = [k for k in self._parts if self._part_times.get(k, 0.0) < cutoff]
            freed = sum(len(self._parts.pop(k)) for k in stale)
            for key in stale:
                self._part_times.pop(key, None)
        return freed

    def complete_parts(
        self, upload_id: str, part_count: int, expected_sha256: str, expected_size: int
    ) -> BlobInfo:
        check_upload_id(upload_id)
        keys = [f"{upload_id}/{n}" for n in range(1, part_count + 1)]
        missing = [k for k in keys if k not in self._parts]
        if missing:
            raise InvalidInputError(f"multipart upload is missing part(s) {missing}")
        writer = self.writer()
        try:
            for key in keys:
                writer.write(self._parts[key])
            return writer.commit(expected_sha256, expected_size)
        finally:
            writer.abort()
            with self._lock:
                for key in keys:
                    self._parts.pop(key, None)

    def _get(self, sha256: str) -> bytes:
        validate_sha256(sha256)
        try:
            return self._blobs[sha256]
        except KeyError:
            raise BlobNotFoundError(f"blob {sha256} is not stored") from None
