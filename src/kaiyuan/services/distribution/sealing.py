"""Sealed files: a chunked AES-256-GCM container with random access, and the keys around it.

Layout: `MAGIC | u32 header length | header (canonical JSON) | chunk 0 … chunk n-1`. The
header is in clear but authenticated: every chunk's additional data starts with the header's
SHA-256. Chunk i is the plaintext bytes [i·C, (i+1)·C), encrypted with a key derived from the
file's data key and file id, under nonce `0⁴ ‖ u64be(i)`, with additional data
`sha256(header) ‖ u64be(i) ‖ last-flag`. So a flipped bit, two chunks swapped, a chunk dropped
from the end or appended, and an edited header all fail to decrypt; an empty file still has
one (empty) chunk, so it too is checked. Counter nonces are safe because the chunk key is unique
to one sealing (the file id is random).

Random access: plaintext offset o is in chunk o // C, stored at `start + i·(C + 16)`, so a
tensor slice costs at most two partial chunks. Tensor names and shapes are inside the
ciphertext (the whole original file is sealed, its own header included).

Keys: each file gets a fresh 256-bit data key, stored only wrapped by the hub's key-encryption
key (keyring.py; bound to the file id and path by `key_binding`), so rotating the KEK rewraps
keys without touching data. A released key travels sealed (HPKE, X25519) to an ephemeral
public key of the requester, bound to the file id and a nonce, so it never crosses the wire
in the clear.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
import secrets
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kaiyuan.core.errors import IntegrityError, InvalidInputError
from kaiyuan.services.contents import RangedFile

MAGIC = b"KYSEAL1\x00"
VERSION = 1
TAG = 16
DEFAULT_CHUNK = 1024 * 1024  # 1 MiB: AES-GCM runs near full speed, a slice wastes little
MAX_CHUNK = 64 * 1024 * 1024
MAX_HEADER = 64 * 1024
_LENGTH = 4
_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
_RELEASE_INFO = b"kaiyuan-key-release/v1"
_FILE_ID = re.compile(r"[0-9a-f]{32}")


# (offset, length) -> those bytes of the stored container; a memoryview avoids a copy
ReadAt = Callable[[int, int], bytes | memoryview]


class Sink(Protocol):
    """Where a sealed container is written: a file, or a blob writer that hashes as it goes."""

    def write(self, data: bytes, /) -> object: ...


@dataclass(frozen=True, slots=True)
class SealedHeader:
    file_id: str  # random, 32 hex digits: binds the data key and every chunk to this file
    path: str  # the file's path in its repository
    plaintext_size: int
    chunk_size: int
    raw: bytes  # the header as stored (what chunks authenticate)

    @property
    def chunks(self) -> int:
        # at least one, even for an empty file: every sealed file has a tag to check
        return max(1, -(-self.plaintext_size // self.chunk_size))

    @property
    def data_start(self) -> int:
        return len(MAGIC) + _LENGTH + len(self.raw)

    @property
    def sealed_size(self) -> int:
        return self.data_start + self.plaintext_size + self.chunks * TAG

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(MAGIC + len(self.raw).to_bytes(_LENGTH, "big") + self.raw).digest()


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def seal(
    source: IO[bytes],
    size: int,
    out: Sink,
    data_key: bytes,
    path: str,
    chunk_size: int = DEFAULT_CHUNK,
) -> SealedHeader:
    """Encrypt `size` bytes of `source` into `out` as a sealed container; its header."""
    if not 0 < chunk_size <= MAX_CHUNK:
        raise InvalidInputError(f"chunk size must be 1 to {MAX_CHUNK} bytes")
    document = {
        "format": "kaiyuan-sealed",
        "version": VERSION,
        "aead": "AES-256-GCM",
        "file_id": secrets.token_hex(16),
        "path": path,
        "plaintext_size": size,
        "chunk_size": chunk_size,
    }
    raw = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    header = _header(raw)
    out.write(MAGIC + len(raw).to_bytes(_LENGTH, "big") + raw)
    cipher = _chunk_cipher(data_key, header.file_id)
    for index in range(header.chunks):
        piece = _read_exactly(source, min(chunk_size, size - index * chunk_size))
        out.write(cipher.encrypt(_nonce(index), piece, _aad(header, index)))
    return header


def read_header(read_at: ReadAt, size: int) -> SealedHeader:
    """The header of a sealed container of `size` bytes; InvalidInput if it is not one."""
    start = bytes(read_at(0, len(MAGIC) + _LENGTH)) if size >= len(MAGIC) + _LENGTH else b""
    if not start.startswith(MAGIC):
        raise InvalidInputError("not a sealed file (no Kaiyuan sealed-file magic)")
    length = int.from_bytes(start[len(MAGIC) :], "big")
    if not 0 < length <= MAX_HEADER or len(MAGIC) + _LENGTH + length > size:
        raise InvalidInputError(f"sealed header of {length} bytes does not fit the file")
    header = _header(bytes(read_at(len(MAGIC) + _LENGTH, length)))
    if header.sealed_size != size:
        raise IntegrityError(
            f"sealed file is {size} bytes; its header says {header.sealed_size} (cut or extended)"
        )
    return header


class SealedReader:
    """Plaintext bytes of a sealed file, decrypted in memory as they are asked for."""

    def __init__(
        self,
        read_at: ReadAt,
        size: int,
        data_key: bytes,
        path: str | None = None,
    ) -> None:
        """Open a sealed file for reading.

        `path`, when given, is where the caller found the file: a container sealed for another
        path (a whole file swapped in) is refused before anything is decrypted.
        """
        self.header = read_header(read_at, size)
        if path is not None and self.header.path != path:
            raise IntegrityError(f"{path} holds the sealed file of {self.header.path}")
        self._read_at = read_at
        self._cipher = _chunk_cipher(data_key, self.header.file_id)

    @property
    def size(self) -> int:
        return self.header.plaintext_size

    def read(self, offset: int, length: int) -> bytes:
        """Plaintext [offset, offset + length); IntegrityError if any chunk fails its tag."""
        if offset < 0 or length < 0 or offset + length > self.size:
            raise InvalidInputError(f"{length} bytes at {offset} run past the sealed file")
        if length == 0:
            return b""
        size = self.header.chunk_size
        first, last = offset // size, (offset + length - 1) // size
        plain = b"".join(self._chunk(i) for i in range(first, last + 1))
        skip = offset - first * size
        return plain[skip : skip + length]

    def read_into(self, offset: int, out: memoryview, threads: int = 1) -> None:
        """Plaintext [offset, offset + len(out)) decrypted straight into `out` (see scatter)."""
        self.scatter([(offset, out)], threads)

    def scatter(self, pieces: Sequence[tuple[int, memoryview]], threads: int = 1) -> None:
        """Plaintext ranges decrypted into their buffers: (offset, buffer) pairs, disjoint.

        Each chunk is decrypted once, whatever number of buffers it feeds. A chunk that lies
        within one buffer decrypts in place (no copy); one shared by several (or cut by a
        buffer's end) goes through a temporary buffer. With `threads` > 1 the chunks are split
        among threads (AES-GCM releases the GIL). IntegrityError if any chunk fails its check;
        the buffers then hold nothing the caller may use.
        """
        spans = sorted(
            ((offset, view.cast("B") if view.format != "B" else view) for offset, view in pieces),
            key=lambda piece: piece[0],
        )
        spans = [(offset, view) for offset, view in spans if len(view)]
        position = 0
        for offset, view in spans:
            if offset < position or offset + len(view) > self.size:
                raise InvalidInputError(
                    f"{len(view)} bytes at {offset} overlap another range or run past the file"
                )
            position = offset + len(view)
        if not spans:
            return
        size = self.header.chunk_size
        wanted = sorted(
            {
                index
                for offset, view in spans
                for index in range(offset // size, (offset + len(view) - 1) // size + 1)
            }
        )
        starts = [offset for offset, _ in spans]
        try:
            if threads <= 1 or len(wanted) < 2 * threads:
                self._decrypt_chunks(wanted, spans, starts)
                return
            count = len(wanted)
            groups = [
                wanted[count * k // threads : count * (k + 1) // threads] for k in range(threads)
            ]
            with ThreadPoolExecutor(max_workers=threads) as pool:
                futures = [pool.submit(self._decrypt_chunks, g, spans, starts) for g in groups]
                for done in futures:
                    done.result()
        except BaseException:
            # decrypt_into writes before it checks the tag: whatever stopped the work, leave
            # nothing of a possibly forged chunk behind
            for _, view in spans:
                _wipe(view)
            raise

    def _decrypt_chunks(
        self, indexes: list[int], spans: list[tuple[int, memoryview]], starts: list[int]
    ) -> None:
        header, size = self.header, self.header.chunk_size
        for index in indexes:
            begin = index * size
            plain = min(size, header.plaintext_size - begin)
            stop = begin + plain
            sealed = self._read_at(header.data_start + index * (size + TAG), plain + TAG)
            # the spans this chunk touches: from the last one starting at or before it
            first = max(0, bisect.bisect_right(starts, begin) - 1)
            touched = []
            for offset, view in spans[first:]:
                if offset >= stop:
                    break
                if offset + len(view) > begin:
                    touched.append((offset, view))
            nonce, aad = _nonce(index), _aad(header, index)
            try:
                if len(touched) == 1 and _covers(touched[0], begin, stop):
                    offset, view = touched[0]
                    target = view[begin - offset : stop - offset]
                    self._cipher.decrypt_into(nonce, sealed, aad, target)
                    continue
                whole = self._cipher.decrypt(nonce, sealed, aad)
            except InvalidTag:
                raise IntegrityError(
                    f"sealed chunk {index} of {header.path} fails its check (tampered, reordered "
                    "or the wrong key)"
                ) from None
            for offset, view in touched:
                lo, hi = max(begin, offset), min(stop, offset + len(view))
                view[lo - offset : hi - offset] = whole[lo - begin : hi - begin]

    def ranges(self, start: int, end: int, piece: int = 16 * 1024 * 1024) -> Iterator[bytes]:
        """Plaintext [start, end) in pieces of at most `piece` bytes."""
        if not 0 <= start <= end <= self.size:
            raise InvalidInputError(f"range {start}:{end} is outside the sealed file")
        while start < end:
            take = min(piece, end - start)
            yield self.read(start, take)
            start += take

    def stream(self, chunks_at_once: int = 16) -> Iterator[bytes]:
        """The whole plaintext in order, several chunks per read."""
        index = 0
        while index < self.header.chunks:
            stop = min(self.header.chunks, index + chunks_at_once)
            yield from self._chunks(index, stop)
            index = stop

    def _chunk(self, index: int) -> bytes:
        return next(self._chunks(index, index + 1))

    def _chunks(self, first: int, stop: int) -> Iterator[bytes]:
        header, size = self.header, self.header.chunk_size
        begin = header.data_start + first * (size + TAG)
        end = min(header.sealed_size, header.data_start + stop * (size + TAG))
        stored = self._read_at(begin, end - begin)
        for index in range(first, stop):
            at = (index - first) * (size + TAG)
            sealed = stored[at : at + size + TAG]
            try:
                yield self._cipher.decrypt(_nonce(index), sealed, _aad(header, index))
            except InvalidTag:
                raise IntegrityError(
                    f"sealed chunk {index} of {header.path} fails its check (tampered, reordered "
                    "or the wrong key)"
                ) from None


# --- keys ------------------------------------------------------------------------------------
def key_binding(file_id: str, path: str) -> bytes:
    """What a wrapped data key is bound to: the file id and the path it was sealed for."""
    return b"kaiyuan-data-key|" + file_id.encode() + b"|" + path.encode("utf-8")


def seal_for(requester: X25519PublicKey, data_key: bytes, file_id: str, nonce: bytes) -> bytes:
    """The data key sealed (HPKE) to a requester's ephemeral key, bound to file and nonce."""
    return _SUITE.encrypt(data_key, requester, _release_info(file_id, nonce))


def open_released(private: X25519PrivateKey, sealed: bytes, file_id: str, nonce: bytes) -> bytes:
    try:
        return _SUITE.decrypt(sealed, private, _release_info(file_id, nonce))
    except (InvalidTag, ValueError) as exc:
        raise IntegrityError(f"the released key does not open: {exc}") from None


def _chunk_cipher(data_key: bytes, file_id: str) -> AESGCM:
    """The chunks' key, derived from the data key and the file id.

    Sealing twice with the same data key (a caller's mistake) still never reuses a key and
    nonce pair.
    """
    derived = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=bytes.fromhex(file_id),
        info=b"kaiyuan-sealed-chunks/v1",
    ).derive(data_key)
    return AESGCM(derived)


def _release_info(file_id: str, nonce: bytes) -> bytes:
    return _RELEASE_INFO + b"|" + file_id.encode() + b"|" + nonce


# --- the container's pieces --------------------------------------------------------------------
def _header(raw: bytes) -> SealedHeader:
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidInputError("sealed header is not UTF-8 JSON") from None
    if not isinstance(document, dict) or document.get("format") != "kaiyuan-sealed":
        raise InvalidInputError("sealed header is not a Kaiyuan sealed-file header")
    if document.get("version") != VERSION or document.get("aead") != "AES-256-GCM":
        raise InvalidInputError("sealed file of an unknown version or cipher")
    file_id, path = document.get("file_id"), document.get("path")
    size, chunk = document.get("plaintext_size"), document.get("chunk_size")
    if not (isinstance(file_id, str) and _FILE_ID.fullmatch(file_id) and isinstance(path, str)):
        raise InvalidInputError("sealed header lacks its file id or path")
    if not (isinstance(size, int) and _natural(size)) or not (
        isinstance(chunk, int) and _natural(chunk) and 0 < chunk <= MAX_CHUNK
    ):
        raise InvalidInputError("sealed header has a bad size or chunk size")
    return SealedHeader(file_id, path, size, chunk, raw)


def _natural(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 62


def _wipe(view: memoryview) -> None:
    zeros = bytes(min(len(view), 1024 * 1024))
    for start in range(0, len(view), len(zeros)):
        piece = view[start : start + len(zeros)]
        piece[:] = zeros[: len(piece)]


def _covers(span: tuple[int, memoryview], begin: int, stop: int) -> bool:
    offset, view = span
    return offset <= begin and offset + len(view) >= stop


def _nonce(index: int) -> bytes:
    return b"\x00" * 4 + index.to_bytes(8, "big")


def _aad(header: SealedHeader, index: int) -> bytes:
    last = b"\x01" if index == header.chunks - 1 else b"\x00"
    return header.digest + index.to_bytes(8, "big") + last


def _read_exactly(source: IO[bytes], size: int) -> bytes:
    data = source.read(size)
    while len(data) < size:
        more = source.read(size - len(data))
        if not more:
            raise InvalidInputError(f"the file ended {size - len(data)} bytes early")
        data += more
    return data


def plaintext_file(reader: SealedReader) -> RangedFile:
    """A sealed file's plaintext as a read-only seekable file, decrypted as it is read."""
    return RangedFile(reader.size, reader.read_into)
