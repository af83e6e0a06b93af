"""`datasets.load_dataset` (normal and streaming) against a live Kaiyuan.

datasets reads `HF_ENDPOINT` when it is imported, so every load runs in a subprocess with a fresh
`HF_HOME`; each subprocess runs a batch of loads (each with its own cache dir) and prints the rows
as JSON, which are compared with what was uploaded.
"""

from __future__ import annotations

import io
import json
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import CommitOperationAdd, HfApi

from tests.support.clients import client_env, run_client_script
from tests.support.hubs import ServerInfo

pytestmark = pytest.mark.slow

_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import datasets

    def rows(ds):
        return [dict(row) for row in ds]

    results = []
    for job in json.loads(sys.argv[1]):
        kwargs = {k: v for k, v in job.items() if v is not None}
        try:
            loaded = datasets.load_dataset(**kwargs)
            if job.get("streaming"):
                if isinstance(loaded, datasets.IterableDatasetDict):
                    out = {split: rows(ds) for split, ds in loaded.items()}
                else:
                    out = rows(loaded)
            elif isinstance(loaded, datasets.DatasetDict):
                out = {split: ds.to_list() for split, ds in loaded.items()}
            else:
                out = loaded.to_list()
            results.append({"rows": out})
        except Exception as exc:  # report any failure to the test
            results.append({"error": type(exc).__name__, "message": str(exc)})
    print("RESULT " + json.dumps(results, default=str))
    """
)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def load_via_hub(
    server: ServerInfo, home: Path, jobs: list[dict[str, Any]], env_token: str | None = None
) -> list[dict[str, Any]]:
    """Run `load_dataset(**job)` for each job in one subprocess pointed at the server."""
    home.mkdir(parents=True)
    env = client_env(server.url, home, env_token, HF_DATASETS_DISABLE_PROGRESS_BARS="1")
    args = [{**job, "cache_dir": str(home / f"cache-{i}")} for i, job in enumerate(jobs)]
    results = run_client_script(server, _SCRIPT, args, env)
    assert len(results) == len(jobs)
    return results


def rows_of(result: dict[str, Any]) -> Any:
    assert "error" not in result, result
    return result["rows"]


def parquet_bytes(rows: list[dict[str, Any]]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    return buffer.getvalue()


def jsonl_bytes(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


TRAIN = [
    {"id": i, "text": f"sentence number {i} \u00e9\u00e8 \u4e2d", "score": i / 7, "ok": i % 3 == 0}
    for i in range(40)
]
TEST = [{"id": 100 + i, "text": f"held out {i}", "score": -i / 3, "ok": True} for i in range(5)]


@pytest.fixture(scope="module")
def parquet_repo(server: ServerInfo) -> dict[str, str]:
    """datasets/alice/<name>: data/train + data/test parquet shards, no README, tagged v1;
    then main moves on with a train shard of 3 rows; branch feature/v1 starts at tag v1."""
    api = HfApi(endpoint=server.url, token=server.alice)
    repo_id = f"alice/{unique('parquet')}"
    api.create_repo(repo_id, repo_type="dataset")
    first = api.create_commit(
        repo_id,
        repo_type="dataset",
        commit_message="parquet shards",
        operations=[
            CommitOperationAdd("data/train-00000-of-00001.parquet", parquet_bytes(TRAIN)),
            CommitOperationAdd("data/test-00000-of-00001.parquet", parquet_bytes(TEST)),
        ],
    )
    api.create_tag(repo_id, tag="v1", repo_type="dataset")
    api.upload_file(
        path_or_fileobj=parquet_bytes(TRAIN[:3]),
        path_in_repo="data/train-00000-of-00001.parquet",
        repo_id=repo_id,
        repo_type="dataset",
        commit_message="shrink train",
    )
    api.create_branch(repo_id, branch="feature/v1", revision="v1", repo_type="dataset")
    return {"repo_id": repo_id, "v1": first.oid}


def test_parquet_load_and_stream(
    server: ServerInfo, parquet_repo: dict[str, str], tmp_path: Path
) -> None:
    """Parquet shards under data/ load (both splits) and stream with identical rows, at a tag,
    a `/` branch, a commit sha and at main."""
    repo = parquet_repo["repo_id"]
    tag_all, tag_stream, branch_all, branch_stream, sha_test, main_train, main_stream = (
        load_via_hub(
            server,
            tmp_path / "home",
            [
                {"path": repo, "revision": "v1"},
                {"path": repo, "revision": "v1", "split": "train", "streaming": True},
                {"path": repo, "revision": "feature/v1"},
                {"path": repo, "revision": "feature/v1", "split": "test", "streaming": True},
                {"path": repo, "revision": parquet_repo["v1"], "split": "test"},
                {"path": repo, "split": "train"},
                {"path": repo, "split": "train", "streaming": True},
            ],
            env_token=server.alice,
        )
    )
    assert rows_of(tag_all) == {"train": TRAIN, "test": TEST}
    assert rows_of(tag_stream) == TRAIN
    assert rows_of(branch_all) == {"train": TRAIN, "test": TEST}
    assert rows_of(branch_stream) == TEST
    assert rows_of(sha_test) == TEST
    assert rows_of(main_train) == TRAIN[:3]
    assert rows_of(main_stream) == TRAIN[:3]


def test_jsonl_without_readme(server: ServerInfo, tmp_path: Path) -> None:
    """data/train.jsonl with no README: loaded and streamed anonymously from a public repo."""
    api = HfApi(endpoint=server.url, token=server.alice)
    repo_id = f"alice/{unique('jsonl')}"
    api.create_repo(repo_id, repo_type="dataset")
    rows = [{"question": f"q{i}?", "answer": i * i, "tags": ["a", str(i)]} for i in range(25)]
    api.upload_file(
        path_or_fileobj=jsonl_bytes(rows),
        path_in_repo="data/train.jsonl",
        repo_id=repo_id,
        repo_type="dataset",
    )
    files = api.list_repo_files(repo_id, repo_type="dataset")
    assert "data/train.jsonl" in files
    assert "README.md" not in files
    loaded, streamed = load_via_hub(
        server,
        tmp_path / "home",
        [{"path": repo_id}, {"path": repo_id, "split": "train", "streaming": True}],
    )
    assert rows_of(loaded) == {"train": rows}
    assert rows_of(streamed) == rows


def test_readme_configs(server: ServerInfo, tmp_path: Path) -> None:
    """A README whose `configs` front matter maps two configs to files outside data/.

    (datasets picks ONE builder for all configs of a repo from the first config's files, so both
    configs use parquet here; jsonl is covered by test_jsonl_without_readme.)"""
    api = HfApi(endpoint=server.url, token=server.alice)
    repo_id = f"acme/{unique('configs')}"
    api.create_repo(repo_id, repo_type="dataset")
    numbers = [{"n": i, "square": i * i} for i in range(12)]
    letters = [{"letter": chr(97 + i), "upper": chr(65 + i)} for i in range(6)]
    readme = textwrap.dedent(
        """\
        ---
        configs:
        - config_name: numbers
          data_files:
          - split: train
            path: numbers/*.parquet
        - config_name: letters
          data_files:
          - split: validation
            path: letters/all.parquet
        ---
        # Two configs
        """
    )
    api.create_commit(
        repo_id,
        repo_type="dataset",
        commit_message="two configs",
        operations=[
            CommitOperationAdd("README.md", readme.encode()),
            CommitOperationAdd("numbers/part-0.parquet", parquet_bytes(numbers[:7])),
            CommitOperationAdd("numbers/part-1.parquet", parquet_bytes(numbers[7:])),
            CommitOperationAdd("letters/all.parquet", parquet_bytes(letters)),
        ],
    )
    nums, lets, lets_stream = load_via_hub(
        server,
        tmp_path / "home",
        [
            {"path": repo_id, "name": "numbers"},
            {"path": repo_id, "name": "letters", "split": "validation"},
            {"path": repo_id, "name": "letters", "split": "validation", "streaming": True},
        ],
        env_token=server.bob,  # any valid token may read a public org repo
    )
    assert sorted(rows_of(nums)["train"], key=lambda r: r["n"]) == numbers
    assert list(rows_of(nums)) == ["train"]
    assert rows_of(lets) == letters
    assert rows_of(lets_stream) == letters


def test_private_dataset(server: ServerInfo, tmp_path: Path) -> None:
    """A private dataset loads and streams with the owner's token; anonymous and bob get
    DatasetNotFoundError."""
    api = HfApi(endpoint=server.url, token=server.alice)
    repo_id = f"alice/{unique('private-ds')}"
    api.create_repo(repo_id, repo_type="dataset", private=True)
    rows = [{"secret": i, "label": f"s{i}"} for i in range(9)]
    api.upload_file(
        path_or_fileobj=parquet_bytes(rows),
        path_in_repo="data/train-00000-of-00001.parquet",
        repo_id=repo_id,
        repo_type="dataset",
    )
    anonymous, bob, owner, owner_stream = load_via_hub(
        server,
        tmp_path / "home",
        [
            {"path": repo_id},
            {"path": repo_id, "token": server.bob},
            {"path": repo_id, "token": server.alice},
            {"path": repo_id, "split": "train", "streaming": True, "token": server.alice},
        ],
    )
    for label, denied in (("anonymous", anonymous), ("bob", bob)):
        assert denied.get("error") == "DatasetNotFoundError", (label, denied)
    assert rows_of(owner) == {"train": rows}
    assert rows_of(owner_stream) == rows
