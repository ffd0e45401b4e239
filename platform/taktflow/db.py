"""The SQLAlchemy base, the Flask-SQLAlchemy extension and per-database connection set-up.

SQLite runs in WAL mode with a busy timeout, and write transactions begin with
BEGIN IMMEDIATE: two writers then queue for the write lock instead of one of them failing
with "database is locked" when it upgrades a read snapshot that is already stale. They queue
in `taktflow.sqlite_writers` (handed the lock as soon as it is free), not in SQLite's sleeping
busy handler.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase

from taktflow.sqlite_writers import QueuedWriterConnection

#: Execution option that marks a connection as a writer (SQLite: BEGIN IMMEDIATE).
WRITE_OPTION = "taktflow_write"
SQLITE_BUSY_TIMEOUT_MS = 30_000

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base for every taktflow table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)


@event.listens_for(Engine, "connect")
def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's implicit BEGIN would
        # start a deferred transaction we cannot upgrade safely).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()


@event.listens_for(Engine, "begin")
def _on_begin(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        raw = conn.connection.dbapi_connection
        if write and isinstance(raw, QueuedWriterConnection):
            raw.begin_write()
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def engine_options(database_url: str) -> dict[str, Any]:
    """Engine keyword arguments suited to the database in `database_url`."""
    if database_url.startswith("sqlite"):
        return {
            "connect_args": {
                "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                "factory": QueuedWriterConnection,
            }
        }
    return {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 20}
