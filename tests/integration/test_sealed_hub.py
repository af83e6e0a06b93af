"""Sealed models end to end: published with the stock client, loaded only in memory.

A tiny Llama is pushed with `HfApi.upload_folder` to a gated repository whose policy seals
`*.safetensors`. The hub stores and serves only ciphertext: anyone who may see the repository
downloads it through the normal protocol, nobody gets a key without an accepted access request,
and after approval `kaiyuan.sealed` yields tensors equal to the originals and a transformers
model with the same outputs, while no file in the Hugging Face cache or the temporary folders
holds plaintext. Revocation, attestation (evidence signed under a test CA), KEK rotation, a
tampered chunk and the audit log are checked on the same live hub.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from huggingface_hub import HfApi, hf_hub_download
from safetensors.numpy import load_file

from kaiyuan import sealed
from kaiyuan.core.errors import AccessDeniedError, AuthenticationError, IntegrityError
from kaiyuan.services.distribution.sealing import MAGIC
from tests.support.attestation import TestCa
from tests.support.hostile import auth
from tests.support.hubs import ServerInfo, run_admin, start_server

pytestmark = pytest.mark.slow
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def ca() -> TestCa:
    return TestCa()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, ca: TestCa) -> Iterator[ServerInfo]:
    root = tmp_path_factory.mktemp("sealed")
    ca_file = ca.write(tmp_path_factory.mktemp("ca") / "ca.pem")
    with start_server(root, "sqlite", None, attestation_ca=ca_file) as server:
        yield server


def tiny_llama(folder: Path) -> Any:
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    torch.manual_seed(7)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    return model


class Published:
    def __init__(self, repo_id: str, folder: Path, model: Any) -> None:
        self.repo_id = repo_id
        self.folder = folder
        self.model = model
        self.plain = (folder / "model.safetensors").read_bytes()
        self.tensors = load_file(folder / "model.safetensors")
        header_length = int.from_bytes(self.plain[:8], "little")
        middle = 8 + header_length + (len(self.plain) - 8 - header_length) // 2
        # What plaintext looks like on disk: the header (tensor names in the clear) and data.
        self.needles = [self.plain[8 : 8 + 64], self.plain[middle : middle + 64]]


@pytest.fixture(scope="module")
def published(hub: ServerInfo, tmp_path_factory: pytest.TempPathFactory) -> Published:
    folder = tmp_path_factory.mktemp("tiny-llama")
    model = tiny_llama(folder)
    repo_id = f"acme/sealed-{uuid.uuid4().hex[:8]}"
    owner = HfApi(endpoint=hub.url, token=hub.alice)
    owner.create_repo(repo_id)
    owner.update_repo_settings(repo_id, gated="manual")
    answer = httpx.put(
        f"{hub.url}/api/sealing/models/{repo_id}",
        json={"patterns": ["*.safetensors"]},
        headers=auth(hub.alice),
    )
    assert answer.status_code == 200, answer.text
    owner.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="sealed weights")
    return Published(repo_id, folder, model)


def keys_for(hub: ServerInfo, repo_id: str, token: str | None) -> httpx.Response:
    return httpx.post(
        f"{hub.url}/api/sealing/models/{repo_id}/keys",
        json={"public_key": "A" * 43 + "=", "nonce": "0" * 64},
        headers=auth(token),
    )


def open_for(hub: ServerInfo, published: Published, token: str, cache: Path, **extra: Any) -> Any:
    return sealed.open_sealed(
        published.repo_id, endpoint=hub.url, token=token, cache_dir=cache, **extra
    )


def load_all(model: Any) -> None:
    with model:
        model.load()


def grant(hub: ServerInfo, repo_id: str, user_token: str, user: str) -> None:
    asked = httpx.post(
        f"{hub.url}/api/models/{repo_id}/ask-access",
        json={"reason": "evaluation"},
        headers=auth(user_token),
    )
    assert asked.status_code == 200, asked.text
    HfApi(endpoint=hub.url, token=hub.alice).accept_access_request(repo_id, user)


def no_plaintext_under(folder: Path, needles: list[bytes]) -> list[Path]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if any(needle in data for needle in needles):
                found.append(path)
    return found


def test_the_hub_stores_and_serves_only_ciphertext(hub: ServerInfo, published: Published) -> None:
    api = HfApi(endpoint=hub.url)
    [entry] = [
        f
        for f in api.list_repo_tree(published.repo_id, expand=True)
        if f.path == "model.safetensors"
    ]
    assert entry.lfs is not None
    assert entry.lfs.sha256 != hashlib.sha256(published.plain).hexdigest()
    assert entry.size > len(published.plain)  # a header and a tag per chunk
    assert entry.security is not None and entry.security["status"] == "safe"
    # config.json stays in the clear; the listing names the sealed file.
    listing = httpx.get(f"{hub.url}/api/sealing/models/{published.repo_id}").json()
    assert [f["path"] for f in listing["files"]] == ["model.safetensors"]
    assert listing["files"][0]["sha256"] == entry.lfs.sha256
    assert listing["policy"]["patterns"] == ["*.safetensors"]
    page = httpx.get(f"{hub.url}/{published.repo_id}/tree/main")
    assert page.status_code == 200 and page.text.count('class="badge sealed"') == 1
    # No plaintext anywhere in the hub's storage (the upload was deleted once sealed) ...
    assert run_admin(hub.env, "gc", "--grace-hours", "0").returncode == 0
    assert no_plaintext_under(hub.data_dir, published.needles) == []


def test_without_access_ciphertext_only_and_no_key(
    hub: ServerInfo, published: Published, tmp_path: Path
) -> None:
    # Anyone who may see the repository downloads the ciphertext with the stock client,
    # although the repository is gated: the key is what the gate keeps.
    for token in (None, hub.bob):
        path = hf_hub_download(
            published.repo_id,
            "model.safetensors",
            endpoint=hub.url,
            token=token or False,
            cache_dir=tmp_path / f"cache-{token is None}",
        )
        data = Path(path).read_bytes()
        assert data.startswith(MAGIC)
        assert not any(needle in data for needle in published.needles)
    # A file in the clear of the gated repository stays gated.
    refused = httpx.get(
        f"{hub.url}/{published.repo_id}/resolve/main/config.json", headers=auth(hub.bob)
    )
    assert refused.status_code == 403
    assert keys_for(hub, published.repo_id, None).status_code == 401
    with pytest.raises(AccessDeniedError, match="restricted"):
        open_for(hub, published, hub.bob, tmp_path / "bob")
    with pytest.raises(AuthenticationError):
        sealed.load(published.repo_id, endpoint=hub.url, token=False, cache_dir=tmp_path / "a")
    log = httpx.get(
        f"{hub.url}/api/sealing/models/{published.repo_id}/releases", headers=auth(hub.alice)
    ).json()
    assert log[0]["user"] == "bob" and log[0]["outcome"] == "refused"
    assert "restricted" in log[0]["reason"]
    # The audit log is for the repository's writers only.
    outsider = httpx.get(
        f"{hub.url}/api/sealing/models/{published.repo_id}/releases", headers=auth(hub.bob)
    )
    assert outsider.status_code == 403


def test_after_approval_tensors_equal_and_no_plaintext_on_disk(
    hub: ServerInfo, published: Published, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    grant(hub, published.repo_id, hub.bob, "bob")
    cache, scratch = tmp_path / "hf-cache", tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))

    arrays = sealed.load(published.repo_id, endpoint=hub.url, token=hub.bob, cache_dir=cache)
    assert arrays.keys() == published.tensors.keys()
    for name, original in published.tensors.items():
        np.testing.assert_array_equal(arrays[name], original)

    with open_for(hub, published, hub.bob, cache, framework="pt") as model:
        name = "model.layers.1.mlp.down_proj.weight"
        lazy = model.get_tensor(name)  # one tensor, only its chunks decrypted
        assert torch.equal(lazy, torch.from_numpy(published.tensors[name]))

    from transformers import AutoModelForCausalLM

    loaded = sealed.from_pretrained(
        AutoModelForCausalLM, published.repo_id, endpoint=hub.url, token=hub.bob, cache_dir=cache
    )
    probe = torch.tensor([[1, 5, 9, 3]])
    with torch.no_grad():
        assert torch.equal(loaded(probe).logits, published.model(probe).logits)

    assert no_plaintext_under(cache, published.needles) == []
    assert no_plaintext_under(scratch, published.needles) == []
    assert no_plaintext_under(tmp_path / "hf-home", published.needles) == []
    assert any(cache.rglob("model.safetensors"))  # the ciphertext is cached as usual
    log = httpx.get(
        f"{hub.url}/api/sealing/models/{published.repo_id}/releases", headers=auth(hub.alice)
    ).json()
    assert log[0]["outcome"] == "released" and log[0]["paths"] == ["model.safetensors"]


def test_revocation_stops_the_next_load(
    hub: ServerInfo, published: Published, tmp_path: Path
) -> None:
    grant(hub, published.repo_id, hub.bob, "bob")
    base = f"{hub.url}/api/sealing/models/{published.repo_id}/revocations"
    assert httpx.put(f"{base}/bob", headers=auth(hub.bob)).status_code == 403
    assert httpx.put(f"{base}/bob", headers=auth(hub.alice)).status_code == 200
    with pytest.raises(AccessDeniedError, match="revoked"):
        open_for(hub, published, hub.bob, tmp_path)
    restored = httpx.delete(f"{base}/bob", headers=auth(hub.alice))
    assert restored.status_code == 200 and restored.json() == []
    with open_for(hub, published, hub.bob, tmp_path) as model:
        assert model.keys()


def test_attestation_required(
    hub: ServerInfo, published: Published, ca: TestCa, tmp_path: Path
) -> None:
    grant(hub, published.repo_id, hub.bob, "bob")
    policy = httpx.put(
        f"{hub.url}/api/sealing/models/{published.repo_id}",
        json={"patterns": ["*.safetensors"], "attestation": "required"},
        headers=auth(hub.alice),
    )
    assert policy.status_code == 200
    try:
        with pytest.raises(AccessDeniedError, match="attested"):
            open_for(hub, published, hub.bob, tmp_path)
        with open_for(hub, published, hub.bob, tmp_path, evidence=ca.evidence) as model:
            assert model.keys()
        other = TestCa("another CA")
        expired = ca.leaf(expired=True)
        bad = {
            "another CA": other.evidence,
            "expired": lambda n, k: ca.evidence(n, k, leaf=expired),
            "debug": lambda n, k: ca.evidence(n, k, debug=True),
            "another request": lambda _, k: ca.evidence(b"\x00" * 32, k),
            "another key": lambda n, _: ca.evidence(n, b"\x01" * 32),
            "stale": lambda n, k: ca.evidence(n, k, age=3600),
        }
        for why, evidence in bad.items():
            with pytest.raises(AccessDeniedError):
                open_for(hub, published, hub.bob, tmp_path, evidence=evidence)
            assert why  # each case is refused on its own
        log = httpx.get(
            f"{hub.url}/api/sealing/models/{published.repo_id}/releases", headers=auth(hub.alice)
        ).json()
        assert [e["outcome"] for e in log[: len(bad)]] == ["refused"] * len(bad)
        assert "tee=test-tee" in log[len(bad)]["reason"]
    finally:
        httpx.put(
            f"{hub.url}/api/sealing/models/{published.repo_id}",
            json={"patterns": ["*.safetensors"]},
            headers=auth(hub.alice),
        )


def test_a_challenge_is_single_use(hub: ServerInfo, published: Published) -> None:
    grant(hub, published.repo_id, hub.bob, "bob")
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    base = f"{hub.url}/api/sealing/models/{published.repo_id}"
    nonce = httpx.post(f"{base}/challenge", headers=auth(hub.bob)).json()["nonce"]
    public = X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    body = {"public_key": __import__("base64").b64encode(public).decode(), "nonce": nonce}
    first = httpx.post(f"{base}/keys", json=body, headers=auth(hub.bob))
    assert first.status_code == 200, first.text
    assert first.json()["keys"][0]["path"] == "model.safetensors"
    again = httpx.post(f"{base}/keys", json=body, headers=auth(hub.bob))
    assert again.status_code == 403 and "challenge" in again.json()["error"]
    # A challenge is bound to the user it was issued to.
    stolen = httpx.post(f"{base}/challenge", headers=auth(hub.bob)).json()["nonce"]
    other = httpx.post(
        f"{base}/keys", json={**body, "nonce": stolen}, headers=auth(hub.tokens["alice_read"])
    )
    assert other.status_code == 403


def test_a_tampered_chunk_fails(hub: ServerInfo, published: Published, tmp_path: Path) -> None:
    grant(hub, published.repo_id, hub.bob, "bob")
    local = tmp_path / "copy"
    with open_for(hub, published, hub.bob, tmp_path / "c", local_dir=local) as model:
        assert model.keys()
    path = local / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="fails its check"):
        load_all(open_for(hub, published, hub.bob, tmp_path / "c", local_dir=local))


def test_kek_rotation_rewraps_and_retires(
    hub: ServerInfo, published: Published, tmp_path: Path
) -> None:
    grant(hub, published.repo_id, hub.bob, "bob")
    ring = hub.data_dir / "sealing-keys"
    before = sorted(p.name for p in ring.glob("kek-*.key"))
    done = run_admin(hub.env, "sealing-rotate", "--retire-after-hours", "0")
    assert done.returncode == 0, done.stderr
    assert "1 keys rewrapped" in done.stdout or "keys rewrapped" in done.stdout
    after = sorted(p.name for p in ring.glob("kek-*.key"))
    assert len(after) == 1 and after != before  # the old KEK is gone: nothing uses it
    arrays = sealed.load(published.repo_id, endpoint=hub.url, token=hub.bob, cache_dir=tmp_path)
    name = next(iter(published.tensors))
    np.testing.assert_array_equal(arrays[name], published.tensors[name])


def test_bad_requests_get_clear_errors(hub: ServerInfo, published: Published) -> None:
    base = f"{hub.url}/api/sealing/models/{published.repo_id}"
    cases = [
        ("PUT", "", {"patterns": []}, 400),
        ("PUT", "", {"patterns": ["*.bin"], "attestation": "maybe"}, 400),
        ("PUT", "", {"patterns": ["a\x00b"]}, 400),
        ("POST", "/keys", {"public_key": "!!", "nonce": "0" * 64}, 400),
        ("POST", "/keys", {"public_key": "AAAA", "nonce": "0" * 64}, 400),
        ("POST", "/keys", {"public_key": "A" * 43 + "=", "nonce": "xyz"}, 400),
        (
            "POST",
            "/keys",
            {"public_key": "A" * 43 + "=", "nonce": "0" * 64, "paths": ["../x"]},
            400,
        ),
        ("POST", "/keys", [1, 2], 400),
    ]
    for method, tail, body, status in cases:
        answer = httpx.request(method, base + tail, json=body, headers=auth(hub.alice))
        assert answer.status_code == status, (tail, body, answer.text)
        assert answer.json()["error"]
    revocations = f"{base}/revocations"
    for bad in ("a..b", "x" * 97, "-lead", "trail."):
        answer = httpx.put(f"{revocations}/{bad}", headers=auth(hub.alice))
        assert answer.status_code == 400, (bad, answer.text)
    assert httpx.get(revocations, headers=auth(hub.alice)).json() == []  # nothing half-stored
    for limit in ("0", "1001", "many"):
        answer = httpx.get(f"{base}/releases?limit={limit}", headers=auth(hub.alice))
        assert answer.status_code == 400, (limit, answer.text)
    not_sealed = f"acme/plain-{uuid.uuid4().hex[:6]}"
    HfApi(endpoint=hub.url, token=hub.alice).create_repo(not_sealed)
    challenge = httpx.post(
        f"{hub.url}/api/sealing/models/{not_sealed}/challenge", headers=auth(hub.alice)
    )
    assert challenge.status_code == 400 and "not a sealed" in challenge.json()["error"]
    assert os.environ.get("KAIYUAN_ATTESTATION_CA") is None  # the server's, not this process's


def test_a_publishers_signature_of_the_plaintext_verifies_once_sealed(
    hub: ServerInfo, published: Published, tmp_path: Path
) -> None:
    import shutil

    from model_signing import signing

    from tests.integration.test_signing_hub import publisher_key

    private, public = publisher_key(tmp_path)
    added = httpx.post(
        f"{hub.url}/api/signing/keys/acme", json={"public_key": public}, headers=auth(hub.alice)
    )
    assert added.status_code == 200
    folder = tmp_path / "signed"
    shutil.copytree(published.folder, folder)
    signing.Config().use_elliptic_key_signer(private_key=private).sign(folder, folder / "model.sig")
    repo_id = f"acme/sealed-signed-{uuid.uuid4().hex[:6]}"
    owner = HfApi(endpoint=hub.url, token=hub.alice)
    owner.create_repo(repo_id)
    assert (
        httpx.put(
            f"{hub.url}/api/sealing/models/{repo_id}",
            json={"patterns": ["*.safetensors"]},
            headers=auth(hub.alice),
        ).status_code
        == 200
    )
    owner.upload_folder(repo_id=repo_id, folder_path=folder)
    found = httpx.get(f"{hub.url}/api/signatures/models/{repo_id}").json()["publisher"]
    # The publisher signed the plaintext; the hub stores ciphertext and still checks it.
    assert found["status"] == "verified", found
    page = httpx.get(f"{hub.url}/{repo_id}/tree/main").text
    assert "badge signature-verified" in page and found["key_id"][:16] in page


def test_the_hub_reads_sealed_weights_in_memory_for_provenance_and_scans(
    hub: ServerInfo, published: Published
) -> None:
    from kaiyuan.bootstrap import build_hub
    from kaiyuan.config import Settings
    from kaiyuan.services.distribution.scanning import SEALED_FINDING
    from tests.integration.test_provenance_hub import provenance

    sealed_view = provenance(hub, published.repo_id)
    assert sealed_view["status"] == "done", sealed_view
    # Its fingerprint (tensor names and shapes) is for the namespace only.
    for token in (hub.bob, None):
        refused = httpx.get(
            f"{hub.url}/api/provenance/models/{published.repo_id}", headers=auth(token)
        )
        assert refused.status_code == 403, refused.text
    # A plain copy of the same weights is recognised as the sealed model's, from the weights.
    copy = f"acme/plain-copy-{uuid.uuid4().hex[:6]}"
    owner = HfApi(endpoint=hub.url, token=hub.alice)
    owner.create_repo(copy)
    owner.upload_folder(repo_id=copy, folder_path=published.folder)
    copy_view = provenance(hub, copy)
    assert copy_view["status"] == "done"
    assert published.repo_id in str(copy_view["matches"]), copy_view["matches"]
    # The scanner too judges a sealed file by its plaintext, decrypted in memory.
    listing = httpx.get(f"{hub.url}/api/sealing/models/{published.repo_id}").json()
    local = build_hub(Settings(data_dir=hub.data_dir, fsync=False), migrate=False)
    try:
        found = local.scanning.scan_content(listing["files"][0]["sha256"])
    finally:
        local.close()
    assert found.status.value == "safe" and found.format == "safetensors"
    assert found.findings[0] == SEALED_FINDING


def test_the_command_line(hub: ServerInfo, published: Published, tmp_path: Path) -> None:
    import subprocess
    import sys

    grant(hub, published.repo_id, hub.bob, "bob")

    def kaiyuan(token: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "KAIYUAN_ENDPOINT": hub.url,
            "HF_TOKEN": token,
            "HF_HOME": str(tmp_path / "hf"),
        }
        return subprocess.run(
            [sys.executable, "-m", "kaiyuan", "sealed", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )

    loaded = kaiyuan(hub.bob, "load", published.repo_id)
    assert loaded.returncode == 0, loaded.stderr
    assert f"loaded {len(published.tensors)} tensors" in loaded.stdout
    assert "every chunk authenticated" in loaded.stdout
    shown = kaiyuan(hub.bob, "policy", published.repo_id, "--show")
    assert shown.returncode == 0 and '"*.safetensors"' in shown.stdout
    assert kaiyuan(hub.bob, "revoke", published.repo_id, "bob").returncode == 5  # not a writer
    assert kaiyuan(hub.alice, "revoke", published.repo_id, "bob").returncode == 0
    refused = kaiyuan(hub.bob, "load", published.repo_id)
    assert refused.returncode == 5 and "revoked" in refused.stderr
    assert kaiyuan(hub.alice, "revoke", published.repo_id, "bob", "--restore").returncode == 0
    log = kaiyuan(hub.alice, "releases", published.repo_id, "--limit", "3")
    assert log.returncode == 0 and "refused" in log.stdout and "released" in log.stdout
    assert kaiyuan(hub.alice, "policy", published.repo_id).returncode == 2  # no --pattern
    assert not any(no_plaintext_under(tmp_path, published.needles))
