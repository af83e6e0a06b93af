"""OMS signing of revisions without reading files, and its hostile inputs."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from kaiyuan.core.errors import IntegrityError, InvalidInputError
from kaiyuan.services.distribution.signing import (
    load_or_create_key,
    manifest_of,
    sign_revision,
    signed_files,
    verify_directory,
)


def model(folder: Path, files: dict[str, bytes]) -> dict[str, str]:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def test_a_hub_signature_made_from_digests_verifies_the_real_files(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path / "keys")
    folder = tmp_path / "m"
    digests = model(folder, {"a.bin": b"weights", "sub/中文.json": b"{}", ".gitattributes": b"x"})
    bundle = sign_revision(key, "acme/m", digests)
    assert set(manifest_of(bundle)) == {"a.bin", "sub/中文.json"}  # git's files are not signed
    verify_directory(folder, bundle, key.public_pem)
    (folder / "a.bin").write_bytes(b"weightz")
    with pytest.raises(IntegrityError, match=r"a\.bin"):
        verify_directory(folder, bundle, key.public_pem)


def test_the_key_is_created_once_private_and_shared(tmp_path: Path) -> None:
    found = []
    threads = [
        threading.Thread(target=lambda: found.append(load_or_create_key(tmp_path)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({k.key_id for k in found}) == 1
    assert stat.S_IMODE(os.stat(tmp_path / "signing-key.pem").st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_a_key_file_that_is_not_p256_stops_the_hub(tmp_path: Path) -> None:
    other = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "signing-key.pem").write_bytes(other)
    with pytest.raises(InvalidInputError, match="P-256"):
        load_or_create_key(tmp_path)


def test_ignored_paths_are_left_out_of_a_manifest() -> None:
    files = {
        "model.sig": "1" * 64,
        ".cache/huggingface/x": "2" * 64,
        ".github/workflows/a.yml": "3" * 64,
        ".cachey": "4" * 64,
        "w.bin": "5" * 64,
    }
    assert signed_files(files) == {".cachey": "4" * 64, "w.bin": "5" * 64}


@pytest.mark.parametrize(
    "bundle",
    [
        b"",
        b"[]",
        b"{}",
        b'{"dsseEnvelope": {"payload": "!!"}}',
        json.dumps({"dsseEnvelope": {"payload": "e30="}}).encode(),
    ],
)
def test_garbage_bundles_are_refused(tmp_path: Path, bundle: bytes) -> None:
    key = load_or_create_key(tmp_path / "keys")
    with pytest.raises(InvalidInputError):
        manifest_of(bundle)
    (tmp_path / "m").mkdir()
    with pytest.raises(IntegrityError):
        verify_directory(tmp_path / "m", bundle, key.public_pem)


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_as_a_bundle_fail_cleanly(
    tmp_path_factory: pytest.TempPathFactory, raw: bytes
) -> None:
    folder = tmp_path_factory.mktemp("any")
    key = load_or_create_key(folder / "keys")
    (folder / "m").mkdir()
    with pytest.raises((IntegrityError, InvalidInputError)):
        verify_directory(folder / "m", raw, key.public_pem)
