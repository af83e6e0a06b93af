"""The same curation on the local process pool and on Ray Data (a local Ray head the test
starts) gives byte-identical curated shards and removed-record lists."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kaiyuan.bootstrap import Hub
from kaiyuan.core.ids import RepoId, RepoKind
from kaiyuan.core.jobs import JobKind, JobStatus
from kaiyuan.core.models import Principal, Scope
from kaiyuan.services.curation.contributions import IncomingFile
from kaiyuan.services.jobs import JobTimings, JobWorker
from tests.conftest import HubFactory
from tests.support.corpus import build
from tests.support.postgres import free_port

pytestmark = pytest.mark.slow
REPO = RepoId("consortium", "corpus")


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    ray = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    port = free_port()
    temp = tmp_path_factory.mktemp("ray")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    started = subprocess.run(
        [
            ray,
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            f"--temp-dir={temp}",
            "--disable-usage-stats",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run(
            [ray, "stop", "--force"], capture_output=True, timeout=120, env=env, check=False
        )


def curate_once(hub: Hub, corpus: Path) -> dict[str, str]:
    """Contribute the corpus, accept it, run one curation job; the output files' oids."""
    hub.accounts.create_user("alice")
    hub.accounts.create_org("consortium", ["alice"])
    orgs = ("acme", "beta", "gamma")
    for org in orgs:
        hub.accounts.create_org(org, ["alice"])
    alice = Principal("alice", Scope.WRITE, ("consortium", *orgs))
    hub.repos.create(alice, RepoKind.DATASET, REPO, False)
    hub.contributions.set_policy(alice, REPO, list(orgs), [])
    for org in orgs:
        handles = [path.open("rb") for path in sorted((corpus / org).iterdir())]
        try:
            made = hub.contributions.contribute(
                alice,
                REPO,
                org,
                "cc-by-4.0",
                org,
                [IncomingFile(h.name.rsplit("/", 1)[1], h) for h in handles],
            )
        finally:
            for handle in handles:
                handle.close()
        hub.contributions.accept(alice, REPO, made.number)
    job = hub.curation.queue(alice, REPO, None)
    worker = JobWorker(hub.metadata, hub.jobs, {JobKind.CURATION: hub.curation.run}, JobTimings())
    assert worker.run_next()
    done = hub.jobs.get(job.id)
    assert done.status is JobStatus.SUCCEEDED, done.error + done.log
    at = hub.reads.resolve(alice, RepoKind.DATASET, REPO, done.result["commit"])
    files = hub.reads.list_tree(at, "", recursive=True)
    return {
        f.path: f.oid
        for f in files
        if f.path.startswith("data/") or f.path == "curation/removed.parquet"
    }


def test_local_and_ray_runs_give_identical_output(
    hub_factory: HubFactory, ray_head: str, tmp_path: Path
) -> None:
    build(tmp_path / "corpus")
    local = curate_once(
        hub_factory.make("sqlite", curation_workers=2, curation_batch_rows=50), tmp_path / "corpus"
    )
    on_ray = curate_once(
        hub_factory.make(
            "sqlite", curation_engine="ray", ray_address=ray_head, curation_batch_rows=50
        ),
        tmp_path / "corpus",
    )
    assert local
    assert "data/part-00000.parquet" in local
    assert on_ray == local
