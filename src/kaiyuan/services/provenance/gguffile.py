"""Tensors of a GGUF file (llama.cpp's format), its header read strictly through byte ranges.

Layout, little-endian throughout: magic `GGUF`, u32 version (2 and 3 share one layout), u64
tensor count, u64 key/value count; the key/values (string key, u32 value type, value); the tensor
infos (string name, u32 n_dims, n_dims x i64 `ne` innermost first, u32 ggml type, u64 offset in
the data section); padding to `general.alignment` (a u32, 32 when absent); the data section. A
string is a u64 byte count and UTF-8 bytes; an array a u32 item type, a u64 count and the items.

The rules are those of llama.cpp's loader (gguf.cpp), which decides in practice what a GGUF file
is: unique keys and tensor names, at most four dimensions, rows a whole number of quant blocks,
and each tensor exactly where the one before ends, rounded up to the alignment (no overlaps, gaps
or misaligned data). Bytes after the last tensor are allowed, as llama.cpp allows them. Stricter,
since what is accepted here is what a fingerprint is computed from: at least one dimension and
none empty, UTF-8 keys, names and kept strings, booleans 0 or 1. Arrays of arrays (which gguf-py
writes and llama.cpp refuses) are read, to a small depth.

The header is read front to back in bounded pieces and never past `max_metadata_bytes`, so a
model in the blob store is parsed without fetching it; every count and length is checked against
the bytes left before anything is allocated or read for it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType
from gguf.quants import dequantize

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.services.provenance.source import Floats, ParsedWeights, WeightFile

MAX_METADATA_BYTES = 64 * 1024 * 1024  # all before the data section; large vocabularies take ~10 MB
MAX_TENSORS = 65_536  # the largest published models hold a few thousand
MAX_KEPT_ITEMS = 64  # longer arrays (scores, token types, merges) are checked, not kept
MAX_NAME_BYTES = 65_535  # the specification's bound on keys, applied to tensor names too
MAX_ARRAY_DEPTH = 3
MAX_DIMS = 4
DEFAULT_ALIGNMENT = 32
TOKENS_KEY = "tokenizer.ggml.tokens"
ALIGNMENT_KEY = "general.alignment"
READ_PIECE = 1024 * 1024
_U64 = struct.Struct("<Q")
MAGIC = b"GGUF"
VERSIONS = (2, 3)

_SCALARS: dict[int, str] = {
    GGUFValueType.UINT8: "B",
    GGUFValueType.INT8: "b",
    GGUFValueType.UINT16: "H",
    GGUFValueType.INT16: "h",
    GGUFValueType.UINT32: "I",
    GGUFValueType.INT32: "i",
    GGUFValueType.FLOAT32: "f",
    GGUFValueType.BOOL: "B",  # read as a byte so that 2..255 can be refused
    GGUFValueType.UINT64: "Q",
    GGUFValueType.INT64: "q",
    GGUFValueType.FLOAT64: "d",
}
_STRING, _ARRAY, _BOOL = GGUFValueType.STRING, GGUFValueType.ARRAY, GGUFValueType.BOOL
# The fewest bytes a string (its length) or an array (item type and count) takes.
_MIN_STRING, _MIN_ARRAY = 8, 12
_MIN_KV = 8 + 1 + 4 + 1  # key length, a 1-byte key, value type, a 1-byte value
_MIN_TENSOR = 8 + 1 + 4 + 8 + 4 + 8  # name length, 1 byte of name, n_dims, one dim, type, offset
_I64 = 1 << 63  # ggml counts elements and bytes in int64
_GGML_TYPES = {int(t): t for t in GGML_QUANT_SIZES}
# Types gguf.quants does not dequantize but numpy reads directly.
_PLAIN: dict[GGMLQuantizationType, str] = {
    GGMLQuantizationType.F64: "<f8",
    GGMLQuantizationType.I8: "<i1",
    GGMLQuantizationType.I16: "<i2",
    GGMLQuantizationType.I32: "<i4",
    GGMLQuantizationType.I64: "<i8",
}


@dataclass(frozen=True, slots=True)
class GgufTensor:
    """One tensor of a GGUF file; `shape` in numpy order (ggml's `ne` reversed)."""

    name: str
    shape: tuple[int, ...]
    ggml_type: GGMLQuantizationType
    byte_range: tuple[int, int]
    file: WeightFile

    @property
    def dtype(self) -> str:
        return self.ggml_type.name

    def read_rows(self, start: int, stop: int) -> Floats:
        """Rows [start, stop) dequantized; only their bytes (whole blocks for 1-D) are read."""
        rows = self.shape[0]
        if not 0 <= start <= stop <= rows:
            raise InvalidInputError(f"tensor {self.name!r}: rows {start}:{stop} of {rows}")
        if start == stop:
            return np.zeros((0, *self.shape[1:]), dtype=np.float32)
        block, type_size = GGML_QUANT_SIZES[self.ggml_type]
        if len(self.shape) == 1:  # rows are elements: read the blocks that cover them
            first, last = start // block, -(-stop // block)
            raw = self._read(first * type_size, (last - first) * type_size)
            skip = start - first * block
            return self._decode(raw)[skip : skip + stop - start]
        row_bytes = (self.byte_range[1] - self.byte_range[0]) // rows
        raw = self._read(start * row_bytes, (stop - start) * row_bytes)
        return self._decode(raw).reshape((stop - start, *self.shape[1:]))

    def _read(self, offset: int, length: int) -> bytes:
        return self.file.read_at(self.byte_range[0] + offset, length)

    def _decode(self, raw: bytes) -> Floats:
        plain = _PLAIN.get(self.ggml_type)
        if plain is not None:
            return np.frombuffer(raw, dtype=plain).astype(np.float32)
        try:
            with np.errstate(all="ignore"):  # hostile scales may overflow; that is their value
                values = dequantize(np.frombuffer(raw, dtype=np.uint8), self.ggml_type)
        except NotImplementedError:
            raise InvalidInputError(
                f"tensor {self.name!r}: {self.dtype} cannot be dequantized"
            ) from None
        return np.asarray(values).astype(np.float32).reshape(-1)


@dataclass(frozen=True, slots=True)
class _TensorInfo:
    name: str
    shape: tuple[int, ...]  # numpy order
    ggml_type: GGMLQuantizationType
    size: int  # bytes
    offset: int  # within the data section


def read_gguf(
    file: WeightFile,
    *,
    max_metadata_bytes: int = MAX_METADATA_BYTES,
    max_tensors: int = MAX_TENSORS,
) -> ParsedWeights:
    """The tensors, key/values and vocabulary of the GGUF file `file`.

    Only the header is read. `metadata` keeps scalars, strings and arrays of at most
    MAX_KEPT_ITEMS items; `tokenizer.ggml.tokens` becomes `tokens`. InvalidInput, naming the
    field or tensor and the rule, for anything the format does not allow.
    """
    size = file.size
    cursor = _Cursor(file, min(size, max_metadata_bytes), size)
    if cursor.take(4, "the magic") != MAGIC:
        raise InvalidInputError(f"{file.name}: not a GGUF file (no 'GGUF' magic)")
    version = cursor.unpack("I", "the version")
    if version not in VERSIONS:
        raise InvalidInputError(f"{file.name}: GGUF version {version} {_version_problem(version)}")
    tensor_count = cursor.unpack("Q", "the tensor count")
    kv_count = cursor.unpack("Q", "the key/value count")
    if tensor_count > max_tensors:
        raise InvalidInputError(f"{file.name}: {tensor_count} tensors exceed {max_tensors}")
    if kv_count * _MIN_KV + tensor_count * _MIN_TENSOR > cursor.left:
        raise InvalidInputError(
            f"{file.name}: {kv_count} key/values and {tensor_count} tensors cannot fit "
            f"in the {cursor.left} bytes left in {cursor.bound}"
        )
    metadata, tokens, alignment = _read_metadata(cursor, kv_count)
    infos = [_read_tensor_info(cursor, index) for index in range(tensor_count)]
    data_start = _round_up(cursor.position, alignment)
    tensors = _place(file, infos, data_start, alignment, size)
    return ParsedWeights("gguf", file, tensors, metadata, tokens)


def _version_problem(version: int) -> str:
    if version and not version & 0xFFFF:  # 3 read with the wrong byte order
        return "looks big-endian; only little-endian files are read"
    return f"is not supported (only {' and '.join(map(str, VERSIONS))})"


class _Cursor:
    """Reads a file front to back in pieces of READ_PIECE bytes, never past `limit`."""

    def __init__(self, file: WeightFile, limit: int, size: int) -> None:
        self.file = file
        self.limit = limit
        self.bound = "the file" if limit >= size else f"the {limit}-byte header limit"
        self.position = 0
        self._piece = b""
        self._piece_at = 0

    @property
    def left(self) -> int:
        return self.limit - self.position

    def skip(self, length: int, what: str) -> None:
        if length > self.left:
            raise InvalidInputError(f"{self.file.name}: {what} runs past {self.bound}")
        self.position += length

    def take(self, length: int, what: str) -> bytes:
        start = self.position
        self.skip(length, what)
        offset = start - self._piece_at
        if offset < 0 or offset + length > len(self._piece):
            self._fill(start, length)
            offset = 0
        return self._piece[offset : offset + length]

    def _fill(self, start: int, length: int) -> bytes:
        """Read the piece that starts at `start` and holds at least `length` bytes."""
        self._piece_at = start
        self._piece = self.file.read_at(start, min(max(length, READ_PIECE), self.limit - start))
        return self._piece

    def strings(self, count: int, what: str, *, keep: bool) -> list[str] | None:
        """`count` length-prefixed strings, decoded when `keep` (else only walked over).

        Bytes that are not UTF-8 are kept as backslash escapes. A tight loop on the current
        piece, without per-string messages: a vocabulary runs to 262,144 tokens and its merges
        further.
        """
        found: list[str] | None = [] if keep else None
        add = found.append if found is not None else None
        length_at = _U64.unpack_from
        piece, base, position, limit = self._piece, self._piece_at, self.position, self.limit
        end = base + len(piece)  # the file offset where the current piece ends
        for _ in range(count):
            if position + 8 > end:
                if position + 8 > limit:
                    raise InvalidInputError(f"{self.file.name}: {what} runs past {self.bound}")
                piece, base = self._fill(position, 8), position
                end = base + len(piece)
            (length,) = length_at(piece, position - base)
            position += 8
            if position + length > end:
                if length > limit - position:
                    raise InvalidInputError(f"{self.file.name}: {what} runs past {self.bound}")
                if add is not None:
                    piece, base = self._fill(position, length), position
                    end = base + len(piece)
            if add is not None:
                at = position - base
                add(piece[at : at + length].decode("utf-8", "backslashreplace"))
            position += length
        self.position = position
        return found

    def unpack(self, code: str, what: str) -> int:
        value: int = struct.unpack("<" + code, self.take(struct.calcsize(code), what))[0]
        return value

    def string(self, what: str, *, errors: str = "strict") -> str:
        return self.text(self.unpack("Q", f"{what}'s length"), what, errors=errors)

    def skip_string(self, what: str) -> None:
        self.skip(self.unpack("Q", f"{what}'s length"), what)

    def name(self, what: str) -> str:
        length = self.unpack("Q", f"{what}'s length")
        if not 0 < length <= MAX_NAME_BYTES:
            raise InvalidInputError(
                f"{self.file.name}: {what} is {length} bytes (must be 1 to {MAX_NAME_BYTES})"
            )
        return self.text(length, what)

    def text(self, length: int, what: str, *, errors: str = "strict") -> str:
        raw = self.take(length, what)
        try:
            return raw.decode("utf-8", errors=errors)
        except UnicodeDecodeError:
            raise InvalidInputError(f"{self.file.name}: {what} is not UTF-8") from None


def _read_metadata(
    cursor: _Cursor, count: int
) -> tuple[dict[str, object], tuple[str, ...] | None, int]:
    metadata: dict[str, object] = {}
    seen: set[str] = set()
    tokens: tuple[str, ...] | None = None
    alignment = DEFAULT_ALIGNMENT
    where = cursor.file.name
    for index in range(count):
        key = cursor.name(f"key {index}")
        if key in seen:
            raise InvalidInputError(f"{where}: the key {key!r} appears twice")
        seen.add(key)
        kind = cursor.unpack("I", f"the type of {key!r}")
        if key == TOKENS_KEY:
            tokens = _read_tokens(cursor, kind)
            continue
        value, kept = _read_value(cursor, kind, repr(key), depth=0, keep=True)
        if key == ALIGNMENT_KEY:
            if kind != GGUFValueType.UINT32:
                raise InvalidInputError(f"{where}: {ALIGNMENT_KEY} must be a UINT32")
            if not isinstance(value, int) or value <= 0 or value & (value - 1):
                raise InvalidInputError(f"{where}: {ALIGNMENT_KEY} {value} is not a power of two")
            alignment = value
        if kept:
            metadata[key] = value
    return metadata, tokens, alignment


def _read_tokens(cursor: _Cursor, kind: int) -> tuple[str, ...]:
    where = f"{cursor.file.name}: {TOKENS_KEY}"
    if kind != _ARRAY or cursor.unpack("I", f"{TOKENS_KEY}'s item type") != _STRING:
        raise InvalidInputError(f"{where} must be an array of strings")
    count = cursor.unpack("Q", f"{TOKENS_KEY}'s length")
    if count * _MIN_STRING > cursor.left:
        raise InvalidInputError(f"{where}: {count} tokens cannot fit in {cursor.bound}")
    # Some vocabularies hold byte pieces that are not UTF-8 on their own. They are kept, spelt
    # as `\xNN` escapes: unlike U+FFFD replacement this keeps distinct tokens distinct (rows
    # are paired by text), and unlike surrogate escapes it gives text that encodes anywhere.
    return tuple(cursor.strings(count, TOKENS_KEY, keep=True) or ())


def _read_value(
    cursor: _Cursor, kind: int, what: str, *, depth: int, keep: bool
) -> tuple[object, bool]:
    """The value of type `kind` and whether it is kept (arrays past MAX_KEPT_ITEMS are not)."""
    code = _SCALARS.get(kind)
    if code is not None:
        value = cursor.unpack(code, what)
        if kind == _BOOL:
            if value not in {0, 1}:
                raise InvalidInputError(f"{cursor.file.name}: {what} is a BOOL of {value}")
            return bool(value), keep
        return value, keep
    if kind == _STRING:
        if not keep:
            cursor.skip_string(what)
            return None, False
        return cursor.string(what), True
    if kind == _ARRAY:
        return _read_array(cursor, what, depth=depth + 1, keep=keep)
    raise InvalidInputError(f"{cursor.file.name}: {what} has an unknown value type {kind}")


def _read_array(cursor: _Cursor, what: str, *, depth: int, keep: bool) -> tuple[object, bool]:
    where = cursor.file.name
    if depth > MAX_ARRAY_DEPTH:
        raise InvalidInputError(f"{where}: {what} nests arrays deeper than {MAX_ARRAY_DEPTH}")
    item = cursor.unpack("I", f"{what}'s item type")
    count = cursor.unpack("Q", f"{what}'s length")
    code = _SCALARS.get(item)
    if code is not None:
        item_size = struct.calcsize(code)
    elif item in {_STRING, _ARRAY}:
        item_size = _MIN_STRING if item == _STRING else _MIN_ARRAY
    else:
        raise InvalidInputError(f"{where}: {what} holds items of an unknown type {item}")
    if count * item_size > cursor.left:
        raise InvalidInputError(f"{where}: {what} of {count} items cannot fit in {cursor.bound}")
    keep = keep and count <= MAX_KEPT_ITEMS
    if code is not None and not keep:  # fixed-size items are skipped without reading them
        cursor.skip(count * item_size, what)
        return None, False
    if code is not None and item != _BOOL:
        return list(struct.unpack(f"<{count}{code}", cursor.take(count * item_size, what))), True
    if item == _STRING and not keep:
        cursor.strings(count, what, keep=False)
        return None, False
    if not keep:  # strings and arrays are walked through, to find where the array ends
        for i in range(count):
            _read_value(cursor, item, f"{what}[{i}]", depth=depth, keep=False)
        return None, False
    items = [
        _read_value(cursor, item, f"{what}[{i}]", depth=depth, keep=True)[0] for i in range(count)
    ]
    return items, True


def _read_tensor_info(cursor: _Cursor, index: int) -> _TensorInfo:
    where = cursor.file.name
    name = cursor.name(f"tensor {index}'s name")
    n_dims = cursor.unpack("I", f"tensor {name!r}'s n_dims")
    if not 1 <= n_dims <= MAX_DIMS:
        raise InvalidInputError(f"{where}: tensor {name!r} has {n_dims} dimensions (1 to 4)")
    ne = struct.unpack(f"<{n_dims}q", cursor.take(8 * n_dims, f"tensor {name!r}'s dimensions"))
    elements = 1
    for dim in ne:
        elements *= dim
        if dim <= 0 or elements >= _I64:
            raise InvalidInputError(
                f"{where}: tensor {name!r} dimensions {list(ne)} must be positive "
                f"with fewer than 2**63 elements"
            )
    raw_type = cursor.unpack("I", f"tensor {name!r}'s type")
    ggml_type = _GGML_TYPES.get(raw_type)
    if ggml_type is None:
        raise InvalidInputError(f"{where}: tensor {name!r} has an unknown ggml type {raw_type}")
    block, type_size = GGML_QUANT_SIZES[ggml_type]
    if ne[0] % block:
        raise InvalidInputError(
            f"{where}: tensor {name!r} rows of {ne[0]} are not whole {ggml_type.name} blocks "
            f"of {block}"
        )
    offset = cursor.unpack("Q", f"tensor {name!r}'s offset")
    shape = tuple(reversed(ne))
    return _TensorInfo(name, shape, ggml_type, elements // block * type_size, offset)


def _place(
    file: WeightFile, infos: list[_TensorInfo], data_start: int, alignment: int, size: int
) -> tuple[GgufTensor, ...]:
    """Tensors where llama.cpp puts them: in order, each aligned, right after the one before."""
    names: set[str] = set()
    tensors: list[GgufTensor] = []
    expected = 0
    for info in infos:
        if info.name in names:
            raise InvalidInputError(f"{file.name}: the tensor name {info.name!r} appears twice")
        names.add(info.name)
        if info.offset != expected:
            if info.offset % alignment:
                problem = f"is not aligned to {alignment} bytes"
            elif info.offset < expected:
                problem = "overlaps the tensor before it"
            else:
                problem = "leaves a gap after the tensor before it"
            raise InvalidInputError(
                f"{file.name}: tensor {info.name!r} at data offset {info.offset} {problem} "
                f"(expected {expected})"
            )
        begin = data_start + info.offset
        end = begin + info.size
        if end > size:
            raise InvalidInputError(
                f"{file.name}: tensor {info.name!r} (bytes {begin}:{end}) runs past the end "
                f"of the file ({size} bytes)"
            )
        tensors.append(GgufTensor(info.name, info.shape, info.ggml_type, (begin, end), file))
        expected = _round_up(info.offset + info.size, alignment)
    return tuple(tensors)


def _round_up(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment
