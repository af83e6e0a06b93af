"""Scanning on a live hub, through the stock client: verdicts in the tree, policy at the push.

With the default policy a pickle that runs a command is refused at the commit (nothing of it
lands), whatever the file is called; files the scanner cannot vouch for are accepted and
flagged; `list_repo_tree(expand=True)` and `get_paths_info(expand=True)` carry each file's
`securityFileStatus`, which huggingface_hub parses into `RepoFile.security`. A hub set to refuse
nothing records the unsafe file and shows it.
"""

from __future__ import annotations

import os
import pickle
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.hf_api import RepoFile
from safetensors.numpy import save as save_safetensors

from tests.support.hostile import auth
from tests.support.hubs import ServerInfo, start_server

pytestmark = pytest.mark.slow


class _Shell:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (self.command,)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    with start_server(tmp_path_factory.mktemp("scan"), "sqlite", None) as server:
        yield server


@pytest.fixture(scope="module")
def lenient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    with start_server(tmp_path_factory.mktemp("scan-flag"), "sqlite", None, scan_refuse="") as s:
        yield s


def _evil(marker: Path) -> bytes:
    return pickle.dumps(_Shell(f"touch {marker}"), protocol=2)


def _security(api: HfApi, repo_id: str) -> dict[str, str]:
    files = [f for f in api.list_repo_tree(repo_id, expand=True) if isinstance(f, RepoFile)]
    return {f.path: f.security["status"] for f in files if f.security is not None}


def test_unsafe_pickles_are_refused_whatever_their_name(hub: ServerInfo, tmp_path: Path) -> None:
    api = HfApi(endpoint=hub.url, token=hub.alice)
    repo_id = f"alice/scan-{uuid.uuid4().hex[:8]}"
    api.create_repo(repo_id)
    weights = save_safetensors({"w": np.ones((4, 4), np.float32)})
    api.upload_file(path_or_fileobj=weights, path_in_repo="model.safetensors", repo_id=repo_id)
    marker = tmp_path / "pwned"
    for name in ("pytorch_model.bin", "model-00002.safetensors"):
        with pytest.raises(HfHubHTTPError) as refused:
            api.create_commit(
                repo_id,
                [
                    CommitOperationAdd(name, _evil(marker)),
                    CommitOperationAdd("notes.md", b"harmless, refused with it"),
                ],
                commit_message="sneak a pickle in",
            )
        assert refused.value.response.status_code in {400, 403, 422}
        assert "unsafe" in refused.value.response.text and "posix.system" in (
            refused.value.response.text
        )
    assert sorted(api.list_repo_files(repo_id)) == [".gitattributes", "model.safetensors"]
    assert _security(api, repo_id)["model.safetensors"] == "safe"
    assert not marker.exists()


def test_expanded_listings_carry_each_files_verdict(hub: ServerInfo) -> None:
    api = HfApi(endpoint=hub.url, token=hub.alice)
    repo_id = f"alice/scan-{uuid.uuid4().hex[:8]}"
    api.create_repo(repo_id)
    plain = pickle.dumps({"step": 3, "lr": [0.1, 0.01]}, protocol=4)
    api.create_commit(
        repo_id,
        [
            CommitOperationAdd("config.json", b'{"model_type": "llama"}'),
            CommitOperationAdd("optimizer.pt", plain),
            CommitOperationAdd("blob.bin", os.urandom(5000) + b"\x00"),
            CommitOperationAdd(
                "tokenizer_config.json",
                b'{"chat_template": "{{ cycler.__init__.__globals__.os.popen(\\"id\\").read() }}"}',
            ),
        ],
        commit_message="mixed files",
    )
    status = _security(api, repo_id)
    assert status["config.json"] == "safe"
    assert status["optimizer.pt"] == "safe"  # a pickle of plain containers imports nothing
    assert status["blob.bin"] == "caution"  # unknown bytes: accepted, never called safe
    assert status["tokenizer_config.json"] == "caution"
    infos = api.get_paths_info(repo_id, ["blob.bin", "config.json"], expand=True)
    assert {i.path: i.security["status"] for i in infos if isinstance(i, RepoFile)} == {
        "blob.bin": "caution",
        "config.json": "safe",
    }
    plain_listing = api.list_repo_tree(repo_id)  # not expanded: no verdicts, as on the Hub
    assert all(getattr(f, "security", None) is None for f in plain_listing)
    native = httpx.get(f"{hub.url}/api/scans/models/{repo_id}", headers=auth(hub.alice))
    assert native.status_code == 200, native.text
    by_path = {f["path"]: f for f in native.json()["files"]}
    assert by_path["blob.bin"]["status"] == "caution"
    assert by_path["optimizer.pt"]["format"] == "pickle"
    assert by_path[".gitattributes"]["status"] == "safe"
    page = httpx.get(f"{hub.url}/{repo_id}/tree/main", headers=auth(hub.alice))
    assert 'class="badge scan-caution"' in page.text and 'class="badge scan-safe"' in page.text


def test_a_hub_that_only_flags_records_and_shows_the_unsafe_file(
    lenient: ServerInfo, tmp_path: Path
) -> None:
    api = HfApi(endpoint=lenient.url, token=lenient.alice)
    repo_id = f"alice/scan-{uuid.uuid4().hex[:8]}"
    api.create_repo(repo_id)
    api.upload_file(
        path_or_fileobj=_evil(tmp_path / "pwned"), path_in_repo="model.bin", repo_id=repo_id
    )
    [entry] = [f for f in api.list_repo_tree(repo_id, expand=True) if f.path == "model.bin"]
    assert isinstance(entry, RepoFile) and entry.security is not None
    assert entry.security["status"] == "unsafe"
    scan = entry.security["pickle_import_scan"]
    assert scan["highestSafetyLevel"] == "dangerous"
    assert {"module": "posix", "name": "system", "safety": "dangerous"} in scan["imports"]
    blob_page = httpx.get(
        f"{lenient.url}/{repo_id}/blob/main/model.bin", headers=auth(lenient.alice)
    )
    assert "posix.system" in blob_page.text and "dangerous" in blob_page.text
    assert not (tmp_path / "pwned").exists()
