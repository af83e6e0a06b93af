"""Provenance on a live hub: pushes through the real client are fingerprinted and scanned.

An undeclared derivative of a Llama-licensed base, published as apache-2.0 with no
`base_model`, is found from its weights alone: the measured edge is recorded, PROV-001 says
the card hides its base, and the licence checks now run on the measured ancestry (the Llama
licence's obligations come back as findings). A card declaring a base its weights do not
support gets PROV-002. The CLI's `scan` and `compare` read the same results.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from huggingface_hub import CommitOperationAdd, HfApi
from safetensors.numpy import load_file, save_file

from tests.support.hostile import auth
from tests.support.hubs import ServerInfo, start_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    root = tmp_path_factory.mktemp("provenance")
    with start_server(root, "sqlite", None, provenance_poll_seconds=0.5) as server:
        yield server


def card(**meta: object) -> bytes:
    return f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\n# model\n".encode()


def publish(hub: ServerInfo, repo_id: str, folder: Path, readme: bytes) -> str:
    api = HfApi(endpoint=hub.url, token=hub.alice)
    api.create_repo(repo_id)
    operations = [CommitOperationAdd("README.md", readme)]
    operations += [
        CommitOperationAdd(p.name, str(p)) for p in sorted(folder.iterdir()) if p.is_file()
    ]
    return api.create_commit(repo_id, operations, commit_message="publish").oid


def provenance(hub: ServerInfo, repo_id: str, timeout: float = 120.0) -> dict[str, Any]:
    """The provenance of a model once its fingerprint and scan have finished."""
    deadline = time.monotonic() + timeout
    while True:
        answer = httpx.get(f"{hub.url}/api/provenance/models/{repo_id}", headers=auth(hub.alice))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        if body["status"] in {"done", "failed", "no-weights"}:
            return body
        assert time.monotonic() < deadline, f"fingerprint still {body['status']}"
        time.sleep(0.5)


def findings(hub: ServerInfo, repo_id: str) -> set[tuple[str, str | None]]:
    answer = httpx.get(f"{hub.url}/api/licence-report/models/{repo_id}", headers=auth(hub.alice))
    assert answer.status_code == 200, answer.text
    return {(f["check"], f["ancestor"]) for f in answer.json()["findings"]}


def unique(name: str) -> str:
    return f"acme/{name}-{uuid.uuid4().hex[:6]}"


def write_model(folder: Path, tensors: dict[str, np.ndarray], source: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"))
    for name in ("config.json", "tokenizer.json"):
        (folder / name).write_bytes((source / name).read_bytes())
    return folder


def noisy(tensors: dict[str, np.ndarray], sigma: float, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        name: (
            (value + rng.normal(0, sigma * value.std(), value.shape)).astype(value.dtype)
            if value.dtype == np.float32 and value.ndim == 2
            else value
        )
        for name, value in tensors.items()
    }


def random_like(tensors: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        name: (
            rng.normal(value.mean(), value.std(), value.shape).astype(value.dtype)
            if value.dtype == np.float32
            else value
        )
        for name, value in tensors.items()
    }


def test_undeclared_derivative_is_found_and_inherits_the_llama_licence(
    hub: ServerInfo, minilm: Path, tmp_path: Path
) -> None:
    weights = load_file(str(minilm / "model.safetensors"))
    base = unique("Llama-3.1-base")
    publish(hub, base, write_model(tmp_path / "base", weights, minilm), card(license="llama3.1"))
    assert provenance(hub, base)["status"] == "done"

    child = unique("my-own-model")
    derived = write_model(tmp_path / "child", noisy(weights, 0.3, seed=1), minilm)
    publish(hub, child, derived, card(license="apache-2.0"))
    found = provenance(hub, child)

    assert found["status"] == "done"
    top = found["matches"][0]
    assert (top["id"], top["relation"]) == (base, "derived")
    assert top["score"] > top["threshold"] > top["null_level"]
    assert [e["parent"] for e in found["measured_parents"]] == [base]
    checks = findings(hub, child)
    assert ("PROV-001", base) in checks
    # the Llama 3.1 licence's obligations, now that the ancestry is known
    assert any(check.startswith("LIC-") and ancestor == base for check, ancestor in checks)

    lineage = httpx.get(f"{hub.url}/api/lineage/models/{child}", headers=auth(hub.alice)).json()
    assert [(n["id"], n["origin"]) for n in lineage["ancestors"]] == [(base, "measured")]


def test_declared_base_the_weights_do_not_support(
    hub: ServerInfo, minilm: Path, tmp_path: Path
) -> None:
    # Each test's models are unrelated to the other tests' (the hub is shared): random weights.
    weights = random_like(load_file(str(minilm / "model.safetensors")), seed=5)
    base = unique("claimed-base")
    publish(hub, base, write_model(tmp_path / "base", weights, minilm), card(license="mit"))
    provenance(hub, base)
    child = unique("unrelated")
    folder = write_model(tmp_path / "child", random_like(weights, seed=7), minilm)
    publish(hub, child, folder, card(license="mit", base_model=base))
    found = provenance(hub, child)

    verdicts = {m["id"]: m["relation"] for m in found["matches"]}
    assert verdicts[base] == "independent"
    assert found["measured_parents"] == []
    assert ("PROV-002", base) in findings(hub, child)


def test_cli_scan_and_compare(hub: ServerInfo, minilm: Path, tmp_path: Path) -> None:
    weights = random_like(load_file(str(minilm / "model.safetensors")), seed=9)
    base = unique("scan-base")
    publish(hub, base, write_model(tmp_path / "base", weights, minilm), card(license="mit"))
    provenance(hub, base)
    local = write_model(tmp_path / "local", noisy(weights, 0.1, seed=3), minilm)
    env = {"KAIYUAN_ENDPOINT": hub.url, "HF_TOKEN": hub.alice}
    cli = [sys.executable, "-m", "kaiyuan", "provenance"]

    compared = subprocess.run(
        [*cli, "compare", str(local), base, "--json"],
        capture_output=True,
        text=True,
        env={**_env(), **env},
        check=False,
        timeout=300,
    )
    assert compared.returncode == 0, compared.stderr
    result = json.loads(compared.stdout)
    assert result["relation"] == "derived"
    assert result["score"] > result["threshold"]
    assert result["near_copy"]["relative_noise"] == pytest.approx(0.1, abs=0.02)

    scanned = subprocess.run(
        [*cli, "scan", base],
        capture_output=True,
        text=True,
        env={**_env(), **env},
        check=False,
        timeout=120,
    )
    assert scanned.returncode == 0, scanned.stderr
    assert "fingerprint done" in scanned.stdout


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_unreadable_weights_fail_with_the_reason_and_harm_nothing(
    hub: ServerInfo, tmp_path: Path
) -> None:
    repo = unique("broken")
    folder = tmp_path / "broken"
    folder.mkdir()
    # a header that claims more data than the file holds
    header = b'{"w": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 4000000]}}'
    (folder / "model.safetensors").write_bytes(
        len(header).to_bytes(8, "little") + header + b"\x00" * 16
    )
    sha = publish(hub, repo, folder, card(license="mit"))
    found = provenance(hub, repo)
    assert found["status"] == "failed"
    assert "data region" in found["error"]
    # the push itself stands, and the file is served as uploaded
    api = HfApi(endpoint=hub.url, token=hub.alice)
    assert api.model_info(repo).sha == sha


def test_a_card_edit_keeps_the_fingerprint_of_the_weights(
    hub: ServerInfo, minilm: Path, tmp_path: Path
) -> None:
    weights = random_like(load_file(str(minilm / "model.safetensors")), seed=13)
    repo = unique("card-edit")
    first = publish(hub, repo, write_model(tmp_path / "m", weights, minilm), card(license="mit"))
    provenance(hub, repo)
    api = HfApi(endpoint=hub.url, token=hub.alice)
    second = api.upload_file(
        path_or_fileobj=card(license="mit", tags=["edited"]),
        path_in_repo="README.md",
        repo_id=repo,
    ).oid
    answer = httpx.get(
        f"{hub.url}/api/provenance/models/{repo}",
        params={"revision": second},
        headers=auth(hub.alice),
    ).json()
    assert (answer["revision"], answer["fingerprinted_revision"]) == (second, first)
    assert answer["status"] == "done"
