"""The metadata store under contract, on each backend: SQLite, and PostgreSQL when present."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kaiyuan.storage.sql.store import SqlMetadataStore
from tests.support.postgres import PostgresCluster


@pytest.fixture
def store(
    backend: str, tmp_path: Path, postgres: PostgresCluster | None
) -> Iterator[SqlMetadataStore]:
    url = f"sqlite:///{tmp_path / 'meta.db'}"
    if backend == "postgres":
        assert postgres is not None
        url = postgres.new_database()
    result = SqlMetadataStore(url)
    result.migrate()
    result.migrate()  # idempotent
    yield result
    result.close()
