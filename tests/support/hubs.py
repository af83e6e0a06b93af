"""Building hubs for tests: in-process over real backends, or as a live `kaiyuan serve`."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from kaiyuan.bootstrap import Hub, build_hub
from kaiyuan.config import Settings
from kaiyuan.core.models import Scope
from tests.support.postgres import PostgresCluster, free_port


def settings_for(
    root: Path, backend: str, postgres: PostgresCluster | None, **extra: object
) -> Settings:
    url = None
    if backend == "postgres":
        assert postgres is not None
        url = postgres.new_database()
    return Settings(data_dir=root, database_url=url, fsync=False, **extra)  # type: ignore[arg-type]


class HubFactory:
    def __init__(self, root: Path, postgres: PostgresCluster | None) -> None:
        self._root = root
        self._postgres = postgres
        self._hubs: list[Hub] = []

    def make(self, backend: str = "sqlite", **extra: object) -> Hub:
        root = self._root / f"hub{len(self._hubs)}"
        hub = build_hub(settings_for(root, backend, self._postgres, **extra))
        self._hubs.append(hub)
        return hub

    def close(self) -> None:
        for hub in self._hubs:
            hub.close()


@dataclass
class ServerInfo:
    url: str
    backend: str
    data_dir: Path
    tokens: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def alice(self) -> str:
        return self.tokens["alice"]

    @property
    def bob(self) -> str:
        return self.tokens["bob"]

    def log(self) -> str:
        path = self.data_dir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


def seed_accounts(hub: Hub) -> dict[str, str]:
    hub.accounts.create_user("alice")
    hub.accounts.create_user("bob")
    hub.accounts.create_org("acme", ["alice"])
    return {
        "alice": hub.accounts.create_token("alice", Scope.WRITE, "alice write"),
        "alice_read": hub.accounts.create_token("alice", Scope.READ, "alice read"),
        "bob": hub.accounts.create_token("bob", Scope.WRITE, "bob write"),
    }


SERVE = [sys.executable, "-m", "kaiyuan", "serve", "--host", "127.0.0.1"]


class HubProcess:
    """One `kaiyuan serve` child on a fixed port: started, stopped, SIGKILLed, started again."""

    def __init__(self, data_dir: Path, env: dict[str, str], port: int | None = None) -> None:
        self.data_dir = data_dir
        self.env = {**env, "KAIYUAN_DATA_DIR": str(data_dir)}
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*SERVE, "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until_up(self.url, self.process)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, as when a machine loses power."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=15)


def run_admin(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`kaiyuan admin ARGS` against the hub the environment names (the exit code is the caller's)."""
    return subprocess.run(
        [sys.executable, "-m", "kaiyuan", "admin", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def server_env(root: Path, settings: Settings, **extra: object) -> dict[str, str]:
    env = {
        **os.environ,
        "KAIYUAN_DATA_DIR": str(root),
        "KAIYUAN_FSYNC": "false",
        "KAIYUAN_LOG_LEVEL": "warning",
    }
    if settings.database_url:
        env["KAIYUAN_DATABASE_URL"] = settings.database_url
    for key, value in extra.items():
        env[f"KAIYUAN_{key.upper()}"] = str(value)
    return env


@contextlib.contextmanager
def start_server(
    root: Path, backend: str, postgres: PostgresCluster | None, **extra: object
) -> Iterator[ServerInfo]:
    settings = settings_for(root, backend, postgres, **extra)
    hub = build_hub(settings)
    try:
        tokens = seed_accounts(hub)
    finally:
        hub.close()
    child = HubProcess(root, server_env(root, settings, **extra))
    try:
        child.start()
        yield ServerInfo(child.url, backend, root, tokens, child.env, child.process)
    finally:
        child.stop()


@dataclass
class Cluster:
    """Several server processes over one database and one object store, and the seeded tokens."""

    nodes: list[HubProcess]
    tokens: dict[str, str]
    database_url: str

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]


@contextlib.contextmanager
def start_cluster(
    root: Path, postgres: PostgresCluster, endpoint: str, nodes: int = 2, **extra: object
) -> Iterator[Cluster]:
    """`nodes` processes sharing a new PostgreSQL database and a new bucket at `endpoint`.

    Each process has its own data directory (staging only); the secret key, the signing key and
    the sealing key ring are shared, as the deployment guide says they must be.
    """
    shared: dict[str, object] = {
        "blob_backend": "s3",
        "s3_endpoint_url": endpoint,
        "s3_bucket": f"cluster-{uuid.uuid4().hex[:12]}",
        "s3_access_key_id": "any",
        "s3_secret_access_key": "any",
        "secret_key": "cluster-test-signing-key",
        # the hub's OMS key and the sealed files' key ring, shared as the deployment guide says
        "signing_key_file": root / "shared" / "signing-key.pem",
        "sealing_key_dir": root / "shared" / "sealing-keys",
        **extra,
    }
    settings = settings_for(root / "seed", "postgres", postgres, **shared)
    hub = build_hub(settings)
    try:
        tokens = seed_accounts(hub)
    finally:
        hub.close()
    assert settings.database_url is not None
    children = [
        HubProcess(root / f"node{n}", server_env(root / f"node{n}", settings, **shared))
        for n in range(nodes)
    ]
    try:
        for child in children:
            child.start()
        yield Cluster(children, tokens, settings.database_url)
    finally:
        for child in children:
            child.stop()


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            httpx.get(f"{url}/api/models", timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("server did not come up")
