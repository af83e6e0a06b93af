"""Content by sha256, wherever it lives: one whole blob, or Xet chunks packed in xorb blobs.

Small git-stored files and content uploaded before Xet storage are whole blobs. Large files are
reconstructions: runs of chunks in xorbs whose raw bytes sit back to back in a pack blob, so any
byte range of a file is a short list of (blob, offset, length) segments that can be sent as is.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from threading import Lock
from typing import IO

from kaiyuan.core.errors import BlobNotFoundError, IntegrityError
from kaiyuan.core.models import BlobInfo, Piece, StoredXorb, XetFile, XetTerm
from kaiyuan.core.ports import BlobStore, MetadataSession, MetadataStore
from kaiyuan.services.xet.compression import decode_records

_XORB_CACHE = 4096
_READ_BUFFER = 1024 * 1024


# Where bytes of a content are stored: a blob range, maybe of compressed chunk records.
Segment = Piece


@dataclass(frozen=True, slots=True)
class Placed:
    """A term of a file with the xorb it reads and where it starts in the file."""

    term: XetTerm
    xorb: StoredXorb
    file_offset: int

    @property
    def length(self) -> int:
        return self.xorb.chunk_ends[self.term.end - 1] - self.xorb.chunk_start(self.term.start)


class XorbCache:
    """Xorb records are immutable once stored; keep the recently used ones in memory."""

    def __init__(self, capacity: int = _XORB_CACHE) -> None:
        self._items: OrderedDict[str, StoredXorb] = OrderedDict()
        self._capacity = capacity
        self._lock = Lock()

    def get_many(self, session: MetadataSession, hashes: Iterable[str]) -> dict[str, StoredXorb]:
        wanted = set(hashes)
        found: dict[str, StoredXorb] = {}
        with self._lock:
            for h in wanted:
                if h in self._items:
                    self._items.move_to_end(h)
                    found[h] = self._items[h]
        missing = wanted - found.keys()
        if missing:
            loaded = session.get_xorbs(missing)
            found.update(loaded)
            with self._lock:
                for h, xorb in loaded.items():
                    self._items[h] = xorb
                while len(self._items) > self._capacity:
                    self._items.popitem(last=False)
        return found


class ContentStore:
    def __init__(self, store: MetadataStore, blobs: BlobStore, cache: XorbCache) -> None:
        self._store = store
        self._blobs = blobs
        self.xorbs = cache

    def stat(self, sha256: str) -> BlobInfo:
        """Size of stored content; BlobNotFound when the hub does not hold it."""
        with self._store.session() as session:
            if session.get_xet_file(sha256) is not None:
                row = session.get_blob(sha256)
                if row is not None:
                    return row
        return self._blobs.stat(sha256)

    def place(self, session: MetadataSession, terms: Iterable[XetTerm]) -> list[Placed]:
        """Terms with their xorbs and file offsets; Integrity error if a term is out of bounds."""
        terms = list(terms)
        xorbs = self.xorbs.get_many(session, (t.xorb_hash for t in terms))
        placed: list[Placed] = []
        offset = 0
        for term in terms:
            xorb = xorbs.get(term.xorb_hash)
            if xorb is None:
                raise BlobNotFoundError(f"xorb {term.xorb_hash} is not stored")
            if not 0 <= term.start < term.end <= len(xorb.chunk_ends):
                raise IntegrityError(
                    f"chunks {term.start}..{term.end} exceed xorb {term.xorb_hash}"
                )
            item = Placed(term, xorb, offset)
            placed.append(item)
            offset += item.length
        return placed

    def segments(self, sha256: str, start: int = 0, end: int | None = None) -> list[Segment]:
        """The blob ranges holding bytes [start, end) of the content."""
        with self._store.session() as session:
            file = session.get_xet_file(sha256)
            placed = self.place(session, file.terms) if file is not None else None
        if file is None or placed is None:
            size = self._blobs.stat(sha256).size
            end = size if end is None else min(end, size)
            return [Segment(sha256, start, end - start)] if end > start else []
        return clip(placed, start, file.size if end is None else min(end, file.size))

    def open(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes [start, end) streamed in large pieces."""
        return self.read_segments(self.segments(sha256, start, end))

    def read_segments(self, segments: list[Segment]) -> Iterator[bytes]:
        for segment in segments:
            stored = self._blobs.read(
                segment.blob_sha256, segment.offset, segment.offset + segment.length
            )
            if segment.encoded:
                yield from _window(decode_records(stored), segment.skip, segment.take)
            else:
                yield from stored

    def local_segments(self, segments: list[Segment]) -> list[tuple[Path, int, int]] | None:
        """Local files for every segment (to send them zero-copy).

        None when any segment is remote or compressed.
        """
        result = []
        for segment in segments:
            if segment.encoded:
                return None
            path = self._blobs.local_path(segment.blob_sha256)
            if path is None:
                return None
            result.append((path, segment.offset, segment.length))
        return result

    def whole_local_file(self, sha256: str, size: int) -> Path | None:
        """The local file holding exactly this content, when the store keeps it as one.

        That is a blob on the local disk; not compressed Xet chunks, not an object store.
        """
        segments = self.segments(sha256)
        local = self.local_segments(segments) if len(segments) == 1 else None
        if not local:
            return None
        path, offset, length = local[0]
        return path if offset == 0 and length == size else None

    def reader(self, sha256: str, size: int) -> IO[bytes]:
        """A content as a seekable binary file: the local blob itself, else read by ranges."""
        local = self.whole_local_file(sha256, size)
        if local is not None:
            return local.open("rb")
        return io.BufferedReader(_ranged_reader(self, sha256, size), _READ_BUFFER)

    def xet_file(self, sha256: str) -> XetFile | None:
        with self._store.session() as session:
            return session.get_xet_file(sha256)


def clip(placed: list[Placed], start: int, end: int) -> list[Segment]:
    """Pack-blob segments for file bytes [start, end) of placed terms."""
    segments: list[Segment] = []
    for item in placed:
        term_start, term_end = item.file_offset, item.file_offset + item.length
        lo, hi = max(start, term_start), min(end, term_end)
        if lo >= hi:
            continue
        base = item.xorb.chunk_start(item.term.start) - term_start
        segments.extend(item.xorb.pieces(base + lo, base + hi))
    return segments


def _window(chunks: Iterator[bytes], skip: int, take: int) -> Iterator[bytes]:
    """Bytes [skip, skip + take) of a stream of chunks."""
    for chunk in chunks:
        if take <= 0:
            return
        if skip >= len(chunk):
            skip -= len(chunk)
            continue
        piece = chunk[skip : skip + take]
        skip = 0
        take -= len(piece)
        yield piece


class RangedFile(io.RawIOBase):
    """Bytes read by offset as a read-only seekable file.

    `fill(offset, view)` fills `view` with the bytes from `offset`: a stored content read by
    ranges, a sealed file's plaintext decrypted in memory.
    """

    def __init__(self, size: int, fill: Callable[[int, memoryview], None]) -> None:
        self._size = size
        self._fill = fill
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        take = max(0, min(len(buffer), self._size - self._position))
        if take:
            self._fill(self._position, memoryview(buffer).cast("B")[:take])
            self._position += take
        return take


def _ranged_reader(contents: ContentStore, sha256: str, size: int) -> RangedFile:
    """A stored content as a seekable file, read by ranges (object store, Xet chunks)."""

    def fill(offset: int, view: memoryview) -> None:
        filled = 0
        for piece in contents.open(sha256, offset, offset + len(view)):
            view[filled : filled + len(piece)] = piece
            filled += len(piece)

    return RangedFile(size, fill)
