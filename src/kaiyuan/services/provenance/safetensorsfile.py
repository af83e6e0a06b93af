"""Tensors of a safetensors file, read by rows through the strict header reader.

A sharded checkpoint is several such files tied together by `model.safetensors.index.json`
(`weight_map`: tensor name → shard file); `read_index` validates that map so a hostile index
cannot point outside the repository or name one tensor twice.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass

import numpy as np

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.services.provenance.safetensors import (
    LENGTH_BYTES,
    MAX_HEADER_BYTES,
    TensorInfo,
    parse_header,
)
from kaiyuan.services.provenance.source import Floats, ParsedWeights, WeightFile

INDEX_SUFFIX = ".safetensors.index.json"
MAX_INDEX_BYTES = 16 * 1024 * 1024

# Stored types read as floats; the others (integers, 8-bit and smaller floats) are hashed but
# not compared, since no numpy type decodes them and they are rare in published weights.
_NUMPY: dict[str, str] = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2"}


@dataclass(frozen=True, slots=True)
class SafetensorsTensor:
    """One tensor of a safetensors file."""

    info: TensorInfo
    file: WeightFile
    data_start: int

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def shape(self) -> tuple[int, ...]:
        return self.info.shape

    @property
    def dtype(self) -> str:
        return self.info.dtype

    @property
    def byte_range(self) -> tuple[int, int]:
        return self.data_start + self.info.begin, self.data_start + self.info.end

    def read_rows(self, start: int, stop: int) -> Floats:
        rows = self.shape[0] if self.shape else 1
        if not 0 <= start <= stop <= rows:
            raise InvalidInputError(f"tensor {self.name!r}: rows {start}:{stop} of {rows}")
        stored = _NUMPY.get(self.dtype)
        if stored is None:
            raise InvalidInputError(f"tensor {self.name!r}: {self.dtype} is not read as floats")
        row_elements = math.prod(self.shape[1:]) if self.shape else 1
        width = np.dtype(stored).itemsize
        begin = self.byte_range[0] + start * row_elements * width
        raw = self.file.read_at(begin, (stop - start) * row_elements * width)
        values = np.frombuffer(raw, dtype=stored)
        if self.dtype == "BF16":  # bfloat16 is the top half of a float32
            widened = np.empty(values.size, np.uint32)
            np.left_shift(values, 16, out=widened, dtype=np.uint32)  # one pass
            floats = widened.view(np.float32)
        else:
            floats = values.astype(np.float32)
        return floats.reshape((stop - start, *self.shape[1:]))


def read_safetensors(file: WeightFile, max_header_bytes: int = MAX_HEADER_BYTES) -> ParsedWeights:
    """The tensors of the safetensors file `file`; InvalidInput for anything malformed."""
    size = file.size
    if size < LENGTH_BYTES:
        raise InvalidInputError(f"{file.name}: not a safetensors file (shorter than 8 bytes)")
    length = int.from_bytes(file.read_at(0, LENGTH_BYTES), "little")
    if length > max_header_bytes:
        raise InvalidInputError(f"{file.name}: safetensors header of {length} bytes is too large")
    if LENGTH_BYTES + length > size:
        raise InvalidInputError(f"{file.name}: safetensors header is longer than the file")
    header = parse_header(file.read_at(LENGTH_BYTES, length), size - LENGTH_BYTES - length)
    tensors = tuple(SafetensorsTensor(t, file, header.data_start) for t in header.tensors)
    return ParsedWeights("safetensors", file, tensors, dict(header.metadata))


def read_index(raw: bytes, name: str) -> dict[str, str]:
    """The `weight_map` of a sharded checkpoint's index: tensor name → shard path.

    Shard paths are resolved next to the index and must be plain `.safetensors` file names
    (no folders, no `..`): an index may only join files that sit beside it.
    """
    if len(raw) > MAX_INDEX_BYTES:
        raise InvalidInputError(f"{name}: index larger than {MAX_INDEX_BYTES} bytes")
    try:
        document = json.load(io.BytesIO(raw))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidInputError(f"{name}: not a JSON document") from None
    weight_map = document.get("weight_map") if isinstance(document, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise InvalidInputError(f"{name}: needs a non-empty 'weight_map' object")
    for tensor, shard in weight_map.items():
        if (
            not isinstance(shard, str)
            or "/" in shard
            or "\\" in shard
            or shard in {"", ".", ".."}
            or not shard.endswith(".safetensors")
        ):
            raise InvalidInputError(f"{name}: tensor {tensor!r} points at {shard!r}")
    return dict(weight_map)
