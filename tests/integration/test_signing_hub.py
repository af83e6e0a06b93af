"""Signed revisions on a live hub: every commit signed in the OMS format, checked by `kaiyuan verify`.

Files are pushed with the stock client; the hub's bundle for each revision verifies the files
downloaded by the CLI, a copy `huggingface_hub.snapshot_download` made (its `.cache` folder
ignored), and an offline copy with the bundle saved beside it. A changed, extra or missing
file, another key, and a tampered bundle all fail with exit code 8.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, HfApi, snapshot_download

from tests.support.hostile import auth
from tests.support.hubs import ServerInfo, start_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    with start_server(tmp_path_factory.mktemp("signing"), "sqlite", None) as server:
        yield server


def kaiyuan(hub: ServerInfo, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAIYUAN_ENDPOINT": hub.url, "HF_TOKEN": hub.alice}
    return subprocess.run(
        [sys.executable, "-m", "kaiyuan", "verify", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def published(hub: ServerInfo, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, Path]:
    api = HfApi(endpoint=hub.url, token=hub.alice)
    repo_id = f"alice/signed-{uuid.uuid4().hex[:8]}"
    api.create_repo(repo_id)
    first = api.create_commit(
        repo_id,
        [
            CommitOperationAdd("config.json", b'{"model_type": "llama"}'),
            CommitOperationAdd("model.safetensors", b"\x08" + b"\x00" * 7 + b"{}      "),
            CommitOperationAdd("docs/说明.md", "# 模型\n".encode()),
        ],
        commit_message="first",
    ).oid
    api.create_commit(
        repo_id,
        [CommitOperationAdd("config.json", b'{"model_type": "qwen2"}')],
        commit_message="second",
    )
    key = tmp_path_factory.mktemp("keys") / "hub.pem"
    answer = httpx.get(f"{hub.url}/api/signing/key")
    assert answer.status_code == 200
    key.write_text(answer.json()["public_key"])
    return repo_id, first, key


def test_every_revision_verifies_from_the_hub(
    hub: ServerInfo, published: tuple[str, str, Path]
) -> None:
    repo_id, first, key = published
    latest = kaiyuan(hub, repo_id, "--key", str(key))
    assert latest.returncode == 0, latest.stderr
    assert "verified" in latest.stdout and "3 files" in latest.stdout
    old = kaiyuan(hub, f"{repo_id}@{first}", "--key", str(key))
    assert old.returncode == 0, old.stderr
    unpinned = kaiyuan(hub, repo_id)
    assert unpinned.returncode == 0 and "pin it with --key" in unpinned.stderr
    signed = httpx.get(f"{hub.url}/api/signatures/models/{repo_id}", headers=auth(hub.alice))
    statement = json.loads(base64.b64decode(signed.json()["bundle"]["dsseEnvelope"]["payload"]))
    assert statement["predicateType"] == "https://model_signing/signature/v1.0"
    # the subject names repository and commit: the bundle cannot pass for another's
    assert statement["subject"][0]["name"] == f"{repo_id}@{signed.json()['revision']}"
    assert statement["predicate"]["serialization"]["method"] == "files"
    assert sorted(r["name"] for r in statement["predicate"]["resources"]) == [
        "config.json",
        "docs/说明.md",
        "model.safetensors",
    ]


def test_a_snapshot_download_verifies_and_any_change_fails(
    hub: ServerInfo, published: tuple[str, str, Path], tmp_path: Path
) -> None:
    repo_id, _, key = published
    copy = tmp_path / "copy"
    snapshot_download(repo_id, endpoint=hub.url, token=hub.alice, local_dir=copy)
    assert (copy / ".cache").is_dir()  # the client's own metadata: ignored by the check
    assert kaiyuan(hub, repo_id, "--local-dir", str(copy), "--key", str(key)).returncode == 0
    (copy / "config.json").write_text('{"model_type": "llama"}')  # the older content
    changed = kaiyuan(hub, repo_id, "--local-dir", str(copy), "--key", str(key))
    assert changed.returncode == 8 and "config.json" in changed.stderr
    (copy / "config.json").write_text('{"model_type": "qwen2"}')
    (copy / "extra.pkl").write_bytes(b"\x80\x04N.")
    extra = kaiyuan(hub, repo_id, "--local-dir", str(copy), "--key", str(key))
    assert extra.returncode == 8 and "extra.pkl" in extra.stderr
    (copy / "extra.pkl").unlink()
    (copy / "docs" / "说明.md").unlink()
    assert kaiyuan(hub, repo_id, "--local-dir", str(copy), "--key", str(key)).returncode == 8


def test_offline_with_a_saved_bundle_and_tampering(
    hub: ServerInfo, published: tuple[str, str, Path], tmp_path: Path
) -> None:
    repo_id, _, key = published
    copy = tmp_path / "copy"
    snapshot_download(repo_id, endpoint=hub.url, token=hub.alice, local_dir=copy)
    bundle = httpx.get(f"{hub.url}/api/signatures/models/{repo_id}", headers=auth(hub.alice))
    document = bundle.json()["bundle"]
    (copy / "model.sig").write_text(json.dumps(document))
    offline = kaiyuan(hub, "--local-dir", str(copy), "--key", str(key))
    assert offline.returncode == 0, offline.stderr
    other = tmp_path / "other.pem"
    subprocess.run(
        [
            "openssl",
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            str(tmp_path / "k"),
        ],
        check=True,
    )
    subprocess.run(
        ["openssl", "ec", "-in", str(tmp_path / "k"), "-pubout", "-out", str(other)],
        check=True,
        capture_output=True,
    )
    assert kaiyuan(hub, "--local-dir", str(copy), "--key", str(other)).returncode == 8
    statement = json.loads(base64.b64decode(document["dsseEnvelope"]["payload"]))
    statement["predicate"]["resources"][0]["digest"] = "0" * 64  # claim other bytes
    document["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    (copy / "model.sig").write_text(json.dumps(document))
    tampered = kaiyuan(hub, "--local-dir", str(copy), "--key", str(key))
    assert tampered.returncode == 8
    (copy / "model.sig").write_text("not a bundle")
    assert kaiyuan(hub, "--local-dir", str(copy), "--key", str(key)).returncode == 8


def test_signatures_follow_read_access(hub: ServerInfo) -> None:
    api = HfApi(endpoint=hub.url, token=hub.alice)
    repo_id = f"alice/private-{uuid.uuid4().hex[:8]}"
    api.create_repo(repo_id, private=True)
    url = f"{hub.url}/api/signatures/models/{repo_id}"
    assert httpx.get(url, headers=auth(hub.alice)).status_code == 200  # signed lazily
    assert httpx.get(url, headers=auth(hub.bob)).status_code == 404
    assert httpx.get(url).status_code in {401, 404}


def publisher_key(folder: Path) -> tuple[Path, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(ec.SECP256R1())
    path = folder / "publisher.pem"
    path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return path, public.decode()


def signed_by_publisher(folder: Path, private: Path) -> None:
    from model_signing import signing

    signing.Config().use_elliptic_key_signer(private_key=private).sign(folder, folder / "model.sig")


def publisher_status(hub: ServerInfo, repo_id: str) -> dict[str, object] | None:
    answer = httpx.get(f"{hub.url}/api/signatures/models/{repo_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()["publisher"]


def test_a_publishers_own_signature_is_checked_against_the_namespaces_keys(
    hub: ServerInfo, tmp_path: Path
) -> None:
    private, public = publisher_key(tmp_path)
    keys = f"{hub.url}/api/signing/keys/acme"
    assert httpx.post(keys, json={"public_key": public}, headers=auth(hub.bob)).status_code == 403
    added = httpx.post(keys, json={"public_key": public}, headers=auth(hub.alice))
    assert added.status_code == 200, added.text
    [registered] = added.json()
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "model.safetensors").write_bytes(b"\x08" + b"\x00" * 7 + b"{}      ")
    signed_by_publisher(folder, private)
    api = HfApi(endpoint=hub.url, token=hub.alice)
    repo_id = f"acme/published-{uuid.uuid4().hex[:8]}"
    api.create_repo(repo_id)
    api.upload_folder(repo_id=repo_id, folder_path=folder)
    found = publisher_status(hub, repo_id)
    assert found is not None
    assert found["status"] == "verified" and found["key_id"] == registered["key_id"]
    cli = kaiyuan(hub, repo_id)
    assert cli.returncode == 0 and "publisher signature: verified" in cli.stdout
    # A file added without signing again: the signature no longer covers the revision.
    api.upload_file(repo_id=repo_id, path_or_fileobj=b"# card\n", path_in_repo="README.md")
    found = publisher_status(hub, repo_id)
    assert found is not None and found["status"] == "mismatch"
    assert "in the revision but not signed: README.md" in str(found["detail"])
    # Once the key is removed, nobody the namespace trusts made the signature.
    gone = httpx.delete(f"{keys}/{registered['key_id']}", headers=auth(hub.alice))
    assert gone.status_code == 200 and gone.json() == []
    found = publisher_status(hub, repo_id)
    assert found is not None and found["status"] == "unknown-key"
    api.upload_file(repo_id=repo_id, path_or_fileobj=b"not a bundle", path_in_repo="model.sig")
    found = publisher_status(hub, repo_id)
    assert found is not None and found["status"] == "unreadable"


def test_publisher_keys_refuse_garbage(hub: ServerInfo) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    keys = f"{hub.url}/api/signing/keys/acme"
    rsa_pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    ed_pem = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for body in (
        {"public_key": "hello"},
        {"public_key": rsa_pem.decode()},
        {"public_key": ed_pem.decode()},
        {"public_key": "-----BEGIN PUBLIC KEY-----\n" + "A" * 3000},
        {"public_key": 5},
        {},
    ):
        answer = httpx.post(keys, json=body, headers=auth(hub.alice))
        assert answer.status_code == 400, (body, answer.text)
        assert answer.json()["error"]
    missing = httpx.delete(f"{keys}/{'0' * 64}", headers=auth(hub.alice))
    assert missing.status_code == 404
    assert httpx.get(keys).status_code == 200
