"""The strict safetensors header reader, against files the real `safetensors` library writes.

For files the library writes, ours reads the same tensors, dtypes, shapes and offsets. For
mutated files (flipped, cut, spliced bytes; edited JSON), anything the library refuses we refuse
too; anything we accept, it accepts.
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save as save_numpy
from safetensors.torch import save as save_torch

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.services.provenance.safetensors import MAX_HEADER_BYTES, read_header

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))


def ours(data: bytes) -> object:
    return read_header(io.BytesIO(data), len(data))


def theirs(data: bytes, path: Path) -> dict[str, tuple[str, list[int]]] | None:
    """What the reference library makes of the file: None when it refuses it."""
    path.write_bytes(data)
    try:
        with safe_open(str(path), "numpy") as handle:
            found = {}
            for name in handle.keys():  # noqa: SIM118 - not a dict
                piece = handle.get_slice(name)
                found[name] = (piece.get_dtype(), list(piece.get_shape()))
            return found
    except (SafetensorError, ValueError, OSError, TypeError):
        return None


NUMPY_FILE = save_numpy(
    {
        "embed.weight": np.arange(48, dtype=np.float32).reshape(6, 8),
        "layer.0.bias": np.zeros(8, dtype=np.float16),
        "layer.0.mask": np.ones((2, 2), dtype=np.bool_),
        "scalar": np.array(3, dtype=np.int64),
        "empty": np.zeros((0, 4), dtype=np.uint8),
    },
    metadata={"format": "np", "note": "模型"},
)
TORCH_FILE = save_torch(
    {
        "w": torch.randn(4, 4).to(torch.bfloat16),
        "f8": torch.zeros(3, dtype=torch.float8_e4m3fn),
        "i": torch.arange(5, dtype=torch.int32),
    }
)


@pytest.mark.parametrize("data", [NUMPY_FILE, TORCH_FILE], ids=["numpy", "torch"])
def test_reads_what_the_library_writes(data: bytes, tmp_path: Path) -> None:
    header = read_header(io.BytesIO(data), len(data))
    reference = theirs(data, tmp_path / "x.safetensors")
    assert reference is not None
    assert {t.name: (t.dtype, list(t.shape)) for t in header.tensors} == reference
    with safe_open(str(tmp_path / "x.safetensors"), "numpy") as handle:
        assert header.metadata == (handle.metadata() or {})
    # Offsets: tensor bytes are where the header says.
    raw = json.loads(data[8 : header.data_start])
    for tensor in header.tensors:
        assert raw[tensor.name]["data_offsets"] == [tensor.begin, tensor.end]
    assert header.tensors[-1].end == len(data) - header.data_start


def test_numpy_parameters_and_dtypes() -> None:
    header = read_header(io.BytesIO(NUMPY_FILE), len(NUMPY_FILE))
    dtypes = {t.name: t.dtype for t in header.tensors}
    assert dtypes == {
        "embed.weight": "F32",
        "layer.0.bias": "F16",
        "layer.0.mask": "BOOL",
        "scalar": "I64",
        "empty": "U8",
    }
    assert header.parameters == 48 + 8 + 4 + 1 + 0
    assert header.metadata == {"format": "np", "note": "模型"}


def build(header: object, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


BAD = {
    "short": b"\x01\x00",
    "length past the end": struct.pack("<Q", 1000) + b"{}",
    "length over the limit": struct.pack("<Q", MAX_HEADER_BYTES + 1) + b"{}",
    "not json": struct.pack("<Q", 3) + b"{x}",
    "not utf-8": struct.pack("<Q", 4) + b'"\xff"' + b"}",
    "array": build([1, 2], b""),
    "unknown dtype": build({"a": {"dtype": "F7", "shape": [1], "data_offsets": [0, 1]}}, b"\0"),
    "negative dim": build({"a": {"dtype": "U8", "shape": [-1], "data_offsets": [0, 1]}}, b"\0"),
    "bool dim": build({"a": {"dtype": "U8", "shape": [True], "data_offsets": [0, 1]}}, b"\0"),
    "wrong span": build({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4),
    "reversed offsets": build({"a": {"dtype": "U8", "shape": [0], "data_offsets": [1, 0]}}, b"\0"),
    "gap": build({"a": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}, b"\0\0"),
    "overlap": build(
        {
            "a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
            "b": {"dtype": "U8", "shape": [2], "data_offsets": [1, 3]},
        },
        b"\0\0\0",
    ),
    "data past the end": build({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}}, b"\0"),
    "trailing bytes": build({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}, b"\0\0"),
    "metadata not strings": build({"__metadata__": {"a": 1}}, b""),
    "missing field": build({"a": {"dtype": "U8", "shape": [1]}}, b"\0"),
    "sub-byte remainder": build(
        {"a": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}, b"\0\0"
    ),
}


@pytest.mark.parametrize("data", BAD.values(), ids=BAD.keys())
def test_refuses_what_breaks_the_format(data: bytes, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError):
        ours(data)
    if data != BAD["length over the limit"]:
        assert theirs(data, tmp_path / "bad.safetensors") is None, "the library accepts it"


def test_duplicate_keys_are_refused() -> None:
    raw = b'{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}'
    with pytest.raises(InvalidInputError, match="repeats"):
        ours(struct.pack("<Q", len(raw)) + raw + b"\0")


def test_only_the_header_is_read() -> None:
    """The tensor data is never touched: a reader that fails past the header still works."""

    class HeaderOnly(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            if self.tell() >= 8 + struct.unpack("<Q", NUMPY_FILE[:8])[0]:
                raise AssertionError("read into the tensor data")
            return super().read(size)

    assert len(read_header(HeaderOnly(NUMPY_FILE), len(NUMPY_FILE)).tensors) == 5


@st.composite
def mutated_file(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from([NUMPY_FILE, TORCH_FILE])))
    end = 8 + struct.unpack("<Q", bytes(data[:8]))[0]
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, min(len(data), end + 16) - 1))
        action = draw(st.sampled_from(["flip", "digit", "cut", "splice"]))
        if action == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif action == "digit":
            data[at] = ord(draw(st.sampled_from("0123456789")))
        elif action == "cut":
            del data[at : at + draw(st.integers(1, 8))]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


@FUZZ
@given(st.one_of(mutated_file(), st.binary(max_size=64)))
@example(b"\x00" * 8)
@example(struct.pack("<Q", 2) + b"{}")
def test_mutations_agree_with_the_library(data: bytes) -> None:
    import tempfile

    try:
        header = ours(data)
    except InvalidInputError as exc:
        assert exc.message  # noqa: PT017 - every refusal says why
        return
    with tempfile.TemporaryDirectory() as tmp:
        reference = theirs(data, Path(tmp) / "m.safetensors")
    # Whatever we accept, the reference library accepts, with the same tensors and shapes.
    assert reference is not None, "we accept a file the reference library refuses"
    assert {t.name: (t.dtype, list(t.shape)) for t in header.tensors} == reference
