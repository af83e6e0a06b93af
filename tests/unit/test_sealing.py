"""The sealed container: round trips, random access, and every tampering fails."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from kaiyuan.core.errors import IntegrityError, InvalidInputError
from kaiyuan.services.distribution.keyring import LocalKeyRing
from kaiyuan.services.distribution.sealing import (
    TAG,
    SealedReader,
    key_binding,
    new_data_key,
    open_released,
    read_header,
    seal,
    seal_for,
)


def sealed(data: bytes, key: bytes, chunk: int = 64) -> bytes:
    out = io.BytesIO()
    seal(io.BytesIO(data), len(data), out, key, "model.safetensors", chunk)
    return out.getvalue()


def reader(blob: bytes, key: bytes) -> SealedReader:
    return SealedReader(lambda o, n: blob[o : o + n], len(blob), key)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=1000), st.integers(1, 200), st.data())
def test_any_slice_reads_back_exactly(data: bytes, chunk: int, draw: st.DataObject) -> None:
    key = new_data_key()
    blob = sealed(data, key, chunk)
    opened = reader(blob, key)
    assert b"".join(opened.stream(3)) == data
    start = draw.draw(st.integers(0, len(data)))
    length = draw.draw(st.integers(0, len(data) - start))
    assert opened.read(start, length) == data[start : start + length]
    assert len(blob) == opened.header.sealed_size
    assert data[:16] not in blob[opened.header.data_start :] or len(data) < 16


def tampered_variants(blob: bytes, key: bytes) -> dict[str, bytes]:
    header = reader(blob, key).header
    start, unit = header.data_start, header.chunk_size + TAG
    chunk = [blob[start + i * unit : start + (i + 1) * unit] for i in range(header.chunks)]
    flipped = bytearray(blob)
    flipped[start + 5] ^= 1
    edited = blob.replace(b'"path":"model.safetensors"', b'"path":"other.safetensors"')
    return {
        "bit flip": bytes(flipped),
        "chunks swapped": blob[:start] + chunk[1] + chunk[0] + b"".join(chunk[2:]),
        "last chunk dropped": blob[: start + (header.chunks - 1) * unit],
        "a chunk appended": blob + chunk[0],
        "header edited": edited,
    }


KEY = new_data_key()
BLOB = sealed(os.urandom(64 * 5 + 10), KEY)


@pytest.mark.parametrize("variant", list(tampered_variants(BLOB, KEY)))
def test_every_tampering_fails(variant: str) -> None:
    bad = tampered_variants(BLOB, KEY)[variant]
    with pytest.raises((IntegrityError, InvalidInputError)):
        b"".join(reader(bad, KEY).stream())


def test_the_wrong_key_opens_nothing() -> None:
    with pytest.raises(IntegrityError):
        reader(BLOB, new_data_key()).read(0, 10)


def test_a_cut_or_extended_file_is_refused_before_decrypting() -> None:
    key = new_data_key()
    blob = sealed(b"x" * 300, key)
    with pytest.raises(IntegrityError, match="cut or extended"):
        read_header(lambda o, n: blob[o : o + n], len(blob) - 1)


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"KYSEAL1\x00",
        b"KYSEAL1\x00\xff\xff\xff\xff",
        b"KYSEAL1\x00\x00\x00\x00\x02{}",
        b"PK\x03\x04" * 8,
    ],
)
def test_garbage_is_not_a_sealed_file(blob: bytes) -> None:
    with pytest.raises(InvalidInputError):
        read_header(lambda o, n: blob[o : o + n], len(blob))


def test_keys_are_wrapped_bound_to_their_file_and_released_sealed(tmp_path: Path) -> None:
    ring, data_key = LocalKeyRing(tmp_path / "keys"), new_data_key()
    binding = key_binding("a" * 32, "model.safetensors")
    wrapped = ring.wrap(data_key, binding)
    assert data_key not in wrapped.blob
    assert ring.unwrap(wrapped, binding) == data_key
    with pytest.raises(IntegrityError):
        ring.unwrap(wrapped, key_binding("b" * 32, "model.safetensors"))  # another file's slot
    with pytest.raises(IntegrityError):
        ring.unwrap(wrapped, key_binding("a" * 32, "other.safetensors"))  # another path
    with pytest.raises(IntegrityError):
        LocalKeyRing(tmp_path / "other").unwrap(wrapped, binding)  # another hub's key ring
    requester = X25519PrivateKey.generate()
    released = seal_for(requester.public_key(), data_key, "a" * 32, b"nonce-1")
    assert data_key not in released
    assert open_released(requester, released, "a" * 32, b"nonce-1") == data_key
    with pytest.raises(IntegrityError):
        open_released(requester, released, "a" * 32, b"nonce-2")  # replayed for another request
    with pytest.raises(IntegrityError):
        open_released(X25519PrivateKey.generate(), released, "a" * 32, b"nonce-1")


def test_an_empty_file_is_authenticated_too() -> None:
    key = new_data_key()
    blob = sealed(b"", key)
    assert reader(blob, key).read(0, 0) == b""
    assert b"".join(reader(blob, key).stream()) == b""
    with pytest.raises(IntegrityError):
        b"".join(reader(blob, new_data_key()).stream())


def test_a_container_sealed_for_another_path_is_refused() -> None:
    key = new_data_key()
    blob = sealed(b"weights", key)
    assert SealedReader(lambda o, n: blob[o : o + n], len(blob), key, "model.safetensors")
    with pytest.raises(IntegrityError, match="holds the sealed file of"):
        SealedReader(lambda o, n: blob[o : o + n], len(blob), key, "other.safetensors")


def test_sealing_twice_with_one_key_never_repeats_a_keystream() -> None:
    key = new_data_key()
    first, second = sealed(b"\x00" * 200, key), sealed(b"\x00" * 200, key)
    start = reader(first, key).header.data_start
    assert first[start:] != second[start:]  # new file id, new chunk key
