"""Raw sqlite3 transactions for the hot paths (push, show, log, model listings, alias moves).

SQLAlchemy's ``Connection`` and ORM cost ~100 µs per statement; a pooled driver connection costs ~5 µs and
keeps the prepared statements sqlite3 caches per connection. Connections come from the engine's pool, so
they carry the same pragmas (WAL, ``synchronous=FULL``, foreign keys, busy timeout) as ORM sessions.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TypeVar, cast

from sqlalchemy import Engine
from sqlalchemy.pool import PoolProxiedConnection

from .faults import NO_FAULTS, Faults

T = TypeVar("T")

#: Bound variables per ``IN (...)`` list: far below SQLite's limit (32,766 in most builds, 999 before 3.32).
IN_CHUNK = 500


def chunked(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """``items`` in slices of at most ``size``, for statements whose variable count would otherwise grow
    without bound."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def marks(n: int) -> str:
    """``?, ?, …``: ``n`` placeholders for an ``IN`` list."""
    return ",".join("?" * n)


class Db:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._writer_lock = threading.Lock()
        self._writer: PoolProxiedConnection | None = None

    def close(self) -> None:
        """Give the write connection back to the pool (before the engine is disposed)."""
        with self._writer_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        pooled = self._engine.raw_connection()
        try:
            yield cast(sqlite3.Connection, pooled.driver_connection)
        finally:
            pooled.close()

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A deferred transaction: one consistent snapshot, rolled back at the end."""
        with self._connection() as conn:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("ROLLBACK")

    @contextmanager
    def write(self, faults: Faults = NO_FAULTS) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` (wait for the write lock up front), committed when the block ends without error.

        Always on one connection, kept out of the pool: writers take turns anyway (SQLite has one write lock),
        a pool checkout and its reset cost ~20 µs, and a connection that made the latest change keeps its page
        cache, where one that did not must re-read every page (WAL mode drops the cache on foreign changes).
        """
        with self._writer_lock:
            if self._writer is None:
                self._writer = self._engine.raw_connection()  # the engine's pragmas, like any pooled connection
            conn = cast(sqlite3.Connection, self._writer.driver_connection)
            if conn.in_transaction:  # only if a ROLLBACK below failed; never build on a half transaction
                conn.execute("ROLLBACK")
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            faults.hit("db.before_commit")
            try:
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            faults.hit("db.committed")


# Timestamps are stored the way SQLAlchemy's SQLite DATETIME stores them (naive UTC text, always with
# microseconds), so ORM code and raw SQL read each other's rows and text order is time order.


def db_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def from_db_time(value: str) -> datetime:
    return datetime.fromisoformat(value + "+00:00")  # ~6x faster than .replace(tzinfo=UTC) afterwards
