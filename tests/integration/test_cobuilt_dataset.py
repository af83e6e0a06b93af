"""A co-built dataset end to end on a live hub: three organisations contribute, maintainers
review, the curation pipeline runs as a job, and the stock clients read the curated revision.

The corpus (tests/support/corpus.py) plants exact and near duplicates across contributors,
traditional characters, valid and invalid PII, junk and blank records, so every stage's count
is known exactly.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from huggingface_hub import HfApi, hf_hub_download

from kaiyuan.bootstrap import build_hub
from kaiyuan.core.models import Scope
from tests.support.corpus import Planted, build
from tests.support.hubs import ServerInfo, settings_for, start_server

pytestmark = pytest.mark.slow

REPO = "consortium/corpus"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    root = tmp_path_factory.mktemp("cobuilt")
    with start_server(root, "sqlite", None, job_poll_seconds=0.5) as server:
        # More people and organisations, in the same database the server uses.
        local = build_hub(settings_for(root, "sqlite", None), migrate=False)
        try:
            for user in ("carol", "dave", "erin"):
                local.accounts.create_user(user)
            local.accounts.create_org("consortium", ["alice"])
            local.accounts.create_org("beta", ["carol"])
            local.accounts.create_org("gamma", ["dave"])
            for user in ("carol", "dave", "erin"):
                server.tokens[user] = local.accounts.create_token(user, Scope.WRITE, "write")
        finally:
            local.close()
        yield server


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], Planted]:
    return build(tmp_path_factory.mktemp("corpus"))


def cli(server: ServerInfo, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "kaiyuan",
            "data",
            *args,
            "--endpoint",
            server.url,
            "--token",
            token,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def api(server: ServerInfo, token: str | None, method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, server.url + path, headers=headers, timeout=60, **kw)


def contributions(server: ServerInfo) -> list[dict[str, Any]]:
    answer = api(server, server.alice, "GET", f"/api/cobuilding/datasets/{REPO}/contributions")
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.fixture(scope="module")
def curated(hub: ServerInfo, corpus: tuple[dict[str, Path], Planted]) -> dict[str, Any]:
    """The whole flow; the tests below look at what it left."""
    folders, _ = corpus
    HfApi(endpoint=hub.url, token=hub.alice).create_repo(REPO, repo_type="dataset")
    made = cli(hub, hub.alice, "policy", REPO, "--org", "acme", "--org", "beta", "--org", "gamma")
    assert made.returncode == 0, made.stderr
    numbers = {}
    for org, user in (("acme", "alice"), ("beta", "carol"), ("gamma", "dave")):
        done = cli(
            hub,
            hub.tokens[user],
            "contribute",
            REPO,
            str(folders[org]),
            "--org",
            org,
            "--licence",
            "cc-by-4.0",
            "--title",
            f"{org} text",
        )
        assert done.returncode == 0, done.stderr
        numbers[org] = json.loads(done.stdout)["number"]
    extra = cli(
        hub,
        hub.tokens["dave"],
        "contribute",
        REPO,
        str(folders["gamma"]),
        "--org",
        "gamma",
        "--licence",
        "cc-by-nc-4.0",
        "--title",
        "again",
    )
    assert extra.returncode == 0, extra.stderr
    for org in ("acme", "beta", "gamma"):
        accepted = cli(hub, hub.alice, "accept", REPO, str(numbers[org]), "--note", "checked")
        assert accepted.returncode == 0, accepted.stderr
    rejected = cli(hub, hub.alice, "reject", REPO, str(json.loads(extra.stdout)["number"]))
    assert rejected.returncode == 0, rejected.stderr
    run = cli(hub, hub.alice, "curate", REPO, "--wait")
    assert run.returncode == 0, run.stdout + run.stderr
    job = json.loads(run.stdout)
    assert job["status"] == "succeeded", job
    return {"job": job, "numbers": numbers}


def test_every_stage_counts_exactly_what_was_planted(
    hub: ServerInfo, curated: dict[str, Any], corpus: tuple[dict[str, Path], Planted]
) -> None:
    _, planted = corpus
    report = api(hub, hub.bob, "GET", f"/api/curation/datasets/{REPO}/report").json()
    removed = {name: stage["removed"] for name, stage in report["stages"].items()}
    assert removed == {
        "normalize": planted.blank,
        "langid": 0,
        "chinese": 0,
        "exact_dedup": planted.exact,
        "near_dedup": planted.near,
        "quality": planted.junk,
        "pii": 0,
        "domains": 0,
    }
    total = sum(len(f.read_text().splitlines()) for f in corpus[0]["acme"].iterdir())
    assert report["records_in"] >= total
    assert report["records_out"] == report["records_in"] - sum(removed.values())
    counts = {k: len(v) for k, v in planted.valid_pii.items()}
    assert report["pii_redacted"] == counts
    # Exact copies and near-duplicates were planted by beta and gamma, never acme.
    assert report["stages"]["near_dedup"]["removed_by_organisation"] == {"beta": 8, "gamma": 2}
    text = cli(hub, hub.bob, "report", REPO)
    assert text.returncode == 0, text.stderr
    assert "near_dedup" in text.stdout
    assert "PII redacted" in text.stdout


def test_the_curated_records_carry_their_attribution_and_no_valid_pii(
    hub: ServerInfo,
    curated: dict[str, Any],
    corpus: tuple[dict[str, Path], Planted],
    tmp_path: Path,
) -> None:
    folders, planted = corpus
    commit = curated["job"]["result"]["commit"]
    shard = hf_hub_download(
        REPO,
        "data/part-00000.parquet",
        repo_type="dataset",
        revision=commit,
        endpoint=hub.url,
        token=hub.bob,
        cache_dir=tmp_path,
    )
    rows = pq.read_table(shard).to_pylist()
    texts = "\n".join(r["text"] for r in rows)
    for values in planted.valid_pii.values():
        for value in values:
            assert value not in texts
    for value in planted.invalid_pii:
        assert value in texts, f"an invalid look-alike {value} was changed"
    config_hash = curated["job"]["result"]["config_hash"]
    originals = _originals(folders)
    for row in rows:
        org = row["source_file"].split("/")[1]
        assert row["organisation"] == org
        assert row["contributor"] == {"acme": "alice", "beta": "carol", "gamma": "dave"}[org]
        assert row["licence"] == "cc-by-4.0"
        assert row["contribution"] == curated["numbers"][org]
        assert row["config_hash"] == config_hash
        source = originals[(org, row["source_file"].rsplit("/", 1)[1], row["source_row"])]
        if "<" not in row["text"]:  # redacted records differ by their placeholders
            assert row["text"] == " ".join(source.split())


def _originals(folders: dict[str, Path]) -> dict[tuple[str, str, int], str]:
    found = {}
    for org, folder in folders.items():
        for file in folder.iterdir():
            if file.suffix == ".txt":
                lines = [line for line in file.read_text().split("\n") if line.strip()]
            else:
                lines = [json.loads(line)["text"] for line in file.read_text().splitlines()]
            for row, text in enumerate(lines):
                found[(org, file.name, row)] = text
    return found


def test_each_near_duplicate_names_the_record_kept(
    hub: ServerInfo,
    curated: dict[str, Any],
    corpus: tuple[dict[str, Path], Planted],
    tmp_path: Path,
) -> None:
    _, planted = corpus
    path = hf_hub_download(
        REPO,
        "curation/removed.parquet",
        repo_type="dataset",
        revision=curated["job"]["result"]["commit"],
        endpoint=hub.url,
        token=hub.bob,
        cache_dir=tmp_path,
    )
    removed = pq.read_table(path).to_pylist()
    near = {
        (
            r["source_file"].split("/", 2)[1] + "/" + r["source_file"].rsplit("/", 1)[1],
            r["source_row"],
        ): (r["kept_file"].split("/", 2)[1] + "/" + r["kept_file"].rsplit("/", 1)[1], r["kept_row"])
        for r in removed
        if r["stage"] == "near_dedup"
    }
    assert near == dict(planted.near_pairs)
    exact = {
        (
            r["source_file"].split("/", 2)[1] + "/" + r["source_file"].rsplit("/", 1)[1],
            r["source_row"],
        )
        for r in removed
        if r["stage"] == "exact_dedup"
    }
    assert exact == {copy for copy, _ in planted.exact_pairs}


def test_datasets_loads_the_curated_revision(
    hub: ServerInfo, curated: dict[str, Any], tmp_path: Path
) -> None:
    script = (
        "import datasets, json, sys\n"
        f"d = datasets.load_dataset({REPO!r}, split='train', revision={curated['job']['result']['commit']!r})\n"
        "print(json.dumps({'rows': d.num_rows, 'columns': d.column_names}))\n"
    )
    env = {
        "HF_ENDPOINT": hub.url,
        "HF_TOKEN": hub.bob,
        "HF_HOME": str(tmp_path),
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded["rows"] == curated["job"]["result"]["records_out"]
    assert {
        "text",
        "organisation",
        "contributor",
        "source_file",
        "source_row",
        "config_hash",
    } <= set(loaded["columns"])


def test_the_card_lists_contributors_and_the_curation(
    hub: ServerInfo, curated: dict[str, Any], tmp_path: Path
) -> None:
    card = Path(
        hf_hub_download(
            REPO,
            "README.md",
            repo_type="dataset",
            endpoint=hub.url,
            token=hub.bob,
            cache_dir=tmp_path,
        )
    ).read_text()
    for org in ("acme", "beta", "gamma"):
        assert f"| {org} | 1 | cc-by-4.0 |" in card
    assert "## Curation" in card
    assert "data/*.parquet" in card
    assert curated["job"]["result"]["config_hash"][:16] in card


def test_contributions_are_reviewed_and_refused_as_they_should_be(
    hub: ServerInfo,
    curated: dict[str, Any],
    corpus: tuple[dict[str, Path], Planted],
    tmp_path: Path,
) -> None:
    folders, _ = corpus
    listed = contributions(hub)
    assert [c["status"] for c in listed] == ["accepted", "accepted", "accepted", "rejected"]
    assert all(c["branch"] == f"contrib/{c['number']}" for c in listed)
    rejected = listed[-1]
    files = HfApi(endpoint=hub.url, token=hub.alice).list_repo_files(REPO, repo_type="dataset")
    assert not any(p.startswith(f"contributions/gamma/{rejected['number']}/") for p in files)
    branch_files = HfApi(endpoint=hub.url, token=hub.alice).list_repo_files(
        REPO, repo_type="dataset", revision=rejected["branch"]
    )
    assert any(p.startswith(f"contributions/gamma/{rejected['number']}/") for p in branch_files)

    before = len(listed)
    # erin is in no listed organisation; carol is not in acme; bob has no organisation at all
    for token, org in (
        (hub.tokens["erin"], "gamma"),
        (hub.tokens["carol"], "acme"),
        (hub.bob, "beta"),
    ):
        refused = cli(
            hub,
            token,
            "contribute",
            REPO,
            str(folders["beta"]),
            "--org",
            org,
            "--licence",
            "mit",
            "--title",
            "x",
        )
        assert refused.returncode != 0
    # a contributor may not review, nor curate
    assert cli(hub, hub.tokens["carol"], "accept", REPO, "1").returncode != 0
    assert (
        api(hub, hub.tokens["carol"], "POST", f"/api/curation/datasets/{REPO}", json={}).status_code
        == 403
    )
    # an accepted contribution cannot be reviewed again
    again = api(
        hub, hub.alice, "POST", f"/api/cobuilding/datasets/{REPO}/contributions/1/reject", json={}
    )
    assert again.status_code == 409
    assert len(contributions(hub)) == before


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.jsonl", b'{"text": "ok"}\nnot json\n', "row 2"),
        ("bad.jsonl", b'{"body": "no text field"}\n', "text field"),
        ("bad.parquet", b"PAR1 not really", "Parquet"),
        ("bad.txt", b"\xff\xfe\x00 not utf-8", "UTF-8"),
        ("bad.exe", b"MZ", "contributions are"),
        ("../escape.jsonl", b'{"text": "x"}\n', "path"),
        ("empty.jsonl", b"\n\n", "no records"),
    ],
)
def test_a_bad_contribution_is_refused_and_leaves_nothing(
    hub: ServerInfo, curated: dict[str, Any], name: str, content: bytes, message: str
) -> None:
    before = contributions(hub)
    refs = HfApi(endpoint=hub.url, token=hub.alice).list_repo_refs(REPO, repo_type="dataset")
    answer = api(
        hub,
        hub.tokens["carol"],
        "POST",
        f"/api/cobuilding/datasets/{REPO}/contributions",
        data={"organisation": "beta", "licence": "cc-by-4.0", "title": "bad"},
        files=[("files", (name, content, "application/octet-stream"))],
    )
    assert answer.status_code == 400, answer.text
    assert message.lower() in answer.json()["error"].lower()
    assert contributions(hub) == before
    after = HfApi(endpoint=hub.url, token=hub.alice).list_repo_refs(REPO, repo_type="dataset")
    assert {b.name for b in after.branches} == {b.name for b in refs.branches}


@pytest.mark.parametrize(
    "body",
    [
        {"organisations": []},
        {"organisations": "acme"},
        {"organisations": ["../x"]},
        {"organisations": ["acme"], "licences": ["has space"]},
        {"organisations": ["acme"] * 101},
    ],
)
def test_a_bad_policy_is_refused(
    hub: ServerInfo, curated: dict[str, Any], body: dict[str, Any]
) -> None:
    answer = api(hub, hub.alice, "PUT", f"/api/cobuilding/datasets/{REPO}", json=body)
    assert answer.status_code == 400, answer.text
    policy = api(hub, hub.alice, "GET", f"/api/cobuilding/datasets/{REPO}").json()
    assert policy["organisations"] == ["acme", "beta", "gamma"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (b"stages: [{nope: {}}]", "unknown stage"),
        (b"stages: [{near_dedup: {bands: 0}}]", "bands"),
        (b"stages: [{quality: {overrides: {zh: {min_chars: -1}}}}]", "quality"),
        (b"output: {branch: '../x'}", "branch"),
        (b": : :", "YAML"),
        (b"version: 2", "version"),
    ],
)
def test_a_bad_pipeline_config_is_refused_before_a_job_is_queued(
    hub: ServerInfo, curated: dict[str, Any], config: bytes, message: str
) -> None:
    api_ = HfApi(endpoint=hub.url, token=hub.alice)
    api_.create_branch(REPO, repo_type="dataset", branch="bad-config", exist_ok=True)
    api_.upload_file(
        path_or_fileobj=config,
        path_in_repo="curation.yaml",
        repo_id=REPO,
        repo_type="dataset",
        revision="bad-config",
    )
    jobs = api(hub, hub.alice, "GET", f"/api/curation/datasets/{REPO}/jobs").json()
    answer = api(
        hub, hub.alice, "POST", f"/api/curation/datasets/{REPO}", json={"revision": "bad-config"}
    )
    assert answer.status_code == 400, answer.text
    assert message.lower() in answer.json()["error"].lower()
    assert len(api(hub, hub.alice, "GET", f"/api/curation/datasets/{REPO}/jobs").json()) == len(
        jobs
    )


def test_a_queued_job_can_be_cancelled_and_jobs_are_private_to_who_may_see_them(
    hub: ServerInfo, curated: dict[str, Any]
) -> None:
    job_id = curated["job"]["id"]
    shown = api(hub, hub.bob, "GET", f"/api/jobs/{job_id}").json()
    assert shown["status"] == "succeeded"
    assert "records in" in shown["log"]
    assert api(hub, hub.bob, "POST", f"/api/jobs/{job_id}/cancel").status_code == 403
    assert api(hub, hub.alice, "GET", "/api/jobs/not-hex").status_code in {400, 404, 422}
    assert api(hub, hub.alice, "GET", "/api/jobs/" + "0" * 24).status_code == 404
    # A run queued and cancelled at once never runs; one already finished stays finished.
    queued = api(hub, hub.alice, "POST", f"/api/curation/datasets/{REPO}", json={}).json()
    cancelled = api(hub, hub.alice, "POST", f"/api/jobs/{queued['id']}/cancel").json()
    deadline = time.monotonic() + 120
    while cancelled["status"] not in {"cancelled", "succeeded"} and time.monotonic() < deadline:
        time.sleep(0.5)
        cancelled = api(hub, hub.alice, "GET", f"/api/jobs/{queued['id']}").json()
    assert cancelled["status"] in {"cancelled", "succeeded"}
    assert cancelled["cancel_requested"] is True


def test_the_dataset_page_shows_the_statistics(hub: ServerInfo, curated: dict[str, Any]) -> None:
    page = httpx.get(f"{hub.url}/datasets/{REPO}/curation", timeout=60)
    assert page.status_code == 200, page.text[:500]
    html = page.text
    assert "Co-built by the members of acme, beta, gamma" in html
    for stage in ("normalize", "exact_dedup", "near_dedup", "quality", "pii"):
        assert f'<th scope="row">{stage}</th>' in html
    assert "Personal data redacted" in html
    assert "rejected" in html
    assert curated["job"]["result"]["config_hash"][:16] in html
    # a model has no such page content, and garbage paths are refused
    assert httpx.get(f"{hub.url}/datasets/{REPO}/curation/extra", timeout=60).status_code == 400


def test_a_private_dataset_shows_nothing_to_outsiders(
    hub: ServerInfo, curated: dict[str, Any]
) -> None:
    secret = "consortium/secret-corpus"
    HfApi(endpoint=hub.url, token=hub.alice).create_repo(secret, repo_type="dataset", private=True)
    made = api(
        hub,
        hub.alice,
        "PUT",
        f"/api/cobuilding/datasets/{secret}",
        json={"organisations": ["beta"]},
    )
    assert made.status_code == 200, made.text
    for token in (hub.bob, hub.tokens["carol"], None):
        for path in (
            f"/api/cobuilding/datasets/{secret}",
            f"/api/cobuilding/datasets/{secret}/contributions",
            f"/api/curation/datasets/{secret}/jobs",
            f"/api/curation/datasets/{secret}/report",
        ):
            assert api(hub, token, "GET", path).status_code in {401, 404}, path
    refused = api(
        hub,
        hub.tokens["carol"],
        "POST",
        f"/api/cobuilding/datasets/{secret}/contributions",
        data={"organisation": "beta", "licence": "cc-by-4.0", "title": "x"},
        files=[("files", ("a.jsonl", b'{"text": "hello there"}\n', "application/octet-stream"))],
    )
    assert refused.status_code == 404
    assert httpx.get(f"{hub.url}/datasets/{secret}/curation", timeout=60).status_code == 404


def test_a_file_that_is_also_a_folder_leaves_no_branch_and_an_unknown_output_branch_is_refused(
    hub: ServerInfo, curated: dict[str, Any]
) -> None:
    api_ = HfApi(endpoint=hub.url, token=hub.alice)
    branches = {b.name for b in api_.list_repo_refs(REPO, repo_type="dataset").branches}
    answer = api(
        hub,
        hub.tokens["carol"],
        "POST",
        f"/api/cobuilding/datasets/{REPO}/contributions",
        data={"organisation": "beta", "licence": "cc-by-4.0", "title": "clash"},
        files=[
            ("files", ("x.jsonl", b'{"text": "one two three four"}\n', "application/octet-stream")),
            (
                "files",
                ("x.jsonl/y.jsonl", b'{"text": "five six seven"}\n', "application/octet-stream"),
            ),
        ],
    )
    assert answer.status_code == 400, answer.text
    assert {b.name for b in api_.list_repo_refs(REPO, repo_type="dataset").branches} == branches
    api_.create_branch(REPO, repo_type="dataset", branch="other-output", exist_ok=True)
    api_.upload_file(
        path_or_fileobj=b"output: {branch: nowhere}\n",
        path_in_repo="curation.yaml",
        repo_id=REPO,
        repo_type="dataset",
        revision="other-output",
    )
    refused = api(
        hub, hub.alice, "POST", f"/api/curation/datasets/{REPO}", json={"revision": "other-output"}
    )
    assert refused.status_code == 404, refused.text
    assert "nowhere" in refused.json()["error"]
