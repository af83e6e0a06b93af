"""A blob being written: bytes staged in a local temp file, hashed as they arrive.

Every backend writes this way; they differ only in how a checked file is published (renamed into
the object directory, uploaded to a bucket).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.core.models import BlobInfo
from kaiyuan.storage.blobs.verify import check_blob

Publish = Callable[[Path, str], None]  # (staged file, its sha256) -> make it visible


class StagedWriter:
    """Writes to `staging/<uuid>`; `commit` checks digest and size, then publishes the file."""

    def __init__(self, staging: Path, publish: Publish, *, fsync: bool) -> None:
        self._path = staging / uuid.uuid4().hex
        self._file: BinaryIO | None = self._path.open("xb")
        self._hash = hashlib.sha256()
        self._size = 0
        self._publish = publish
        self._fsync = fsync

    def write(self, data: bytes) -> None:
        if self._file is None:
            raise InvalidInputError("writer already finished")
        self._file.write(data)
        self._hash.update(data)
        self._size += len(data)

    @property
    def size(self) -> int:
        return self._size

    def commit(
        self, expected_sha256: str | None = None, expected_size: int | None = None
    ) -> BlobInfo:
        if self._file is None:
            raise InvalidInputError("writer already finished")
        try:
            digest = self._hash.hexdigest()
            check_blob(digest, self._size, expected_sha256, expected_size)
            self._file.flush()
            if self._fsync:
                os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            self._publish(self._path, digest)
        finally:
            self.abort()
        return BlobInfo(digest, self._size)

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()


def sweep_files(paths: Iterable[Path], cutoff: float) -> int:
    """Delete the files among `paths` last written before `cutoff`; returns the bytes freed.

    A live upload writes its staged file continuously, so an old modification time means its
    writer is gone (a crash, a killed process, a client that vanished).
    """
    freed = 0
    for path in paths:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
            info = path.stat()
            if info.st_mtime < cutoff:
                path.unlink()
                freed += info.st_size
    return freed
