"""The few places SQLite and PostgreSQL differ: engine set-up and insert-or-ignore."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

WRITE_FLAG = "kaiyuan_write"


def as_utc(value: datetime) -> datetime:
    """A stored time as an aware UTC datetime (SQLite drops the zone; every stored time is UTC)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    if url.startswith("postgresql"):
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    raise ValueError(f"unsupported database URL scheme in {url.split(':', 1)[0]!r}")


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from pysqlite so that writers can BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A writer takes the write lock up front: no deadlock when two readers upgrade at once.
        immediate = connection.info.get(WRITE_FLAG, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def count_up(engine: Engine, table: Table, keys: dict[str, Any], column: str) -> Insert:
    """INSERT a row with `column` = 1, or add 1 to it when the key exists; returns the count."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(**keys, **{column: 1})
    counted: Insert = statement.on_conflict_do_update(
        index_elements=list(keys), set_={column: table.c[column] + 1}
    ).returning(table.c[column])
    return counted


def insert_ignoring_duplicates(engine: Engine, table: Table) -> Insert:
    """INSERT that silently skips rows whose primary key is already present."""
    if engine.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()
