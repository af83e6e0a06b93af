"""Whole-file downloads go out through `pathsend` (sendfile); the connection stays usable."""

from __future__ import annotations

import hashlib
import http.client
import socket
import uuid

import numpy as np
import pytest
from huggingface_hub import HfApi

from tests.support.hubs import ServerInfo


@pytest.fixture(scope="module")
def big_file(server: ServerInfo) -> tuple[str, bytes]:
    payload = np.random.default_rng(7).bytes(24 * 1024 * 1024 + 5)
    repo_id = f"alice/serve-{uuid.uuid4().hex[:8]}"
    api = HfApi(endpoint=server.url, token=server.alice)
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=payload, path_in_repo="w.bin", repo_id=repo_id)
    api.upload_file(path_or_fileobj=b"small", path_in_repo="s.txt", repo_id=repo_id)
    return repo_id, payload


def test_keep_alive_after_a_whole_file_send(
    server: ServerInfo, big_file: tuple[str, bytes]
) -> None:
    repo_id, payload = big_file
    port = int(server.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for path, expected in (("w.bin", payload), ("s.txt", b"small"), ("w.bin", payload)):
        conn.request("GET", f"/{repo_id}/resolve/main/{path}")
        response = conn.getresponse()
        assert response.status == 200
        assert int(response.headers["content-length"]) == len(expected)
        body = response.read()
        assert hashlib.sha256(body).digest() == hashlib.sha256(expected).digest()
    conn.request("HEAD", f"/{repo_id}/resolve/main/w.bin")
    head = conn.getresponse()
    head.read()
    assert head.status == 200
    assert int(head.headers["content-length"]) == len(payload)
    conn.close()


def test_client_vanishing_mid_send_leaves_server_healthy(
    server: ServerInfo, big_file: tuple[str, bytes]
) -> None:
    repo_id, payload = big_file
    port = int(server.url.rsplit(":", 1)[1])
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(f"GET /{repo_id}/resolve/main/w.bin HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        sock.recv(65536)
        sock.close()  # gone with most of the file unsent
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", f"/{repo_id}/resolve/main/w.bin")
    assert conn.getresponse().read() == payload
    assert "Traceback" not in server.log()
