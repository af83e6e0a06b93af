"""Building hubs for tests: in-process over real backends, or as a live `kaiyuan serve`."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
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
    port = free_port()
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
    log = (root / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "kaiyuan", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    info = ServerInfo(url, backend, root, tokens, env, process)
    try:
        wait_until_up(url, process)
        yield info
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


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
