"""Looking into a live server's Xet storage from the test process (same database, read only)."""

from __future__ import annotations

from sqlalchemy import create_engine, func, select

from kaiyuan.storage.sql import tables as t
from tests.support.hubs import ServerInfo


def database_url(server: ServerInfo) -> str:
    return server.env.get("KAIYUAN_DATABASE_URL") or f"sqlite:///{server.data_dir / 'kaiyuan.db'}"


def _total(server: ServerInfo, column: object) -> int:
    engine = create_engine(database_url(server))
    try:
        with engine.connect() as connection:
            query = select(func.coalesce(func.sum(column), 0))  # type: ignore[arg-type]
            return int(connection.execute(query).scalar_one())
    finally:
        engine.dispose()


def xorb_bytes(server: ServerInfo) -> int:
    """Uncompressed bytes of every xorb received or built (what clients sent, in effect)."""
    return _total(server, t.xorbs.c.raw_bytes)


def pack_bytes(server: ServerInfo) -> int:
    """Bytes the xorbs actually occupy in blob storage after server-side deduplication."""
    return _total(server, t.xorbs.c.pack_bytes)
