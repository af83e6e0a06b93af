"""The header of a safetensors file, read strictly and without touching tensor data.

Layout: an 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the data region.
The JSON maps tensor names to `{dtype, shape, data_offsets: [begin, end]}` (offsets relative to
the data region) plus an optional `__metadata__` object of strings. The reference library refuses
overlaps, gaps, sizes that do not match and numbers past 64 bits; so does this reader, and a
little more, since what it accepts decides what a fingerprint is computed from: duplicate keys
and a header not starting with `{` (both forbidden by the format's specification, which the
library does not enforce yet), and unknown tensor fields (no writer emits them; a field whose
meaning is unknown must not be silently dropped from what is fingerprinted).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import IO, Any

from kaiyuan.core.errors import InvalidInputError

MAX_HEADER_BYTES = 100_000_000  # the reference implementation's limit
LENGTH_BYTES = 8
METADATA_KEY = "__metadata__"

# Bits per element, as the format defines them (sub-byte types pack into whole bytes).
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}
_TENSOR_FIELDS = {"dtype", "shape", "data_offsets"}
_U64 = 1 << 64  # shapes, offsets and sizes are 64-bit unsigned in the reference reader


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int  # offsets within the data region
    end: int

    @property
    def elements(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True, slots=True)
class SafetensorsHeader:
    tensors: tuple[TensorInfo, ...]  # in data order
    metadata: dict[str, str]
    data_start: int  # where the data region begins in the file

    @property
    def parameters(self) -> int:
        return sum(t.elements for t in self.tensors)


def read_header(
    source: IO[bytes], file_size: int, max_header_bytes: int = MAX_HEADER_BYTES
) -> SafetensorsHeader:
    """The header of the safetensors file `source` (positioned at its start) of `file_size`.

    Reads the 8-byte length and the JSON header, never the tensor data; InvalidInput, naming
    the tensor and the rule, for anything the format does not allow.
    """
    prefix = _read_exactly(source, LENGTH_BYTES)
    if len(prefix) < LENGTH_BYTES:
        raise InvalidInputError("not a safetensors file: shorter than its 8-byte header length")
    length = int.from_bytes(prefix, "little")
    if length > max_header_bytes:
        raise InvalidInputError(f"safetensors header of {length} bytes exceeds {max_header_bytes}")
    if LENGTH_BYTES + length > file_size:
        raise InvalidInputError("safetensors header is longer than the file")
    raw = _read_exactly(source, length)
    if len(raw) != length:
        raise InvalidInputError("safetensors header is cut short")
    return parse_header(raw, file_size - LENGTH_BYTES - length)


def parse_header(raw: bytes, data_size: int) -> SafetensorsHeader:
    """The JSON header `raw`, checked against a data region of `data_size` bytes."""
    if not raw.startswith(b"{"):
        raise InvalidInputError("safetensors header must start with '{'")
    try:
        document = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidInputError(f"safetensors header is not UTF-8 JSON: {str(exc)[:120]}") from None
    if not isinstance(document, dict):
        raise InvalidInputError("safetensors header must be a JSON object")
    metadata = _metadata(document.pop(METADATA_KEY, None))
    tensors = sorted(
        (_tensor(name, value) for name, value in document.items()),
        key=lambda t: (t.begin, t.end),  # an empty tensor sorts before one at the same offset
    )
    position = 0
    for tensor in tensors:
        if tensor.begin != position:
            problem = "overlaps the one before" if tensor.begin < position else "leaves a gap"
            raise InvalidInputError(f"tensor {tensor.name!r} {problem} (offset {tensor.begin})")
        position = tensor.end
    if position != data_size:
        raise InvalidInputError(
            f"the tensors cover {position} bytes but the data region holds {data_size}"
        )
    return SafetensorsHeader(tuple(tensors), metadata, LENGTH_BYTES + len(raw))


def _read_exactly(source: IO[bytes], size: int) -> bytes:
    """`size` bytes, or fewer only at the end of the stream (raw streams may return less)."""
    pieces: list[bytes] = []
    wanted = size
    while wanted > 0:
        piece = source.read(wanted)
        if not piece:
            break
        pieces.append(piece)
        wanted -= len(piece)
    return b"".join(pieces)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        _check_text(key)
        if key in result:
            raise InvalidInputError(f"safetensors header repeats the key {key!r}")
        result[key] = value
    return result


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escape: legal JSON syntax, not Unicode text
        raise InvalidInputError(f"safetensors header holds a lone surrogate in {text!r}") from None


def _metadata(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidInputError("safetensors __metadata__ must map strings to strings")
    for text in value.values():
        _check_text(text)
    return dict(value)


def _tensor(name: str, value: object) -> TensorInfo:
    if not isinstance(value, dict) or set(value) != _TENSOR_FIELDS:
        raise InvalidInputError(
            f"tensor {name!r} must have exactly 'dtype', 'shape' and 'data_offsets'"
        )
    dtype, shape, offsets = value["dtype"], value["shape"], value["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise InvalidInputError(f"tensor {name!r} has an unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_u64(d) for d in shape):
        raise InvalidInputError(
            f"tensor {name!r} shape must be a list of non-negative 64-bit integers"
        )
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2  # noqa: PLR2004
        or not all(_u64(o) for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise InvalidInputError(
            f"tensor {name!r} data_offsets must be [begin, end], 64-bit, begin <= end"
        )
    bits = _bits(name, shape, DTYPE_BITS[dtype])
    if bits % 8 or bits // 8 != offsets[1] - offsets[0]:
        raise InvalidInputError(
            f"tensor {name!r}: {dtype} {shape} needs {bits / 8:g} bytes, "
            f"its offsets span {offsets[1] - offsets[0]}"
        )
    return TensorInfo(name, dtype, tuple(shape), offsets[0], offsets[1])


def _bits(name: str, shape: list[int], bits_per_element: int) -> int:
    """The tensor's size in bits; refused where a 64-bit reader would overflow computing it."""
    total = 1
    for dim in shape:  # in order, as the reference reader multiplies: [2**40, 2**40, 0] fails
        total *= dim
        if total >= _U64:
            raise InvalidInputError(f"tensor {name!r}: shape {shape} overflows 64 bits")
    total *= bits_per_element
    if total >= _U64:
        raise InvalidInputError(f"tensor {name!r}: shape {shape} overflows 64 bits")
    return total


def _u64(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _U64
