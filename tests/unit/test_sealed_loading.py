"""Loading a sealed safetensors file in memory: equal to the original, lazily, and strictly."""

from __future__ import annotations

import io
import itertools
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

from kaiyuan.client.sealed_checkpoint import SealedCheckpoint
from kaiyuan.core.errors import IntegrityError, InvalidInputError, UnsupportedError
from kaiyuan.services.distribution.sealing import SealedReader, new_data_key, seal

torch = pytest.importorskip("torch")


def sealed_copy(source: Path, target: Path, key: bytes, chunk: int = 4096) -> Path:
    with source.open("rb") as plain, target.open("wb") as out:
        seal(plain, source.stat().st_size, out, key, "model.safetensors", chunk)
    return target


@pytest.fixture
def checkpoint(tmp_path: Path) -> tuple[Path, Path, bytes]:
    rng = np.random.default_rng(3)
    tensors = {
        "embed": rng.standard_normal((97, 33)).astype(np.float32),
        "odd": rng.integers(-5, 5, (7,)).astype(np.int8),  # leaves later tensors misaligned
        "half": rng.standard_normal((5, 11)).astype(np.float16),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "scalar": np.array(3.5, dtype=np.float64),
        "mask": rng.integers(0, 2, (13,)).astype(np.bool_),
    }
    plain = tmp_path / "model.safetensors"
    save_file(tensors, plain, metadata={"format": "np"})
    key = new_data_key()
    return plain, sealed_copy(plain, tmp_path / "sealed.bin", key), key


def test_every_tensor_equals_the_original(checkpoint: tuple[Path, Path, bytes]) -> None:
    plain, sealed, key = checkpoint
    original = load_file(plain)
    for framework in ("np", "pt"):
        opened = SealedCheckpoint(sealed, key, "model.safetensors", framework=framework)
        try:
            assert sorted(opened.keys()) == sorted(original)
            assert opened.metadata == {"format": "np"}
            whole = opened.load()
            for name, expected in original.items():
                got = whole[name] if framework == "np" else whole[name].numpy()
                np.testing.assert_array_equal(got, expected)
                one = opened.get_tensor(name)
                np.testing.assert_array_equal(one if framework == "np" else one.numpy(), expected)
        finally:
            opened.close()


def test_the_staged_path_fills_a_tensor_slice_by_slice(
    checkpoint: tuple[Path, Path, bytes],
) -> None:
    plain, sealed, key = checkpoint
    opened = SealedCheckpoint(sealed, key, "model.safetensors", framework="pt", stage_bytes=100)
    try:
        # The path a CUDA device takes, run here on the CPU: 100-byte slices through staging.
        staged = opened._staged(opened.info("embed"))
        np.testing.assert_array_equal(staged.numpy(), load_file(plain)["embed"])
    finally:
        opened.close()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tensors_land_on_the_cuda_device(checkpoint: tuple[Path, Path, bytes]) -> None:
    plain, sealed, key = checkpoint
    with_device = SealedCheckpoint(sealed, key, "model.safetensors", framework="pt", device="cuda")
    try:
        loaded = with_device.load()
        for name, expected in load_file(plain).items():
            assert loaded[name].device.type == "cuda"
            np.testing.assert_array_equal(loaded[name].cpu().numpy(), expected)
    finally:
        with_device.close()


def test_bfloat16_needs_torch(tmp_path: Path) -> None:
    from safetensors.torch import save_file as save_torch

    plain = tmp_path / "bf16.safetensors"
    weights = torch.randn(6, 5).to(torch.bfloat16)
    save_torch({"w": weights}, plain)
    key = new_data_key()
    sealed = sealed_copy(plain, tmp_path / "s", key)
    with pytest.raises(UnsupportedError, match="framework='pt'"):
        SealedCheckpoint(sealed, key, "model.safetensors", framework="np")
    opened = SealedCheckpoint(sealed, key, "model.safetensors", framework="pt")
    try:
        assert torch.equal(opened.load()["w"], weights)
    finally:
        opened.close()


def test_wrong_key_swapped_file_and_bad_plaintext_are_refused(
    checkpoint: tuple[Path, Path, bytes], tmp_path: Path
) -> None:
    _, sealed, key = checkpoint
    with pytest.raises(IntegrityError):
        SealedCheckpoint(sealed, new_data_key(), "model.safetensors")
    with pytest.raises(IntegrityError, match="holds the sealed file of"):
        SealedCheckpoint(sealed, key, "other.safetensors")
    with pytest.raises(InvalidInputError):
        SealedCheckpoint(sealed, key, "model.safetensors", framework="tf")
    garbage = tmp_path / "garbage"
    garbage.write_bytes(os.urandom(5000))
    other_key = new_data_key()
    sealed_garbage = sealed_copy(garbage, tmp_path / "g", other_key)
    with pytest.raises(InvalidInputError):
        SealedCheckpoint(sealed_garbage, other_key, "model.safetensors")
    not_sealed = tmp_path / "plain"
    not_sealed.write_bytes(b"{}" * 10)
    with pytest.raises(InvalidInputError, match="not a sealed file"):
        SealedCheckpoint(not_sealed, key, "model.safetensors")


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(min_size=0, max_size=3000),
    chunk=st.integers(1, 700),
    start=st.integers(0, 3000),
    length=st.integers(0, 3000),
    threads=st.integers(1, 4),
)
def test_any_range_decrypts_into_a_buffer(
    data: bytes, chunk: int, start: int, length: int, threads: int
) -> None:
    key, out = new_data_key(), io.BytesIO()
    seal(io.BytesIO(data), len(data), out, key, "f", chunk)
    blob = memoryview(out.getvalue())
    reader = SealedReader(lambda o, n: blob[o : o + n], len(blob), key)
    start = min(start, len(data))
    length = min(length, len(data) - start)
    target = bytearray(length)
    reader.read_into(start, memoryview(target), threads)
    assert bytes(target) == data[start : start + length]
    with pytest.raises(InvalidInputError):
        reader.read_into(len(data), memoryview(bytearray(1)))


def test_tensors_decrypt_into_existing_parameters(checkpoint: tuple[Path, Path, bytes]) -> None:
    plain, sealed, key = checkpoint
    original = load_file(plain)
    opened = SealedCheckpoint(sealed, key, "model.safetensors", framework="pt")
    try:
        targets = {
            name: torch.zeros(tuple(v.shape), dtype=torch.from_numpy(v).dtype)
            for name, v in original.items()
        }
        numpy_target = {"embed": np.zeros((97, 33), dtype=np.float32)}
        opened.load_into(targets)
        opened.load_into(numpy_target)
        for name, expected in original.items():
            np.testing.assert_array_equal(targets[name].numpy(), expected)
        np.testing.assert_array_equal(numpy_target["embed"], original["embed"])
        with pytest.raises(InvalidInputError, match="the target is"):
            opened.load_into({"embed": torch.zeros((33, 97), dtype=torch.float16)})
        with pytest.raises(InvalidInputError, match="contiguous"):
            opened.load_into({"embed": torch.zeros((33, 97)).t()})
        with pytest.raises(KeyError):
            opened.load_into({"missing": torch.zeros(1)})
    finally:
        opened.close()


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=3000),
    chunk=st.integers(1, 500),
    cuts=st.lists(st.integers(0, 3000), max_size=12),
    threads=st.integers(1, 3),
)
def test_disjoint_ranges_scatter_into_their_buffers(
    data: bytes, chunk: int, cuts: list[int], threads: int
) -> None:
    key, out = new_data_key(), io.BytesIO()
    seal(io.BytesIO(data), len(data), out, key, "f", chunk)
    blob = memoryview(out.getvalue())
    reader = SealedReader(lambda o, n: blob[o : o + n], len(blob), key)
    edges = sorted({0, len(data), *(min(c, len(data)) for c in cuts)})
    # every other range is asked for, so some chunks feed two buffers and some none
    ranges = [
        (a, bytearray(b - a)) for i, (a, b) in enumerate(itertools.pairwise(edges)) if i % 2 == 0
    ]
    reader.scatter([(a, memoryview(buffer)) for a, buffer in ranges], threads)
    for a, buffer in ranges:
        assert bytes(buffer) == data[a : a + len(buffer)]
    if len(data) > 1:
        with pytest.raises(InvalidInputError, match="overlap"):
            reader.scatter([(0, memoryview(bytearray(2))), (1, memoryview(bytearray(1)))])


def test_a_forged_chunk_leaves_nothing_in_the_buffers() -> None:
    data = os.urandom(50_000)
    key, out = new_data_key(), io.BytesIO()
    seal(io.BytesIO(data), len(data), out, key, "f", 4096)
    blob = bytearray(out.getvalue())
    blob[len(blob) // 2] ^= 0x01
    view = memoryview(bytes(blob))
    reader = SealedReader(lambda o, n: view[o : o + n], len(view), key)
    for threads in (1, 2):
        target = bytearray(b"\xaa" * len(data))
        with pytest.raises(IntegrityError):
            reader.read_into(0, memoryview(target), threads)
        assert target == bytes(len(data))  # wiped, not half-decrypted


def test_a_forged_chunk_is_wiped_even_when_another_read_fails_first() -> None:
    data = os.urandom(4 * 4096)
    key, out = new_data_key(), io.BytesIO()
    seal(io.BytesIO(data), len(data), out, key, "f", 4096)
    blob = bytearray(out.getvalue())
    header_end = len(blob) - 4 * (4096 + 16)
    blob[header_end + 2 * (4096 + 16) + 10] ^= 0x01  # chunk 2 forged
    view = memoryview(bytes(blob))

    def read_at(offset: int, length: int) -> memoryview:
        if header_end + (4096 + 16) <= offset < header_end + 2 * (4096 + 16):
            raise OSError("the range read of chunk 1 failed")
        return view[offset : offset + length]

    reader = SealedReader(read_at, len(view), key)
    target = bytearray(len(data))
    with pytest.raises(OSError, match="chunk 1"):
        reader.read_into(0, memoryview(target), 2)
    assert target == bytes(len(data))
