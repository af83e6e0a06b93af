"""The `hf` command line (upload, download, tags, whoami) against a live Kaiyuan.

Every command runs in a subprocess with only HF_ENDPOINT / HF_TOKEN / a fresh HF_HOME, exactly as a
user would set them (hf_xet installed and on); downloads are compared byte for byte with what was
uploaded.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sysconfig
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from tests.support.clients import client_env
from tests.support.hubs import ServerInfo

pytestmark = pytest.mark.slow

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def hf_executable() -> str:
    candidate = Path(sysconfig.get_path("scripts")) / "hf"
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("hf")
    if found is None:
        pytest.skip("the `hf` command is not installed")
    return found


@dataclass
class Result:
    rc: int
    out: str

    def ok(self) -> Result:
        assert self.rc == 0, self.out
        return self


@dataclass
class Cli:
    server: ServerInfo
    root: Path

    def __call__(self, *args: str, token: str | None = None) -> Result:
        """Run `hf *args` with a fresh HF_HOME; `token` is exported as HF_TOKEN (None: none).

        The client runs as installed: hf_xet on, so large files go up and down through Xet.
        """
        home = self.root / f"home-{uuid.uuid4().hex[:8]}"
        env = client_env(self.server.url, home, token, xet=True, NO_COLOR="1", TERM="dumb")
        proc = subprocess.run(
            [hf_executable(), *args],
            env=env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        out = _ANSI.sub("", proc.stdout + proc.stderr)
        return Result(proc.returncode, f"$ hf {' '.join(args)}\n{out}")


@pytest.fixture
def hf(server: ServerInfo, tmp_path: Path) -> Cli:
    return Cli(server, tmp_path)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_folder(root: Path) -> dict[str, bytes]:
    """A folder with a 3 MiB binary (LFS), a config, a nested text file, an empty file and a file
    whose path needs URL quoting."""
    files = {
        "config.json": b'{"hidden_size": 32, "name": "cli"}\n',
        "model.bin": os.urandom(3 * 1024 * 1024),
        "nested/dir/notes.txt": "notes \u00e9\u4e2d\n".encode(),
        "empty.txt": b"",
        "odd names/\u00e9\u4e2d #1+x.txt": b"quoted path\n",
    }
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return files


def read_tree(root: Path) -> dict[str, bytes]:
    """Files under `root`, keyed by relative posix path, without the client's `.cache/`."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and p.relative_to(root).parts[0] != ".cache"
    }


def test_whoami(hf: Cli, server: ServerInfo) -> None:
    """`hf auth whoami` names the token's user and its org."""
    out = hf("auth", "whoami", token=server.alice).ok().out
    assert "alice" in out
    assert "acme" in out


def test_upload_folder_creates_repo_then_download(
    hf: Cli, server: ServerInfo, tmp_path: Path
) -> None:
    """`hf upload REPO DIR` creates the repo and commits every file (binary via LFS); re-running
    it is a no-op (preupload reports unchanged oids); `hf download REPO --local-dir D` brings back
    identical bytes, and `--include` filters."""
    source = tmp_path / "src"
    files = make_folder(source)
    repo_id = f"alice/{unique('cli')}"
    hf("upload", repo_id, str(source), "--commit-message", "cli upload", token=server.alice).ok()

    api = HfApi(endpoint=server.url, token=server.alice)
    info = api.model_info(repo_id, files_metadata=True)
    siblings = {s.rfilename: s for s in info.siblings or []}
    assert set(files) <= set(siblings)
    assert siblings["model.bin"].lfs is not None
    assert siblings["model.bin"].size == len(files["model.bin"])
    assert siblings["config.json"].lfs is None
    commits = api.list_repo_commits(repo_id)
    assert commits[0].title == "cli upload"

    again = hf("upload", repo_id, str(source), token=server.alice).ok()
    assert "No files have been modified" in again.out
    assert len(api.list_repo_commits(repo_id)) == len(commits)

    target = tmp_path / "dst"
    result = hf("download", repo_id, "--local-dir", str(target), token=server.alice).ok()
    got = read_tree(target)
    got.pop(".gitattributes", None)
    assert got == files, result.out

    only = tmp_path / "only-txt"
    hf("download", repo_id, "--include", "*.txt", "--local-dir", str(only), token=server.alice).ok()
    assert read_tree(only) == {k: v for k, v in files.items() if k.endswith(".txt")}


def test_upload_single_file_to_branch(hf: Cli, server: ServerInfo, tmp_path: Path) -> None:
    """`hf upload REPO FILE PATH_IN_REPO --revision feature/x` creates that branch and lands there
    only; both a single-file and a whole-repo download at the branch return it."""
    api = HfApi(endpoint=server.url, token=server.alice)
    repo_id = f"alice/{unique('cli-branch')}"
    api.create_repo(repo_id)
    local = tmp_path / "w.bin"
    local.write_bytes(os.urandom(200_000))
    hf(
        "upload",
        repo_id,
        str(local),
        "weights/w.bin",
        "--revision",
        "feature/x",
        token=server.alice,
    ).ok()
    assert "weights/w.bin" in api.list_repo_files(repo_id, revision="feature/x")
    assert "weights/w.bin" not in api.list_repo_files(repo_id, revision="main")

    target = tmp_path / "dst"
    hf(
        "download",
        repo_id,
        "weights/w.bin",
        "--revision",
        "feature/x",
        "--local-dir",
        str(target),
        token=server.alice,
    ).ok()
    assert (target / "weights" / "w.bin").read_bytes() == local.read_bytes()

    whole = tmp_path / "whole"
    hf(
        "download",
        repo_id,
        "--revision",
        "feature/x",
        "--local-dir",
        str(whole),
        token=server.alice,
    ).ok()
    got = read_tree(whole)
    got.pop(".gitattributes", None)
    assert got == {"weights/w.bin": local.read_bytes()}

    missing = hf(
        "download",
        repo_id,
        "weights/w.bin",
        "--local-dir",
        str(tmp_path / "main"),
        token=server.alice,
    )
    assert missing.rc != 0, missing.out
    assert "File not found" in missing.out, missing.out  # 404 EntryNotFound
    assert not (tmp_path / "main" / "weights" / "w.bin").exists()


def test_download_by_tag_sha_and_main(hf: Cli, server: ServerInfo, tmp_path: Path) -> None:
    """After `hf repos tag create` and a second upload, --revision TAG/SHA give v1, main gives v2."""
    repo_id = f"alice/{unique('cli-tag')}"
    local = tmp_path / "data.txt"
    local.write_bytes(b"version one\n")
    hf("upload", repo_id, str(local), "data.txt", token=server.alice).ok()
    api = HfApi(endpoint=server.url, token=server.alice)
    first_sha = api.model_info(repo_id).sha
    assert first_sha is not None
    hf("repos", "tag", "create", repo_id, "v1", "-m", "first", token=server.alice).ok()
    local.write_bytes(b"version two, longer\n")
    hf("upload", repo_id, str(local), "data.txt", token=server.alice).ok()
    assert [t.name for t in api.list_repo_refs(repo_id).tags] == ["v1"]

    expected = {
        "v1": b"version one\n",
        first_sha: b"version one\n",
        first_sha[:12]: b"version one\n",
        "main": b"version two, longer\n",
    }
    for index, (revision, content) in enumerate(expected.items()):
        target = tmp_path / f"dst-{index}"
        hf(
            "download",
            repo_id,
            "data.txt",
            "--revision",
            revision,
            "--local-dir",
            str(target),
            token=server.alice,
        ).ok()
        assert (target / "data.txt").read_bytes() == content, revision


def test_dataset_repo_roundtrip(hf: Cli, server: ServerInfo, tmp_path: Path) -> None:
    """`--repo-type dataset` uploads into an org dataset repo and downloads it back."""
    source = tmp_path / "src"
    files = make_folder(source)
    repo_id = f"acme/{unique('cli-ds')}"
    hf("upload", repo_id, str(source), "--repo-type", "dataset", token=server.alice).ok()
    target = tmp_path / "dst"
    hf(
        "download",
        repo_id,
        "--repo-type",
        "dataset",
        "--local-dir",
        str(target),
        token=server.alice,
    ).ok()
    got = read_tree(target)
    got.pop(".gitattributes", None)
    assert got == files
    # the same name as a model repo does not exist
    as_model = hf("download", repo_id, "--local-dir", str(tmp_path / "m"), token=server.alice)
    assert as_model.rc != 0, as_model.out
    assert f"Model '{repo_id}' not found" in as_model.out, as_model.out


def test_download_missing_repo_fails(hf: Cli, server: ServerInfo, tmp_path: Path) -> None:
    """A missing repo or revision makes `hf download` exit non-zero with the matching message."""
    repo_id = f"alice/{unique('missing')}"
    result = hf("download", repo_id, "--local-dir", str(tmp_path / "dst"), token=server.alice)
    assert result.rc != 0, result.out
    # RepositoryNotFoundError (404 + X-Error-Code: RepoNotFound), not a cache/network fallback
    assert f"Model '{repo_id}' not found" in result.out, result.out
    assert "Local entry not found" not in result.out, result.out
    assert not read_tree(tmp_path / "dst")

    existing = f"alice/{unique('has-main')}"
    HfApi(endpoint=server.url, token=server.alice).create_repo(existing)
    bad_rev = hf("download", existing, "--revision", "nope", token=server.alice)
    assert bad_rev.rc != 0, bad_rev.out
    assert f"Revision not found in model '{existing}'" in bad_rev.out, bad_rev.out


def test_private_repo_access(hf: Cli, server: ServerInfo, tmp_path: Path) -> None:
    """A private repo: downloadable with alice's read token; anonymous and bob fail; bob cannot
    upload into alice's repo."""
    source = tmp_path / "src"
    files = make_folder(source)
    repo_id = f"alice/{unique('cli-private')}"
    hf("upload", repo_id, str(source), "--private", token=server.alice).ok()
    assert HfApi(endpoint=server.url, token=server.alice).model_info(repo_id).private is True

    target = tmp_path / "reader"
    hf("download", repo_id, "--local-dir", str(target), token=server.tokens["alice_read"]).ok()
    got = read_tree(target)
    got.pop(".gitattributes", None)
    assert got == files

    for label, token in (("anonymous", None), ("bob", server.bob)):
        denied = hf(
            "download", repo_id, "config.json", "--local-dir", str(tmp_path / label), token=token
        )
        assert denied.rc != 0, (label, denied.out)
        assert f"Model '{repo_id}' not found" in denied.out, (label, denied.out)
        assert not (tmp_path / label / "config.json").exists(), label

    intruder = tmp_path / "evil.txt"
    intruder.write_text("bob was here\n")
    pushed = hf("upload", repo_id, str(intruder), "evil.txt", token=server.bob)
    assert pushed.rc != 0, pushed.out
    names = HfApi(endpoint=server.url, token=server.alice).list_repo_files(repo_id)
    assert "evil.txt" not in names
