"""Local-directory blob store: `objects/ab/cd/<sha256>`, written under a temp name and renamed."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from kaiyuan.core.errors import BlobNotFoundError, InvalidInputError
from kaiyuan.core.ids import validate_sha256
from kaiyuan.core.models import BlobInfo
from kaiyuan.storage.blobs.staging import Publish, StagedWriter, sweep_files
from kaiyuan.storage.blobs.verify import check_upload_id

READ_PIECE = 4 * 1024 * 1024


class FsBlobStore:
    """Blobs as files under `root`. Reads are plain file reads; the edge may send them zero-copy."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self._objects = root / "objects"
        self._tmp = root / "tmp"
        self._parts = root / "parts"
        for folder in (self._objects, self._tmp, self._parts):
            folder.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync

    def _path(self, sha256: str) -> Path:
        validate_sha256(sha256)
        return self._objects / sha256[:2] / sha256[2:4] / sha256

    def writer(self) -> StagedWriter:
        return StagedWriter(self._tmp, self._move_to(self._path), fsync=self._fsync)

    @staticmethod
    def _move_to(final_path_of: Callable[[str], Path]) -> Publish:
        def publish(staged: Path, digest: str) -> None:
            final = final_path_of(digest)
            final.parent.mkdir(parents=True, exist_ok=True)
            staged.replace(final)  # atomic; identical content simply replaces itself

        return publish

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).is_file()

    def stat(self, sha256: str) -> BlobInfo:
        try:
            return BlobInfo(sha256, self._path(sha256).stat().st_size)
        except FileNotFoundError:
            raise BlobNotFoundError(f"blob {sha256} is not stored") from None

    def modified_at(self, sha256: str) -> float:
        try:
            return self._path(sha256).stat().st_mtime
        except FileNotFoundError:
            raise BlobNotFoundError(f"blob {sha256} is not stored") from None

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        try:
            handle = self._path(sha256).open("rb")
        except FileNotFoundError:
            raise BlobNotFoundError(f"blob {sha256} is not stored") from None
        return _read_range(handle, start, end)

    def local_path(self, sha256: str) -> Path | None:
        path = self._path(sha256)
        return path if path.is_file() else None

    def delete(self, sha256: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(sha256).unlink()

    def iter_digests(self) -> Iterator[str]:
        for path in sorted(self._objects.glob("*/*/*")):
            yield path.name

    def write_part(self, upload_id: str, part_number: int) -> StagedWriter:
        folder = self._part_dir(upload_id)
        folder.mkdir(parents=True, exist_ok=True)
        if part_number < 1:
            raise InvalidInputError("part numbers start at 1")
        target = folder / str(part_number)
        return StagedWriter(self._tmp, self._move_to(lambda _digest: target), fsync=self._fsync)

    def complete_parts(
        self, upload_id: str, part_count: int, expected_sha256: str, expected_size: int
    ) -> BlobInfo:
        folder = self._part_dir(upload_id)
        parts = [folder / str(n) for n in range(1, part_count + 1)]
        missing = [p.name for p in parts if not p.is_file()]
        if missing:
            raise InvalidInputError(f"multipart upload is missing part(s) {', '.join(missing)}")
        writer = self.writer()
        try:
            for part in parts:
                with part.open("rb") as handle:
                    while piece := handle.read(READ_PIECE):
                        writer.write(piece)
            return writer.commit(expected_sha256, expected_size)
        finally:
            writer.abort()
            shutil.rmtree(folder, ignore_errors=True)

    def sweep_abandoned(self, cutoff: float) -> int:
        freed = sweep_files(self._tmp.iterdir(), cutoff)
        for folder in list(self._parts.iterdir()):
            parts = list(folder.iterdir()) if folder.is_dir() else []
            if all(_mtime(p) < cutoff for p in [folder, *parts]):
                freed += sweep_files(parts, cutoff)
                with contextlib.suppress(OSError):
                    folder.rmdir()
        return freed

    def _part_dir(self, upload_id: str) -> Path:
        return self._parts / check_upload_id(upload_id)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _read_range(handle: BinaryIO, start: int, end: int | None) -> Iterator[bytes]:
    with handle:
        handle.seek(start)
        remaining = None if end is None else max(0, end - start)
        while remaining is None or remaining > 0:
            want = READ_PIECE if remaining is None else min(READ_PIECE, remaining)
            piece = handle.read(want)
            if not piece:
                return
            if remaining is not None:
                remaining -= len(piece)
            yield piece
