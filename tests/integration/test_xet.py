"""Xet storage with the stock client: huggingface_hub + hf_xet as installed, no overrides.

A ~200 MB safetensors model goes up through Xet; a derivative (a few tensors changed, one header
field added) must send and store only a small fraction of its size; an LFS upload of another
derivative dedups against the Xet data; downloads through Xet and through plain HTTP give the
same bytes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
from safetensors.numpy import save_file

from tests.support.clients import client_env, run_client_script
from tests.support.hubs import ServerInfo
from tests.support.xetstats import pack_bytes, xorb_bytes

pytestmark = pytest.mark.slow

TENSORS = 40
TENSOR_VALUES = 2_500_000  # float16: 5 MB each, 200 MB in all

UPLOAD = """
import json, sys
from huggingface_hub import HfApi, constants
args = json.loads(sys.argv[1])
api = HfApi()
api.create_repo(args["repo"], exist_ok=True)
info = api.upload_folder(folder_path=args["folder"], repo_id=args["repo"])
tree = {e.path: getattr(e, "xet_hash", None) for e in api.list_repo_tree(args["repo"])}
print("RESULT " + json.dumps([{"xet": not constants.HF_HUB_DISABLE_XET, "tree": tree}]))
"""

DOWNLOAD = """
import hashlib, json, sys
from huggingface_hub import constants, file_download, hf_hub_download
args = json.loads(sys.argv[1])
calls = []
original = file_download.xet_get
def counting(*a, **k):
    calls.append(1)
    return original(*a, **k)
file_download.xet_get = counting
path = hf_hub_download(args["repo"], args["file"], cache_dir=args["cache"])
digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
print("RESULT " + json.dumps([{"sha256": digest, "xet_calls": len(calls)}]))
"""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while piece := handle.read(1 << 20):
            digest.update(piece)
    return digest.hexdigest()


def base_tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1234)
    return {
        f"layers.{i}.weight": rng.standard_normal(TENSOR_VALUES, dtype=np.float32).astype(
            np.float16
        )
        for i in range(TENSORS)
    }


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("family")
    tensors = base_tensors()
    base = root / "base"
    base.mkdir()
    save_file(tensors, str(base / "model.safetensors"), metadata={"format": "pt"})
    (base / "config.json").write_text(json.dumps({"model_type": "toy", "layers": TENSORS}))
    rng = np.random.default_rng(99)
    tuned = dict(tensors)
    for i in (3, 17, 31):  # a fine-tune that touched three tensors
        tuned[f"layers.{i}.weight"] = (tensors[f"layers.{i}.weight"] * 1.01).astype(np.float16)
    derived = root / "derived"
    derived.mkdir()
    save_file(
        tuned, str(derived / "model.safetensors"), metadata={"format": "pt", "base": "acme/base"}
    )
    other = dict(tensors)
    other["layers.5.weight"] = rng.standard_normal(TENSOR_VALUES, dtype=np.float32).astype(
        np.float16
    )
    lfs = root / "lfs"
    lfs.mkdir()
    save_file(other, str(lfs / "model.safetensors"), metadata={"format": "pt"})
    pushed = dict(tensors)
    for i in (8, 22):  # the base's own uploader pushes a fine-tune of two tensors
        pushed[f"layers.{i}.weight"] = (tensors[f"layers.{i}.weight"] * 0.99).astype(np.float16)
    again = root / "pushed"
    again.mkdir()
    save_file(pushed, str(again / "model.safetensors"), metadata={"format": "pt", "step": "2"})
    return {"base": base, "derived": derived, "lfs": lfs, "pushed": again}


def upload(
    server: ServerInfo, home: Path, repo: str, folder: Path, *, xet: bool
) -> dict[str, object]:
    env = client_env(server.url, home, server.alice, xet=xet)
    (result,) = run_client_script(
        server, UPLOAD, {"repo": repo, "folder": str(folder)}, env, timeout=600
    )
    return result


def download(server: ServerInfo, tmp_path: Path, repo: str, name: str, *, xet: bool) -> dict:
    home = tmp_path / f"home-{uuid.uuid4().hex[:6]}"
    env = client_env(server.url, home, server.alice, xet=xet)
    (result,) = run_client_script(
        server, DOWNLOAD, {"repo": repo, "file": name, "cache": str(home / "cache")}, env
    )
    return result


@pytest.fixture(scope="module")
def published(
    server: ServerInfo, family: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, object]:
    tmp = tmp_path_factory.mktemp("xet-clients")
    suffix = uuid.uuid4().hex[:6]
    sent, stored = [xorb_bytes(server)], [pack_bytes(server)]
    results = {}
    # Each upload from a machine of its own (a fresh HF_HOME), except `pushed`: it comes from
    # the base's uploader, whose client cache knows the base's chunks.
    for name, owner, xet, home in (
        ("base", "acme", True, "uploader"),
        ("derived", "alice", True, "other"),
        ("lfs", "alice", False, "third"),
        ("pushed", "acme", True, "uploader"),
    ):
        repo = f"{owner}/{name}-{suffix}"
        results[name] = upload(server, tmp / home, repo, family[name], xet=xet)
        sent.append(xorb_bytes(server))
        stored.append(pack_bytes(server))
    return {
        "suffix": suffix,
        **results,
        "sent": [b - a for a, b in itertools.pairwise(sent)],
        "stored": [b - a for a, b in itertools.pairwise(stored)],
    }


def test_upload_goes_through_xet_and_files_carry_xet_hashes(published: dict[str, object]) -> None:
    base = published["base"]
    assert isinstance(base, dict)
    assert base["xet"] is True
    assert base["tree"]["model.safetensors"]  # a Xet file id: downloads can use the CAS
    assert base["tree"]["config.json"] is None  # small files stay in git


def test_derivative_sends_and_stores_a_small_fraction(
    published: dict[str, object], family: dict[str, Path]
) -> None:
    sent, stored = published["sent"], published["stored"]
    assert isinstance(sent, list)
    assert isinstance(stored, list)
    size = (family["derived"] / "model.safetensors").stat().st_size
    assert sent[0] >= size * 0.99  # the base: everything is new (stored compressed: ~0.85)
    assert size * 0.5 < stored[0] <= size
    # A client with an empty cache finds the base only at its first key chunk (one in 1024
    # chunks is queried), so it sends what came before; the hub stores none of it twice.
    assert sent[1] < size * 0.30, sent
    # Three of forty tensors changed plus a header edit: well under a tenth is new.
    assert stored[1] < size * 0.10, stored
    # From the base's own uploader, the client's cache knows the base: it sends only new chunks.
    assert sent[3] < size * 0.08, sent
    assert stored[3] < size * 0.08, stored


def test_lfs_upload_dedups_against_xet_data(
    published: dict[str, object], family: dict[str, Path]
) -> None:
    stored = published["stored"]
    assert isinstance(stored, list)
    size = (family["lfs"] / "model.safetensors").stat().st_size
    lfs = published["lfs"]
    assert isinstance(lfs, dict)
    assert lfs["xet"] is False
    assert lfs["tree"]["model.safetensors"]  # chunked on the server, so it has a Xet id too
    assert stored[2] < size * 0.06, stored  # one tensor of forty changed


@pytest.mark.parametrize("which", ["base", "derived", "lfs"])
def test_xet_and_plain_downloads_are_identical(
    server: ServerInfo,
    published: dict[str, object],
    family: dict[str, Path],
    tmp_path: Path,
    which: str,
) -> None:
    owner = "acme" if which == "base" else "alice"
    repo = f"{owner}/{which}-{published['suffix']}"
    expected = sha256_file(family[which] / "model.safetensors")
    via_xet = download(server, tmp_path, repo, "model.safetensors", xet=True)
    plain = download(server, tmp_path, repo, "model.safetensors", xet=False)
    assert via_xet == {"sha256": expected, "xet_calls": 1}
    assert plain == {"sha256": expected, "xet_calls": 0}


def test_plain_range_reads_match_the_file(
    server: ServerInfo, published: dict[str, object], family: dict[str, Path]
) -> None:
    repo = f"alice/derived-{published['suffix']}"
    data = (family["derived"] / "model.safetensors").read_bytes()
    url = f"{server.url}/{repo}/resolve/main/model.safetensors"
    headers = {"authorization": f"Bearer {server.alice}"}
    head = httpx.head(url, headers=headers)
    assert head.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert head.headers["x-xet-hash"]
    assert "xet-read-token" in head.headers["x-xet-refresh-route"]
    for start, end in [(0, 99), (70_000, 200_000), (len(data) - 10, len(data) - 1)]:
        answer = httpx.get(url, headers={**headers, "range": f"bytes={start}-{end}"})
        assert answer.status_code == 206
        assert answer.content == data[start : end + 1]
    answer = httpx.get(url, headers={**headers, "range": f"bytes={len(data)}-"})
    assert answer.status_code == 416


def test_storage_accounting_api(server: ServerInfo, published: dict[str, object]) -> None:
    suffix = published["suffix"]
    headers = {"authorization": f"Bearer {server.alice}"}
    base = httpx.get(f"{server.url}/api/storage/models/acme/base-{suffix}", headers=headers)
    assert base.status_code == 200, base.text
    assert base.json()["logicalBytes"] > 200_000_000
    mine = httpx.get(f"{server.url}/api/storage/alice", headers=headers).json()
    hub = httpx.get(f"{server.url}/api/storage", headers=headers).json()
    # the derivatives share most bytes with the base: stored far below logical, hub-wide
    assert hub["storedBytes"] < hub["logicalBytes"] * 0.6
    assert hub["physicalBytes"] >= hub["storedBytes"]
    assert mine["logicalBytes"] >= 2 * 200_000_000
    assert httpx.get(f"{server.url}/api/storage").status_code == 401
    bob = {"authorization": f"Bearer {server.bob}"}
    assert httpx.get(f"{server.url}/api/storage/acme", headers=bob).status_code == 403


def test_admin_storage_and_gc_commands(server: ServerInfo, published: dict[str, object]) -> None:
    env = {**server.env}

    def kaiyuan(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kaiyuan", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    shown = kaiyuan("admin", "storage", "--json")
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["scope"] == "hub"
    assert report["stored_bytes"] < report["logical_bytes"]
    repo = kaiyuan("admin", "storage", "--repo", f"acme/base-{published['suffix']}")
    assert repo.returncode == 0, repo.stderr
    assert "dedup_ratio" in repo.stdout
    missing = kaiyuan("admin", "storage", "--repo", "acme/none")
    assert missing.returncode == 3
    dry = kaiyuan("admin", "gc", "--dry-run", "--grace-hours", "0")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("would free")
    assert json.loads(kaiyuan("admin", "storage", "--json").stdout) == report
    fsck = kaiyuan("admin", "fsck", "--verify-data")
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert fsck.stdout.rstrip().endswith("clean")
