"""The SQLite engine: pragmas on every connection, and explicit ``BEGIN IMMEDIATE`` for writes.

The sqlite3 driver's own transaction handling is switched off (SQLAlchemy's recommended pysqlite pattern) so
that reads run in a real deferred transaction (a consistent snapshot) and writes take the write lock up
front: with ``BEGIN IMMEDIATE`` a writer waits for the lock (busy timeout) instead of failing later when it
upgrades a read lock, which WAL mode cannot do without ``SQLITE_BUSY``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection
from sqlmodel import Session

from .faults import NO_FAULTS, Faults

DB_NAME = "registry.db"
_IMMEDIATE = "modeltui_begin_immediate"


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) as 0700: the daemon's state is private to its user."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def make_engine(state_dir: Path, *, busy_timeout_s: float = 5.0) -> Engine:
    private_dir(state_dir)
    db_path = state_dir / DB_NAME
    # Create the file 0600 ourselves; SQLite gives the -wal and -shm files the same permissions. Only when it
    # is missing: closing any descriptor of the file drops every POSIX lock this process holds on it, SQLite's
    # included, and another process could then checkpoint and delete the WAL under our open connections.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(db_path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    engine = create_engine(
        f"sqlite:///{db_path}",
        connect_args={"check_same_thread": False, "timeout": busy_timeout_s},
        pool_size=8,
        max_overflow=24,
        pool_timeout=max(busy_timeout_s, 1.0) * 2,
    )
    busy_ms = int(busy_timeout_s * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


@contextmanager
def immediate_connection(engine: Engine) -> Iterator[Connection]:
    """A connection whose transactions start with ``BEGIN IMMEDIATE``."""
    with engine.connect() as conn:
        conn.execution_options(**{_IMMEDIATE: True})
        yield conn


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    """A session in a deferred transaction: one consistent snapshot, rolled back at the end."""
    with Session(engine, expire_on_commit=False) as session:
        yield session


@contextmanager
def write_session(engine: Engine, faults: Faults = NO_FAULTS) -> Iterator[Session]:
    """A session in one ``BEGIN IMMEDIATE`` transaction, committed when the block ends without error."""
    with immediate_connection(engine) as conn, Session(bind=conn, expire_on_commit=False) as session:
        session.connection()  # begin now: wait for the write lock before reading anything
        yield session
        session.flush()
        faults.hit("db.before_commit")
        session.commit()
        faults.hit("db.committed")
