"""The strict safetensors header reader, against files the real `safetensors` library writes.

For files the library writes (fixed ones and random ones), ours reads the same tensors, dtypes,
shapes and offsets, and the offsets point at the tensors' bytes. For mutated files (flipped, cut,
spliced bytes; JSON edited field by field), anything the library refuses we refuse too; where we
refuse what it accepts, the rule is one listed in STRICTER, with the reason we are right.
"""

from __future__ import annotations

import io
import json
import math
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save as save_numpy
from safetensors.torch import save as save_torch

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.services.provenance.safetensors import (
    DTYPE_BITS,
    MAX_HEADER_BYTES,
    SafetensorsHeader,
    read_header,
)

FUZZ = settings(
    max_examples=250, deadline=None, print_blob=True, suppress_health_check=list(HealthCheck)
)


def ours(data: bytes) -> SafetensorsHeader:
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
    "not utf-8": struct.pack("<Q", 7) + b'{"\xff":1}',
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


def reference(data: bytes) -> dict[str, tuple[str, list[int]]] | None:
    with tempfile.TemporaryDirectory() as tmp:
        return theirs(data, Path(tmp) / "r.safetensors")


def split(data: bytes) -> tuple[dict[str, Any], bytes]:
    end = 8 + struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:end]), data[end:]


def assemble(raw: bytes, data: bytes = b"") -> bytes:
    return struct.pack("<Q", len(raw)) + raw + data


# --- random files, as the library writes them -----------------------------------------------
NUMPY_DTYPES = {
    "BOOL": np.bool_,
    "U8": np.uint8,
    "I8": np.int8,
    "U16": np.uint16,
    "I16": np.int16,
    "F16": np.float16,
    "U32": np.uint32,
    "I32": np.int32,
    "F32": np.float32,
    "C64": np.complex64,
    "U64": np.uint64,
    "I64": np.int64,
    "F64": np.float64,
}
TORCH_DTYPES = {
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "F16": torch.float16,
    "I16": torch.int16,
}
TEXT = st.text(st.characters(codec="utf-8"), max_size=10)
NAMES = TEXT.filter(lambda name: name != "__metadata__")  # "" is a name the library writes
SHAPES = st.lists(st.integers(0, 4), max_size=3)


@FUZZ
@given(
    st.dictionaries(NAMES, st.tuples(st.sampled_from(sorted(NUMPY_DTYPES)), SHAPES), max_size=6),
    st.none() | st.dictionaries(TEXT, TEXT, max_size=3),
)
@example({"": ("U8", [1])}, None)  # an empty name was refused; the library writes it
@example({}, {})
@example({"a": ("U8", [0]), "b": ("U8", [2])}, None)
def test_reads_any_file_numpy_writes(
    specs: dict[str, tuple[str, list[int]]], metadata: dict[str, str] | None
) -> None:
    arrays = {
        name: (np.arange(math.prod(shape)) % 7).astype(NUMPY_DTYPES[dtype]).reshape(shape)
        for name, (dtype, shape) in specs.items()
    }
    data = save_numpy(arrays, metadata=metadata)
    found = reference(data)
    if found is None:
        # The library cannot read some files it writes: with no tensors and metadata={} (0.8)
        # it writes the header `{},"__metadata__":{}}`. Then we refuse the file too.
        with pytest.raises(InvalidInputError):
            ours(data)
        return
    header = ours(data)
    assert {t.name: (t.dtype, list(t.shape)) for t in header.tensors} == found
    assert {t.name: (t.dtype, list(t.shape)) for t in header.tensors} == specs
    assert header.metadata == (metadata or {})
    for tensor in header.tensors:  # the offsets point at the tensor's own bytes
        start = header.data_start
        assert data[start + tensor.begin : start + tensor.end] == arrays[tensor.name].tobytes()


@settings(FUZZ, max_examples=60)
@given(st.dictionaries(NAMES, st.tuples(st.sampled_from(sorted(TORCH_DTYPES)), SHAPES), max_size=4))
def test_reads_any_file_torch_writes(specs: dict[str, tuple[str, list[int]]]) -> None:
    tensors = {
        name: torch.ones(shape).to(TORCH_DTYPES[dtype]) for name, (dtype, shape) in specs.items()
    }
    data = save_torch(tensors)
    header = ours(data)
    assert {t.name: (t.dtype, list(t.shape)) for t in header.tensors} == reference(data)
    assert {t.name: (t.dtype, list(t.shape)) for t in header.tensors} == specs


# --- the header edited field by field -------------------------------------------------------
# Where we refuse a file the library accepts, it is for one of these rules, each deliberate:
STRICTER = {
    # The format's README: "Duplicate keys are disallowed". The library's JSON map keeps the
    # last one, so a file could show one tensor to one reader and another to the next.
    "repeats the key",
    # The README: "The header data MUST begin with a `{` character". The library has the check
    # written and commented out, "reserved for 0.4.0".
    "must start with '{'",
    # An unknown tensor field: no writer emits one, and a reader that fingerprints weights
    # must not silently drop a field (a future byte order, say) that changes their meaning.
    "must have exactly 'dtype', 'shape' and 'data_offsets'",
}
ODD_NUMBERS = [0, 1, 2, 3, 8, -1, 1.0, True, "2", None, 2**32, 2**63, 2**64, 2**64 + 1]
ODD_DTYPES = [*DTYPE_BITS, "F7", "u8", "", 1, None, ["F32"], {"F32": 1}]
ODD_METADATA = [None, {}, {"a": "b"}, {"a": 1}, [], "x", {"a": "\ud800"}, {"\udfff": "a"}]
ODD_NAMES = ["", "\ud800", "__metadata__x", "模型", " ", "a\u0000"]


def edit_shape(draw: st.DrawFn, shape: object) -> object:
    if not isinstance(shape, list):
        return shape  # already replaced whole
    shape = list(shape)
    how = draw(st.sampled_from(["append", "pop", "set", "whole"]))
    if how == "whole":
        return draw(st.sampled_from([None, "2", 3]))
    if how == "append":
        shape.append(draw(st.sampled_from(ODD_NUMBERS)))
    elif how == "pop" and shape:
        shape.pop()
    elif how == "set" and shape:
        shape[draw(st.integers(0, len(shape) - 1))] = draw(st.sampled_from(ODD_NUMBERS))
    return shape


def edit_offsets(draw: st.DrawFn, offsets: object) -> object:
    if not (isinstance(offsets, list) and len(offsets) == 2):
        return offsets  # already edited
    begin, end = offsets
    if type(begin) is not int or type(end) is not int:
        return offsets
    delta = draw(st.sampled_from([-8, -2, -1, 1, 2, 8]))
    return draw(
        st.sampled_from(
            [
                [begin + delta, end],
                [begin, end + delta],
                [begin + delta, end + delta],
                [end, begin],
                [begin, draw(st.sampled_from(ODD_NUMBERS))],
                [begin],
                [begin, end, end],
            ]
        )
    )


def edit_tensor(draw: st.DrawFn, header: dict[str, Any], name: str) -> str | None:
    """Drop, copy, extend or rename the tensor `name`; or name it to be written twice."""
    how = draw(st.sampled_from(["drop", "copy", "extra", "rename", "duplicate"]))
    if how == "drop":
        del header[name]
    elif how == "copy":
        header[name + ".copy"] = dict(header[name])
    elif how == "extra":
        header[name]["extra"] = 1
    elif how == "rename":
        header[draw(st.sampled_from(ODD_NAMES))] = header.pop(name)
    else:
        return name
    return None


@st.composite
def edited_file(draw: st.DrawFn) -> bytes:
    header, data = split(draw(st.sampled_from([NUMPY_FILE, TORCH_FILE])))
    names = sorted(k for k in header if k != "__metadata__")
    prefix = suffix = b""
    duplicate = None
    for _ in range(draw(st.integers(1, 2))):
        edit = draw(st.sampled_from(["dtype", "shape", "offsets", "tensor", "meta", "data", "pad"]))
        name = draw(st.sampled_from(names))
        info = header.get(name)
        if not isinstance(info, dict):
            continue  # dropped or renamed by an earlier edit
        if edit == "dtype":
            info["dtype"] = draw(st.sampled_from(ODD_DTYPES))
        elif edit == "shape":
            info["shape"] = edit_shape(draw, info["shape"])
        elif edit == "offsets":
            info["data_offsets"] = edit_offsets(draw, info["data_offsets"])
        elif edit == "tensor":
            duplicate = edit_tensor(draw, header, name) or duplicate
        elif edit == "meta":
            header["__metadata__"] = draw(st.sampled_from(ODD_METADATA))
        elif edit == "data":
            cut = draw(st.integers(1, 8))
            data = data[:-cut] if draw(st.booleans()) else data + bytes(cut)
        else:
            prefix = draw(st.sampled_from([b"", b" ", b"\n", b"\xef\xbb\xbf"]))
            suffix = draw(st.sampled_from([b"", b"   ", b"\n\t", b"\x00"]))
    raw = json.dumps(header).encode()
    if duplicate is not None and duplicate in header:
        again = json.dumps({duplicate: header[duplicate]}).encode()
        raw = raw[:-1] + b", " + again[1:]
    return assemble(prefix + raw + suffix, data)


def refusal(data: bytes) -> str | None:
    """Our reason for refusing `data`, or None when we read it."""
    try:
        ours(data)
    except InvalidInputError as exc:
        return exc.message
    return None


@FUZZ
@given(edited_file())
def test_edited_headers_agree_with_the_library(data: bytes) -> None:
    found = reference(data)
    reason = refusal(data)
    if reason is None:
        assert found is not None, "we accept a file the reference library refuses"
        header = ours(data)
        assert {t.name: (t.dtype, list(t.shape)) for t in header.tensors} == found
    else:
        assert reason.strip()  # every refusal says why
        if found is not None:
            assert any(rule in reason for rule in STRICTER), (
                f"we refuse a file the library accepts: {reason}"
            )


def tensor(dtype: object, shape: object, offsets: object) -> dict[str, object]:
    return {"dtype": dtype, "shape": shape, "data_offsets": offsets}


# Bugs the properties above found, each with the verdict we and the library now share.
AGREED = {
    "dtype of the wrong type (was a TypeError)": (
        build({"a": tensor(["U8"], [1], [0, 1])}, b"\0"),
        False,
    ),
    "empty tensor listed after one at its offset (was refused)": (
        build({"b": tensor("U8", [1], [0, 1]), "a": tensor("U8", [0], [0, 0])}, b"\0"),
        True,
    ),
    "lone surrogate in a name (was accepted)": (
        assemble(b'{"\\ud800": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}', b"\0"),
        False,
    ),
    "lone surrogate in metadata (was accepted)": (
        assemble(b'{"__metadata__": {"a": "\\udfff"}}'),
        False,
    ),
    "dimension past 64 bits (was accepted)": (
        build({"a": tensor("U8", [2**64, 0], [0, 0])}, b""),
        False,
    ),
    "shape product overflowing 64 bits before a zero (was accepted)": (
        build({"a": tensor("U8", [2**32, 2**32, 0], [0, 0])}, b""),
        False,
    ),
    "offset past 64 bits": (
        build({"a": tensor("U8", [0], [2**64, 2**64])}, b""),
        False,
    ),
    "F8_E4M3FNUZ (was an unknown dtype)": (
        build({"a": tensor("F8_E4M3FNUZ", [2], [0, 2])}, b"\0\0"),
        True,
    ),
    "empty tensor name (was refused; the library writes it)": (
        build({"": tensor("U8", [1], [0, 1])}, b"\0"),
        True,
    ),
}


@pytest.mark.parametrize(("data", "valid"), AGREED.values(), ids=AGREED.keys())
def test_found_cases_agree_with_the_library(data: bytes, valid: bool) -> None:
    assert (reference(data) is not None) is valid
    if valid:
        ours(data)
    else:
        with pytest.raises(InvalidInputError):
            ours(data)


@pytest.mark.parametrize(
    "data",
    [
        assemble(b" " + json.dumps({"a": tensor("U8", [1], [0, 1])}).encode(), b"\0"),
        build({"a": {**tensor("U8", [1], [0, 1]), "byte_order": "big"}}, b"\0"),
    ],
    ids=["leading whitespace", "unknown field"],
)
def test_stricter_than_the_library(data: bytes) -> None:
    """Rules from STRICTER: the library (0.8) accepts these files, we do not."""
    with pytest.raises(InvalidInputError) as refused:
        ours(data)
    assert any(rule in refused.value.message for rule in STRICTER)


def test_a_stream_that_returns_little_at_a_time_is_read_whole() -> None:
    class Trickle(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            return super().read(min(3, size if size is not None and size >= 0 else 3))

    header = read_header(Trickle(NUMPY_FILE), len(NUMPY_FILE))
    assert header == ours(NUMPY_FILE)
