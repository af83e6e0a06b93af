"""A three-generation family: the edges recorded on push, the API, the CLI and the page.

base (apache-2.0) ← instruct (finetune) ← instruct-GGUF (quantized), each pushed with the stock
client. The edges pin the parent revision they were declared against, so a later push to the
base does not move them; private parents stay invisible to those who may not see them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import yaml
from huggingface_hub import CommitOperationAdd, HfApi

from tests.support.hostile import auth
from tests.support.hubs import ServerInfo, start_server


@dataclass
class Family:
    server: ServerInfo
    base: str
    instruct: str
    gguf: str
    base_commit: str
    instruct_commit: str


def card(**meta: object) -> bytes:
    return f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\n# Model\n".encode()


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Family]:
    with start_server(tmp_path_factory.mktemp("lineage"), "sqlite", None) as server:
        api = HfApi(endpoint=server.url, token=server.alice)
        tag = uuid.uuid4().hex[:6]
        base, instruct, gguf = (
            f"acme/fam-{tag}",
            f"acme/fam-{tag}-instruct",
            f"acme/fam-{tag}-instruct-GGUF",
        )
        commits = []
        for repo, meta, weights in (
            (base, {"license": "apache-2.0"}, "model.safetensors"),
            (instruct, {"license": "apache-2.0", "base_model": base}, "model.safetensors"),
            (
                gguf,
                {
                    "license": "apache-2.0",
                    "base_model": instruct,
                    "base_model_relation": "quantized",
                },
                "model-Q4_K_M.gguf",
            ),
        ):
            api.create_repo(repo)
            info = api.create_commit(
                repo,
                [
                    CommitOperationAdd("README.md", card(**meta)),
                    CommitOperationAdd("LICENSE", b"Apache License 2.0"),
                    CommitOperationAdd(weights, repo.encode()),
                ],
                commit_message="publish",
            )
            commits.append(info.oid)
        yield Family(server, base, instruct, gguf, commits[0], commits[1])


def lineage(family: Family, repo: str, token: str | None = None, **params: str) -> dict:
    answer = httpx.get(
        f"{family.server.url}/api/lineage/models/{repo}",
        params=params,
        headers=auth(token) if token else {},
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_the_api_shows_three_generations_with_pinned_revisions(family: Family) -> None:
    tree = lineage(family, family.gguf)
    [parent] = tree["ancestors"]
    assert (parent["id"], parent["relation"], parent["origin"]) == (
        family.instruct,
        "quantized",
        "declared",
    )
    assert parent["revision"] == family.instruct_commit
    [grandparent] = parent["nodes"]
    assert (grandparent["id"], grandparent["relation"]) == (family.base, "finetune")
    assert grandparent["revision"] == family.base_commit
    assert grandparent["licence"] == "apache-2.0"
    down = lineage(family, family.base)["descendants"]
    assert [(n["id"], n["relation"]) for n in down] == [(family.instruct, "finetune")]
    assert [(n["id"], n["relation"]) for n in down[0]["nodes"]] == [(family.gguf, "quantized")]


def test_edges_stay_pinned_when_the_parent_moves_on(family: Family) -> None:
    api = HfApi(endpoint=family.server.url, token=family.server.alice)
    api.upload_file(path_or_fileobj=b"later", path_in_repo="later.txt", repo_id=family.base)
    tree = lineage(family, family.instruct)
    assert tree["ancestors"][0]["revision"] == family.base_commit


def test_the_cli_prints_the_tree(family: Family) -> None:
    env = {**os.environ, "HF_ENDPOINT": family.server.url, "HF_TOKEN": family.server.alice}
    shown = subprocess.run(
        [sys.executable, "-m", "kaiyuan", "lineage", "show", family.gguf],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith(f"{family.gguf} @ ") and lines[0].endswith("[apache-2.0]")
    assert lines[1] == "ancestors:"
    assert lines[2] == (
        f"  └─ quantized of {family.instruct} @ {family.instruct_commit[:12]}  [apache-2.0]"
    )
    assert lines[3] == (
        f"     └─ finetune of {family.base} @ {family.base_commit[:12]}  [apache-2.0]"
    )
    as_json = subprocess.run(
        [sys.executable, "-m", "kaiyuan", "lineage", "show", family.gguf, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert json.loads(as_json.stdout)["ancestors"][0]["id"] == family.instruct
    missing = subprocess.run(
        [sys.executable, "-m", "kaiyuan", "lineage", "show", "acme/no-such-model"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 3 and missing.stderr.startswith("error: ")


def test_the_page_draws_the_graph(family: Family) -> None:
    page = httpx.get(f"{family.server.url}/{family.instruct}/lineage")
    assert page.status_code == 200
    assert "<svg" in page.text and page.text.count('<g class="node') == 3
    assert f'href="/{family.base}/lineage"' in page.text
    assert f'href="/{family.gguf}/lineage"' in page.text


def test_private_parents_stay_invisible(family: Family) -> None:
    server = family.server
    api = HfApi(endpoint=server.url, token=server.alice)
    secret = f"alice/secret-{uuid.uuid4().hex[:6]}"
    api.create_repo(secret, private=True)
    api.upload_file(path_or_fileobj=card(license="mit"), path_in_repo="README.md", repo_id=secret)
    child = f"alice/public-{uuid.uuid4().hex[:6]}"
    api.create_repo(child)
    api.upload_file(
        path_or_fileobj=card(license="mit", base_model=secret),
        path_in_repo="README.md",
        repo_id=child,
    )
    owner_view = lineage(family, child, server.alice)["ancestors"][0]
    assert owner_view["id"] == secret and owner_view["revision"]
    stranger = lineage(family, child, server.bob)["ancestors"][0]
    assert stranger["id"] is None and stranger["revision"] is None and stranger["licence"] is None
    assert stranger["name"] == secret  # the card says so publicly; nothing more is revealed
    missing = httpx.get(f"{server.url}/api/lineage/models/{secret}", headers=auth(server.bob))
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/lineage/models/acme/none", 404),
        ("/api/lineage/spaces/acme/x", 400),
        ("/api/lineage/models/acme/x?depth=0", 400),
        ("/api/lineage/models/acme/x?depth=abc", 400),
    ],
)
def test_garbage_lineage_requests(family: Family, path: str, status: int) -> None:
    answer = httpx.get(family.server.url + path)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]
