"""The real huggingface_hub client against a live Kaiyuan on 127.0.0.1 (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    HfFileSystem,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from safetensors.numpy import load_file, save_file

from tests.support.hubs import ServerInfo


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def git_blob_sha1(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()  # noqa: S324


def sha256_file(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a >20 MB safetensors file, a card, a config and a nested text file."""
    folder = tmp_path_factory.mktemp("model")
    rng = np.random.default_rng(0)
    save_file(
        {
            "embed": rng.standard_normal((5200, 1024), dtype=np.float32),
            "bias": np.arange(7, dtype=np.float32),
        },
        str(folder / "model.safetensors"),
    )
    (folder / "README.md").write_text("---\nlicense: apache-2.0\ntags:\n- test\n---\n# Tiny\n")
    (folder / "config.json").write_text('{"hidden_size": 1024}\n')
    (folder / "docs").mkdir()
    (folder / "docs" / "notes.txt").write_text("notes\n")
    return folder


@pytest.fixture(scope="module")
def published(server: ServerInfo, model_folder: Path) -> dict[str, str]:
    """alice/<name> with the model folder on main, a branch `feature/x`, a tag `v1.0`."""
    api = HfApi(endpoint=server.url, token=server.alice)
    repo_id = f"alice/{unique('tiny')}"
    api.create_repo(repo_id)
    info = api.upload_folder(folder_path=model_folder, repo_id=repo_id, commit_message="add model")
    api.create_branch(repo_id, branch="feature/x")
    api.create_tag(repo_id, tag="v1.0")
    return {"repo_id": repo_id, "sha": info.oid}


def test_whoami_reports_user_orgs_and_role(server: ServerInfo) -> None:
    me = HfApi(endpoint=server.url, token=server.alice).whoami()
    assert me["name"] == "alice"
    assert [o["name"] for o in me["orgs"]] == ["acme"]
    assert me["auth"]["accessToken"]["role"] == "write"


def test_upload_folder_then_read_back_everything(
    server: ServerInfo, published: dict[str, str], model_folder: Path
) -> None:
    api = HfApi(endpoint=server.url, token=server.alice)
    repo_id = published["repo_id"]
    info = api.model_info(repo_id, files_metadata=True)
    assert info.sha == published["sha"]
    assert info.card_data is not None and info.card_data["license"] == "apache-2.0"
    by_name = {s.rfilename: s for s in info.siblings or []}
    weights = by_name["model.safetensors"]
    assert weights.size > 20_000_000
    assert weights.lfs is not None
    assert weights.lfs.sha256 == sha256_file(model_folder / "model.safetensors")
    assert by_name["config.json"].lfs is None
    tree = {e.path: e for e in api.list_repo_tree(repo_id, recursive=True)}
    assert set(tree) == {
        ".gitattributes",
        "README.md",
        "config.json",
        "docs",
        "docs/notes.txt",
        "model.safetensors",
    }


def test_git_compatible_ids(
    server: ServerInfo, published: dict[str, str], model_folder: Path
) -> None:
    api = HfApi(endpoint=server.url, token=server.alice)
    entries = {e.path: e for e in api.list_repo_tree(published["repo_id"], recursive=True)}
    content = (model_folder / "config.json").read_bytes()
    assert entries["config.json"].blob_id == git_blob_sha1(content)
    weights = entries["model.safetensors"]
    pointer = (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{weights.lfs.sha256}\nsize {weights.size}\n"
    ).encode()
    assert weights.blob_id == git_blob_sha1(pointer)
    assert len(published["sha"]) == 40


def test_download_by_branch_tag_and_sha(
    server: ServerInfo, published: dict[str, str], model_folder: Path, tmp_path: Path
) -> None:
    repo_id, sha = published["repo_id"], published["sha"]
    original = sha256_file(model_folder / "model.safetensors")
    for revision in ("main", "feature/x", "v1.0", sha, sha[:10]):
        path = hf_hub_download(
            repo_id,
            "model.safetensors",
            revision=revision,
            endpoint=server.url,
            token=server.alice,
            cache_dir=tmp_path / "cache",
        )
        assert sha256_file(path) == original, revision
    tensors = load_file(path)
    assert tensors["bias"].tolist() == list(range(7))


def test_snapshot_download(
    server: ServerInfo, published: dict[str, str], model_folder: Path, tmp_path: Path
) -> None:
    folder = Path(
        snapshot_download(
            published["repo_id"],
            revision="v1.0",
            endpoint=server.url,
            token=server.alice,
            cache_dir=tmp_path,
        )
    )
    for name in ("README.md", "config.json", "docs/notes.txt", "model.safetensors"):
        assert (folder / name).read_bytes() == (model_folder / name).read_bytes()


def test_resolve_headers_and_range_resume(
    server: ServerInfo, published: dict[str, str], model_folder: Path
) -> None:
    """HEAD carries X-Repo-Commit and the right ETags; a Range request resumes mid-file."""
    repo_id = published["repo_id"]
    data = (model_folder / "model.safetensors").read_bytes()
    auth = {"authorization": f"Bearer {server.alice}"}
    url = f"{server.url}/{repo_id}/resolve/main/model.safetensors"
    head = httpx.head(url, headers=auth)
    assert head.status_code == 200
    assert head.headers["x-repo-commit"] == published["sha"]
    assert head.headers["x-linked-etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert int(head.headers["x-linked-size"]) == len(data) == int(head.headers["content-length"])
    cut = len(data) // 3
    rest = httpx.get(url, headers={**auth, "range": f"bytes={cut}-"})
    assert rest.status_code == 206
    assert rest.headers["content-range"] == f"bytes {cut}-{len(data) - 1}/{len(data)}"
    assert data[:cut] + rest.content == data
    small = httpx.head(f"{server.url}/{repo_id}/resolve/main/config.json", headers=auth)
    content = (model_folder / "config.json").read_bytes()
    assert small.headers["etag"] == f'"{git_blob_sha1(content)}"'
    fs = HfFileSystem(endpoint=server.url, token=server.alice)
    with fs.open(f"{repo_id}/model.safetensors", "rb", block_size=4096) as handle:
        handle.seek(1000)
        assert handle.read(5000) == data[1000:6000]


def test_missing_file_is_entry_not_found_with_commit(
    server: ServerInfo, published: dict[str, str], tmp_path: Path
) -> None:
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(
            published["repo_id"],
            "nope.bin",
            endpoint=server.url,
            token=server.alice,
            cache_dir=tmp_path,
        )
    head = httpx.head(f"{server.url}/{published['repo_id']}/resolve/main/nope.bin")
    assert head.status_code == 404
    assert head.headers["x-error-code"] == "EntryNotFound"
    assert head.headers["x-repo-commit"] == published["sha"]


def test_unknown_revision(server: ServerInfo, published: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(
            published["repo_id"],
            "config.json",
            revision="nope",
            endpoint=server.url,
            cache_dir=tmp_path,
        )


def test_refs_and_commits(server: ServerInfo, published: dict[str, str]) -> None:
    api = HfApi(endpoint=server.url, token=server.alice)
    refs = api.list_repo_refs(published["repo_id"])
    assert {b.name for b in refs.branches} == {"main", "feature/x"}
    assert [(t.name, t.target_commit) for t in refs.tags] == [("v1.0", published["sha"])]
    commits = api.list_repo_commits(published["repo_id"], revision="feature/x")
    assert [c.title for c in commits] == ["add model", "initial commit"]
    assert commits[0].commit_id == published["sha"]
    assert commits[0].authors == ["alice"]


def test_upload_file_delete_and_parent_commit(server: ServerInfo) -> None:
    api = HfApi(endpoint=server.url, token=server.alice)
    repo_id = f"acme/{unique('org-repo')}"
    api.create_repo(repo_id)
    first = api.upload_file(path_or_fileobj=b"one", path_in_repo="a/b.txt", repo_id=repo_id)
    second = api.create_commit(
        repo_id,
        operations=[CommitOperationAdd("c.txt", b"two"), CommitOperationDelete("a/b.txt")],
        commit_message="swap",
        parent_commit=first.oid,
    )
    assert [e.path for e in api.list_repo_tree(repo_id, recursive=True)] == [
        ".gitattributes",
        "c.txt",
    ]
    assert api.list_repo_commits(repo_id)[0].commit_id == second.oid
    assert api.model_info(repo_id).sha == second.oid


def test_tree_pagination_with_slash_in_revision(server: ServerInfo) -> None:
    """More than one page of entries on branch `dev/many`: the client follows absolute Link URLs."""
    api = HfApi(endpoint=server.url, token=server.alice)
    repo_id = f"alice/{unique('many')}"
    api.create_repo(repo_id)
    api.create_branch(repo_id, branch="dev/many")
    files = [CommitOperationAdd(f"files/{i:04d}.txt", f"{i}".encode()) for i in range(1105)]
    api.create_commit(repo_id, operations=files, commit_message="many", revision="dev/many")
    listed = [
        e.path for e in api.list_repo_tree(repo_id, path_in_repo="files", revision="dev/many")
    ]
    assert listed == [f"files/{i:04d}.txt" for i in range(1105)]
    raw = httpx.get(f"{server.url}/api/models/{repo_id}/tree/dev%2Fmany/files")
    assert 'rel="next"' in raw.headers["link"]
    assert "dev%2Fmany" in raw.headers["link"]
    assert len(raw.json()) == 1000


def test_paths_info(server: ServerInfo, published: dict[str, str]) -> None:
    api = HfApi(endpoint=server.url, token=server.alice)
    found = api.get_paths_info(published["repo_id"], ["config.json", "docs", "missing.txt"])
    assert sorted(e.path for e in found) == ["config.json", "docs"]


def test_dataset_repo_and_listing(server: ServerInfo) -> None:
    api = HfApi(endpoint=server.url, token=server.alice)
    repo_id = f"alice/{unique('data')}"
    api.create_repo(repo_id, repo_type="dataset")
    api.upload_file(
        path_or_fileobj=b'{"a": 1}\n',
        path_in_repo="data/train.jsonl",
        repo_id=repo_id,
        repo_type="dataset",
    )
    assert api.dataset_info(repo_id).id == repo_id
    assert repo_id in {d.id for d in api.list_datasets(search=repo_id.split("/")[1])}
    assert repo_id not in {m.id for m in api.list_models(author="alice")}
    path = hf_hub_download(
        repo_id, "data/train.jsonl", repo_type="dataset", endpoint=server.url, token=server.alice
    )
    assert Path(path).read_bytes() == b'{"a": 1}\n'


def test_private_repo_invisible_to_others(server: ServerInfo, tmp_path: Path) -> None:
    owner = HfApi(endpoint=server.url, token=server.alice)
    repo_id = f"acme/{unique('secret')}"
    owner.create_repo(repo_id, private=True)
    owner.upload_file(path_or_fileobj=b"classified", path_in_repo="s.txt", repo_id=repo_id)
    assert owner.model_info(repo_id).private is True
    for token in (server.bob, None):
        api = HfApi(endpoint=server.url, token=token or False)
        with pytest.raises(RepositoryNotFoundError):
            api.model_info(repo_id)
        with pytest.raises(RepositoryNotFoundError):
            hf_hub_download(
                repo_id, "s.txt", endpoint=server.url, token=token or False, cache_dir=tmp_path
            )
        assert repo_id not in {m.id for m in api.list_models(author="acme")}
    assert repo_id in {m.id for m in owner.list_models(author="acme")}
    reader = HfApi(endpoint=server.url, token=server.tokens["alice_read"])
    assert reader.model_info(repo_id).id == repo_id


def test_create_exist_ok_and_delete(server: ServerInfo) -> None:
    api = HfApi(endpoint=server.url, token=server.alice)
    repo_id = f"alice/{unique('gone')}"
    url = api.create_repo(repo_id)
    assert api.create_repo(repo_id, exist_ok=True) == url
    api.delete_repo(repo_id)
    assert not api.repo_exists(repo_id)
    api.delete_repo(repo_id, missing_ok=True)


def test_branch_and_tag_delete(server: ServerInfo) -> None:
    api = HfApi(endpoint=server.url, token=server.alice)
    repo_id = f"alice/{unique('refs')}"
    api.create_repo(repo_id)
    api.create_branch(repo_id, branch="tmp/b")
    api.create_branch(repo_id, branch="tmp/b", exist_ok=True)
    api.create_tag(repo_id, tag="t/1", revision="tmp/b")
    api.delete_tag(repo_id, tag="t/1")
    api.delete_branch(repo_id, branch="tmp/b")
    refs = api.list_repo_refs(repo_id)
    assert [b.name for b in refs.branches] == ["main"]
    assert refs.tags == []


def test_identical_files_stored_once(server: ServerInfo) -> None:
    api = HfApi(endpoint=server.url, token=server.alice)
    payload = np.random.default_rng(1).bytes(11 * 1024 * 1024)
    for _ in range(2):
        repo_id = f"alice/{unique('dedup')}"
        api.create_repo(repo_id)
        api.upload_file(path_or_fileobj=payload, path_in_repo="w.bin", repo_id=repo_id)
    digest = hashlib.sha256(payload).hexdigest()
    stored = list((server.data_dir / "blobs" / "objects").rglob(digest))
    assert len(stored) == 1
    assert list((server.data_dir / "blobs" / "tmp").iterdir()) == []


def test_interrupted_download_resumes_with_range(
    server: ServerInfo, published: dict[str, str], model_folder: Path, tmp_path: Path
) -> None:
    """The connection drops mid-file; hf_hub_download retries with `Range` and gets the rest."""
    from tests.support.cutting_proxy import CuttingProxy

    port = int(server.url.rsplit(":", 1)[1])
    original = sha256_file(model_folder / "model.safetensors")
    with CuttingProxy(port, cut_after=15 * 1024 * 1024) as proxy:
        path = hf_hub_download(
            published["repo_id"],
            "model.safetensors",
            endpoint=f"http://127.0.0.1:{proxy.port}",
            token=server.alice,
            cache_dir=tmp_path,
        )
        seen = b"".join(proxy.requests).lower()
    assert proxy.cuts == 1
    assert b"range: bytes=10485760-" in seen  # the client writes 10 MiB pieces
    assert sha256_file(path) == original
