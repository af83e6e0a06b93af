"""The Xet CAS: tokens, shard registration, file reconstructions, dedup answers, xorb ranges.

Xet tokens are scoped to one repository and signed by the hub, so CAS calls need no session.
A reconstruction is answered only for content the token's repository holds; xorb bytes are
served only through signed, expiring links naming the exact byte range a reconstruction gave.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import secrets
import time
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass

from kaiyuan.core.errors import (
    AccessDeniedError,
    AuthenticationError,
    BlobNotFoundError,
    IntegrityError,
    InvalidInputError,
)
from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.models import Codec, Principal, StoredXorb, XetFile, XetTerm
from kaiyuan.core.ports import MetadataStore
from kaiyuan.services import access, revisions
from kaiyuan.services.clock import Clock, utc_now
from kaiyuan.services.contents import ContentStore, Placed, Segment, clip
from kaiyuan.services.xet import hashing, shards
from kaiyuan.services.xet.compression import decode_records
from kaiyuan.services.xet.xorbs import encode_header

DEDUP_KEY_TTL = 7 * 24 * 3600
_SEND_PIECE = 4 << 20
DEDUP_XORBS = 64  # at most ~4 GiB of neighbouring data per answer


@dataclass(frozen=True, slots=True)
class CasGrant:
    repo_pk: int
    write: bool
    expires: int


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires: int


@dataclass(frozen=True, slots=True)
class FetchRange:
    """Chunks [start, end) of a xorb, served as serialized bytes [first, last] (inclusive)."""

    xorb_hash: str
    start: int
    end: int
    first: int
    last: int


@dataclass(frozen=True, slots=True)
class Reconstruction:
    offset_into_first_range: int
    terms: list[tuple[XetTerm, int]]  # with each term's unpacked length
    fetches: list[FetchRange]


class CasService:
    def __init__(
        self,
        store: MetadataStore,
        contents: ContentStore,
        secret: bytes,
        token_ttl: int,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._contents = contents
        self._secret = hashlib.sha256(b"kaiyuan-xet:" + secret).digest()
        self._ttl = token_ttl
        self._clock = clock

    # --- tokens ------------------------------------------------------------------------------
    def issue_token(
        self, principal: Principal, kind: RepoKind, repo_id: RepoId, revision: str, write: bool
    ) -> IssuedToken:
        """A Xet token for one repository; write tokens need write access to its namespace."""
        with self._store.session() as session:
            repo = access.visible_repo(session, principal, kind, repo_id)
            if write:
                access.require_write(principal, repo_id.namespace)
                revisions.check_name(revision)
            else:
                access.require_files(session, principal, repo)
                revisions.resolve(session, repo, revision)
        expires = int(time.time()) + self._ttl
        mode = "w" if write else "r"
        return IssuedToken(
            f"kyx1.{repo.pk}.{mode}.{expires}.{self._sign(repo.pk, mode, expires)}", expires
        )

    def _sign(self, *parts: object) -> str:
        message = ":".join(str(p) for p in parts).encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:40]

    def check_token(self, token: str | None, *, write: bool) -> CasGrant:
        if not token:
            raise AuthenticationError("a Xet token is required (ask the hub's xet-*-token route)")
        parts = token.split(".")
        if len(parts) != 5 or parts[0] != "kyx1" or parts[2] not in {"r", "w"}:  # noqa: PLR2004
            raise AuthenticationError("malformed Xet token")
        _, repo_pk, mode, expires, signature = parts
        if not (repo_pk.isdigit() and expires.isdigit()):
            raise AuthenticationError("malformed Xet token")
        if not hmac.compare_digest(signature, self._sign(int(repo_pk), mode, int(expires))):
            raise AuthenticationError("Xet token signature is invalid")
        if int(expires) < time.time():
            raise AuthenticationError("Xet token has expired; refresh it")
        if write and mode != "w":
            raise AccessDeniedError("this call needs a Xet write token")
        return CasGrant(int(repo_pk), mode == "w", int(expires))

    # --- shards ------------------------------------------------------------------------------
    def register_shard(self, grant: CasGrant, data: bytes) -> bool:
        """Record the files a shard describes for the token's repository.

        Every xorb must already be stored; term ranges, their verification hashes, the file
        hash and the file's sha256 are recomputed from what the hub holds. True if any file
        was new to the hub.
        """
        if not grant.write:
            raise AccessDeniedError("this call needs a Xet write token")
        shard = shards.parse_shard(data)
        names = {t.xorb for f in shard.files for t in f.terms} | {x.xorb_hash for x in shard.xorbs}
        with self._store.session() as session:
            stored = self._contents.xorbs.get_many(session, (hashing.to_hex(n) for n in names))
            for listing in shard.xorbs:
                _check_listing(listing, stored)
            prepared = [_check_file(f, stored) for f in shard.files if f.terms]
            known = {
                f.file_hash: session.find_xet_file(hashing.to_hex(f.file_hash)) for f, _ in prepared
            }
        files: list[XetFile] = []
        for record, placed in prepared:
            previous = known[record.file_hash]
            sha256 = previous.sha256 if previous else self._digest(placed)
            if record.sha256 is not None and hashing.to_hex(record.sha256) != sha256:
                raise IntegrityError(f"file {hashing.to_hex(record.file_hash)}: sha256 mismatch")
            size = sum(p.length for p in placed)
            terms = tuple(p.term for p in placed)
            files.append(XetFile(hashing.to_hex(record.file_hash), sha256, size, terms))
        now = self._clock()
        with self._store.session(write=True) as session:
            for file in files:
                session.add_xet_file(file, now)
                session.add_repo_object(grant.repo_pk, file.sha256)
        return any(known[hashing.from_hex(f.file_hash)] is None for f in files)

    def _digest(self, placed: list[Placed]) -> str:
        digest = hashlib.sha256()
        size = sum(p.length for p in placed)
        for piece in self._contents.read_segments(clip(placed, 0, size)):
            digest.update(piece)
        return digest.hexdigest()

    # --- downloads ---------------------------------------------------------------------------
    def reconstruction(
        self, grant: CasGrant, file_hex: str, span: tuple[int, int | None] | None
    ) -> Reconstruction | None:
        """Terms and fetch ranges for bytes of a file; None when the range starts past the end."""
        hashing.from_hex(file_hex)
        with self._store.session() as session:
            file = session.find_xet_file(file_hex)
            if file is None or not session.has_repo_object(grant.repo_pk, file.sha256):
                raise BlobNotFoundError(f"file {file_hex} is not in this repository")
            placed = self._contents.place(session, file.terms)
        start, end = (0, file.size) if span is None else span
        end = file.size if end is None else min(end, file.size)
        if start >= file.size or end <= start:
            return None
        terms: list[tuple[XetTerm, int]] = []
        fetches: dict[tuple[str, int, int], FetchRange] = {}
        offset_into_first = 0
        offsets: dict[str, list[int]] = {}
        for item in placed:
            if item.file_offset + item.length <= start or item.file_offset >= end:
                continue
            first, last, skip = _chunk_span(item, start, end)
            if not terms:
                offset_into_first = skip
            term = XetTerm(item.term.xorb_hash, first, last)
            length = item.xorb.chunk_ends[last - 1] - item.xorb.chunk_start(first)
            terms.append((term, length))
            key = (term.xorb_hash, first, last)
            if key not in fetches:
                served = offsets.setdefault(term.xorb_hash, _served_offsets(item.xorb))
                fetches[key] = FetchRange(
                    term.xorb_hash, first, last, served[first], served[last] - 1
                )
        return Reconstruction(offset_into_first, terms, list(fetches.values()))

    def fetch_signature(self, fetch: FetchRange, expires: int) -> str:
        return self._sign("xorb", fetch.xorb_hash, fetch.first, fetch.last, expires)

    def read_xorb_range(
        self, xorb_hex: str, first: int, last: int, expires: int, signature: str
    ) -> tuple[int, Iterator[bytes]]:
        """Serialized xorb bytes [first, last] through a signed link: (length, stream)."""
        hashing.from_hex(xorb_hex)
        expected = self._sign("xorb", xorb_hex, first, last, expires)
        if not hmac.compare_digest(signature, expected):
            raise AccessDeniedError("xorb link signature is invalid")
        if expires < time.time():
            raise AccessDeniedError("xorb link has expired; ask for the reconstruction again")
        with self._store.session() as session:
            xorb = self._contents.xorbs.get_many(session, [xorb_hex]).get(xorb_hex)
        if xorb is None:
            raise BlobNotFoundError(f"xorb {xorb_hex} is not stored")
        served = _served_offsets(xorb)
        lo = bisect_left(served, first)
        hi = bisect_left(served, last + 1)
        if lo >= len(served) - 1 or served[lo] != first:
            raise InvalidInputError("the range does not start on a chunk of this xorb")
        if hi >= len(served) or served[hi] != last + 1:
            raise InvalidInputError("the range does not end on a chunk of this xorb")
        return last - first + 1, self._stream_chunks(xorb, lo, hi)

    def _stream_chunks(self, xorb: StoredXorb, lo: int, hi: int) -> Iterator[bytes]:
        """Chunks [lo, hi) in the xorb format.

        Stored records go out as they are; raw chunks get a header put in front.
        """
        count = len(xorb.chunk_ends)
        for number, span in enumerate(xorb.spans):
            stop = xorb.spans[number + 1].first if number + 1 < len(xorb.spans) else count
            first, last = max(lo, span.first), min(hi, stop)
            if first >= last:
                continue
            base = span.offset - xorb.stored_start(span.first)
            start = xorb.stored_start(first)
            segment = Segment(span.blob_sha256, base + start, xorb.stored_ends[last - 1] - start)
            stored = self._contents.read_segments([segment])
            if span.codec is Codec.XET:
                yield from stored  # records in the format clients read
                continue
            if span.codec is Codec.HUB:
                stored = decode_records(stored)  # the hub's own compression: send raw
            sizes = [xorb.chunk_ends[i] - xorb.chunk_start(i) for i in range(first, last)]
            yield from _with_headers(stored, sizes)

    # --- global dedup ------------------------------------------------------------------------
    def dedup_answer(self, grant: CasGrant, chunk_hex: str) -> bytes | None:
        """A shard listing the xorb that holds this chunk, its chunk hashes keyed; None if none."""
        del grant  # any valid token may ask; answers reveal nothing without the chunk itself
        raw = hashing.from_hex(chunk_hex)
        with self._store.session() as session:
            found = session.find_chunks([raw]).get(raw)
            if found is None:
                return None
            # The xorbs of files sharing this xorb come along: a client that has one chunk of a
            # file it derived from usually has much more of it.
            names = session.related_xorbs(found[0], DEDUP_XORBS)
            xorbs = self._contents.xorbs.get_many(session, names)
        key = secrets.token_bytes(32)
        records = [_keyed_listing(xorb, key) for xorb in xorbs.values()]
        if not records:
            return None
        return shards.dedup_shard(records, key, int(time.time()) + DEDUP_KEY_TTL)


def _keyed_listing(xorb: StoredXorb, key: bytes) -> shards.XorbRecord:
    chunks = tuple(
        shards.XorbChunk(hashing.keyed(h, key), xorb.chunk_start(i), end - xorb.chunk_start(i))
        for i, (h, end) in enumerate(zip(xorb.chunk_hashes, xorb.chunk_ends, strict=True))
    )
    return shards.XorbRecord(hashing.from_hex(xorb.xorb_hash), chunks)


def _served_offsets(xorb: StoredXorb) -> list[int]:
    """Where each chunk starts when the xorb is served; one more entry for the end."""
    return [0, *itertools.accumulate(xorb.served_sizes())]


def _with_headers(pieces: Iterator[bytes], sizes: list[int]) -> Iterator[bytes]:
    """Raw chunks of the given sizes, each with an uncompressed-chunk header, in ~4 MiB writes."""
    buffer = bytearray()
    out = bytearray()
    index = 0
    for piece in pieces:
        buffer += piece
        start = 0
        while index < len(sizes) and len(buffer) - start >= sizes[index]:
            out += encode_header(sizes[index])
            out += buffer[start : start + sizes[index]]
            start += sizes[index]
            index += 1
        del buffer[:start]
        if len(out) >= _SEND_PIECE:
            yield bytes(out)
            out.clear()
    if out:
        yield bytes(out)


def _chunk_span(item: Placed, start: int, end: int) -> tuple[int, int, int]:
    """The chunks of a placed term overlapping file bytes [start, end), and the bytes to skip."""
    xorb, term = item.xorb, item.term
    base = item.file_offset - xorb.chunk_start(term.start)
    first = term.start
    while first < term.end - 1 and base + xorb.chunk_ends[first] <= start:
        first += 1
    last = first + 1
    while last < term.end and base + xorb.chunk_start(last) < end:
        last += 1
    skip = max(0, start - (base + xorb.chunk_start(first)))
    return first, last, skip


def _check_listing(record: shards.XorbRecord, stored: dict[str, StoredXorb]) -> None:
    xorb = stored.get(hashing.to_hex(record.xorb_hash))
    if xorb is None:
        raise InvalidInputError(
            f"shard lists xorb {hashing.to_hex(record.xorb_hash)}, which was never uploaded"
        )
    if len(record.chunks) != len(xorb.chunk_hashes) or any(
        c.chunk_hash != h or c.length != xorb.chunk_ends[i] - xorb.chunk_start(i)
        for i, (c, h) in enumerate(zip(record.chunks, xorb.chunk_hashes, strict=True))
    ):
        raise IntegrityError(
            f"shard's chunk list for xorb {xorb.xorb_hash} differs from the uploaded xorb"
        )


def _check_file(
    record: shards.FileRecord, stored: dict[str, StoredXorb]
) -> tuple[shards.FileRecord, list[Placed]]:
    name = hashing.to_hex(record.file_hash)
    if record.range_hashes is None:
        raise InvalidInputError(f"file {name} has no verification entries")
    placed: list[Placed] = []
    refs: list[hashing.ChunkRef] = []
    offset = 0
    for term, proof in zip(record.terms, record.range_hashes, strict=True):
        xorb_hex = hashing.to_hex(term.xorb)
        xorb = stored.get(xorb_hex)
        if xorb is None:
            raise InvalidInputError(f"file {name} references xorb {xorb_hex}, which is not stored")
        if term.end > len(xorb.chunk_hashes):
            raise InvalidInputError(f"file {name} names chunks past the end of xorb {xorb_hex}")
        hashes = xorb.chunk_hashes[term.start : term.end]
        if hashing.range_hash(hashes) != proof:
            raise IntegrityError(f"file {name}: a verification hash does not match its chunks")
        item = Placed(XetTerm(xorb_hex, term.start, term.end), xorb, offset)
        if item.length != term.length:
            raise IntegrityError(f"file {name}: a term's length does not match its chunks")
        refs.extend(
            (xorb.chunk_hashes[i], xorb.chunk_ends[i] - xorb.chunk_start(i))
            for i in range(term.start, term.end)
        )
        placed.append(item)
        offset += item.length
    if hashing.file_hash(refs) != record.file_hash:
        raise IntegrityError(f"file hash {name} does not match the chunks its terms name")
    return record, placed
