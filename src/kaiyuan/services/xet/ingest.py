"""Bringing bytes into Xet storage: xorbs sent by clients, and whole uploads chunked here.

Both paths end in the same place: pack blobs with their xorb records and the chunk index, so a
file uploaded over plain LFS deduplicates against one uploaded through Xet, and the reverse.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from kaiyuan.core.errors import IntegrityError
from kaiyuan.core.models import Codec, StoredXorb, XetFile, XetTerm
from kaiyuan.core.ports import BlobStore, MetadataStore
from kaiyuan.services.clock import Clock, utc_now
from kaiyuan.services.contents import XorbCache
from kaiyuan.services.xet import hashing
from kaiyuan.services.xet.chunking import Chunker
from kaiyuan.services.xet.compression import compress_chunk
from kaiyuan.services.xet.packing import XorbBuilder, place_in
from kaiyuan.services.xet.xorbs import XorbParser

_LOOKUP_WINDOW = 512  # chunks looked up in the index per query (~32 MiB of data)


@dataclass(slots=True)
class _Run:
    """A growing term: chunks [start, end) of a stored xorb (key str) or a new pack (key int)."""

    key: str | int
    start: int
    end: int


@dataclass(slots=True)
class _Plan:
    runs: list[_Run] = field(default_factory=list)
    refs: list[hashing.ChunkRef] = field(default_factory=list)
    new_bytes: int = 0

    def place(self, key: str | int, index: int, chunk_hash: bytes, length: int) -> None:
        self.refs.append((chunk_hash, length))
        last = self.runs[-1] if self.runs else None
        if last is not None and last.key == key and last.end == index:
            last.end += 1
        else:
            self.runs.append(_Run(key, index, index + 1))


class XetIngest:
    def __init__(
        self,
        store: MetadataStore,
        blobs: BlobStore,
        xorbs: XorbCache,
        *,
        compression: str = "zstd",
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._xorbs = xorbs
        self._compression = compression
        self._clock = clock

    def receive_xorb(self, xorb_hex: str, pieces: Iterable[bytes]) -> bool:
        """Check and store a client's xorb; False if the hub already had it.

        Every chunk is decompressed and hashed, and the xorb hash recomputed; a mismatch or a
        malformed body raises and leaves nothing behind.
        """
        expected = hashing.from_hex(xorb_hex)
        with self._store.session() as session:
            known = bool(session.get_xorbs([xorb_hex]))
        if known:
            for _ in pieces:
                pass
            return False
        parser = XorbParser()
        assembly = _XorbAssembly(
            self._store, self._xorbs, XorbBuilder(self._blobs), ChunkCompressor(self._compression)
        )
        try:
            for piece in pieces:
                for chunk in parser.feed(piece):
                    client = chunk.record if chunk.compressed else None
                    assembly.add(chunk.raw, client)
            parser.finish()
            assembly.flush()
            _check_xorb_hash(assembly.builder, expected)
            stored = assembly.builder.close()
        except BaseException:
            assembly.builder.abort()
            raise
        with self._store.session(write=True) as session:
            return session.add_xorb(stored, self._clock())

    def convert(self, sha256: str) -> XetFile | None:
        """Re-store a whole blob as Xet chunks, reusing every chunk the hub already holds.

        Returns the file record (None for empty content, which stays a whole blob). The whole
        blob is removed only after the chunked form is committed.
        """
        with self._store.session() as session:
            existing = session.get_xet_file(sha256)
            used = session.get_xorbs(t.xorb_hash for t in existing.terms) if existing else {}
        if existing is not None:
            self._drop_whole(sha256, used.values())
            return existing
        chunking = _BlobChunking(self._store, self._blobs, self._compression)
        try:
            size = chunking.run(self._blobs.read(sha256), sha256)
        except BaseException:
            chunking.abort()
            raise
        if size == 0:
            return None
        plan, packs = chunking.plan, chunking.packs
        by_number = {number: xorb.xorb_hash for number, xorb in enumerate(packs)}
        terms = tuple(
            XetTerm(run.key if isinstance(run.key, str) else by_number[run.key], run.start, run.end)
            for run in plan.runs
        )
        file = XetFile(hashing.to_hex(hashing.file_hash(plan.refs)), sha256, size, terms)
        now = self._clock()
        with self._store.session(write=True) as session:
            for xorb in packs:
                session.add_xorb(xorb, now)
            session.add_xet_file(file, now)
        self._drop_whole(sha256, packs)
        return file

    def _drop_whole(self, sha256: str, packs: Iterable[StoredXorb]) -> None:
        # A file that became exactly one new xorb has a pack with the same bytes, hence the
        # same address as the whole blob: then that blob is the pack and must stay.
        if all(xorb.pack_sha256 != sha256 for xorb in packs):
            self._blobs.delete(sha256)


class _XorbAssembly:
    """A client's xorb chunk by chunk: chunks the hub holds are referenced, not stored again."""

    def __init__(
        self,
        store: MetadataStore,
        xorbs: XorbCache,
        builder: XorbBuilder,
        compressor: ChunkCompressor,
    ) -> None:
        self._store = store
        self._xorbs = xorbs
        self.builder = builder
        self._compressor = compressor
        self._window: list[tuple[bytes, bytes, bytes | None]] = []
        self._own: dict[bytes, int] = {}  # chunks this xorb stored itself, by hash

    def add(self, chunk: bytes, record: bytes | None) -> None:
        """A verified chunk, and its compressed record as the client sent it (kept as is)."""
        self._window.append((chunk, hashing.chunk_hash(chunk), record))
        if len(self._window) >= _LOOKUP_WINDOW:
            self.flush()

    def flush(self) -> None:
        with self._store.session() as session:
            known = session.find_chunks(h for _, h, _ in self._window if h not in self._own)
            owners = self._xorbs.get_many(session, {name for name, _ in known.values()})
        for chunk, chunk_hash, record in self._window:
            if chunk_hash in self._own:
                place = self.builder.own_place(self._own[chunk_hash])
                self.builder.add_known(chunk_hash, len(chunk), place)
                continue
            found = known.get(chunk_hash)
            owner = owners.get(found[0]) if found else None
            if found is not None and owner is not None:
                self.builder.add_known(chunk_hash, len(chunk), place_in(owner, found[1]))
                continue
            stored, codec = self._compressor.smallest(chunk, record)
            self._own[chunk_hash] = self.builder.add_new(chunk, chunk_hash, stored, codec)
        self._window.clear()


def _check_xorb_hash(pack: XorbBuilder, expected: bytes) -> None:
    actual = pack.xorb_hash()
    if actual != expected:
        raise IntegrityError(
            f"xorb hash {hashing.to_hex(actual)} does not match {hashing.to_hex(expected)}"
        )


class ChunkCompressor:
    """Compresses chunks per the hub's mode (see compression.py) where that saves 10%.

    After a few misses in a row (random or already compressed data) it stops trying for a while.
    """

    _MISSES_BEFORE_PAUSE = 4
    _PAUSE_CHUNKS = 64

    def __init__(self, mode: str) -> None:
        self._mode = mode
        self._misses = 0
        self._paused = 0

    def smallest(self, chunk: bytes, client: bytes | None) -> tuple[bytes | None, Codec]:
        """How to store a chunk: the hub's record, the client's record or raw (None)."""
        if self._mode == "none":
            return None, Codec.RAW
        options: list[tuple[int, bytes | None, Codec]] = [(len(chunk), None, Codec.RAW)]
        ours = self.compress(chunk)
        if ours is not None:
            options.append((len(ours[0]), ours[0], ours[1]))
        if client is not None:
            options.append((len(client), client, Codec.XET))
        _, record, codec = min(options, key=lambda option: option[0])
        return record, codec

    def compress(self, chunk: bytes) -> tuple[bytes, Codec] | None:
        if self._mode == "none":
            return None
        if self._paused:
            self._paused -= 1
            return None
        compressed = compress_chunk(chunk, self._mode)
        if compressed is not None:
            self._misses = 0
            return compressed
        self._misses += 1
        if self._misses >= self._MISSES_BEFORE_PAUSE:
            self._misses, self._paused = 0, self._PAUSE_CHUNKS
        return None


class _BlobChunking:
    """One pass over a blob: chunk, look chunks up in windows, pack the ones the hub lacks."""

    def __init__(self, store: MetadataStore, blobs: BlobStore, compression: str) -> None:
        self._store = store
        self._blobs = blobs
        self._compressor = ChunkCompressor(compression)
        self.plan = _Plan()
        self.packs: list[StoredXorb] = []
        self._pending: dict[bytes, tuple[int, int]] = {}  # chunks already in this file's packs
        self._pack = XorbBuilder(blobs)
        self._window: list[tuple[bytes, bytes]] = []

    def run(self, pieces: Iterable[bytes], sha256: str) -> int:
        """Chunk everything; the total size. Integrity error if the bytes are not `sha256`."""
        digest = hashlib.sha256()
        size = 0
        chunker = Chunker()
        for piece in pieces:
            size += len(piece)
            digest.update(piece)
            for chunk in chunker.feed(piece):
                self._add(chunk)
        last = chunker.finish()
        if last is not None:
            self._add(last)
        self._flush()
        if digest.hexdigest() != sha256:
            raise IntegrityError(f"stored blob {sha256} does not match its digest")
        if len(self._pack):
            self.packs.append(self._pack.close())
        else:
            self._pack.abort()
        return size

    def abort(self) -> None:
        self._pack.abort()

    def _add(self, chunk: bytes) -> None:
        self._window.append((chunk, hashing.chunk_hash(chunk)))
        if len(self._window) >= _LOOKUP_WINDOW:
            self._flush()

    def _flush(self) -> None:
        with self._store.session() as session:
            known = session.find_chunks(h for _, h in self._window if h not in self._pending)
        for chunk, chunk_hash in self._window:
            if chunk_hash in self._pending:
                number, index = self._pending[chunk_hash]
                self.plan.place(number, index, chunk_hash, len(chunk))
            elif chunk_hash in known:
                xorb_hex, index = known[chunk_hash]
                self.plan.place(xorb_hex, index, chunk_hash, len(chunk))
            else:
                self._store_new(chunk, chunk_hash)
        self._window.clear()

    def _store_new(self, chunk: bytes, chunk_hash: bytes) -> None:
        if not self._pack.has_room(len(chunk)):
            self.packs.append(self._pack.close())
            self._pack = XorbBuilder(self._blobs)
        compressed = self._compressor.compress(chunk)
        record, codec = compressed if compressed is not None else (None, Codec.RAW)
        index = self._pack.add_new(chunk, chunk_hash, record, codec)
        self._pending[chunk_hash] = (len(self.packs), index)
        self.plan.place(len(self.packs), index, chunk_hash, len(chunk))
        self.plan.new_bytes += len(chunk)
