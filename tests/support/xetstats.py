"""Looking into a live server's Xet storage from the test process (same database, read only)."""

from __future__ import annotations

from sqlalchemy import create_engine, func, select

from kaiyuan.storage.sql import tables as t
from tests.support.hubs import ServerInfo


def database_url(server: ServerInfo) -> str:
    return server.env.get("KAIYUAN_DATABASE_URL") or f"sqlite:///{server.data_dir / 'kaiyuan.db'}"


def xorb_bytes(server: ServerInfo) -> int:
    """Raw bytes of every xorb the hub holds (what clients sent or LFS uploads added)."""
    engine = create_engine(database_url(server))
    try:
        with engine.connect() as connection:
            return int(connection.execute(select(func.coalesce(func.sum(t.xorbs.c.raw_bytes), 0))).scalar_one())
    finally:
        engine.dispose()
