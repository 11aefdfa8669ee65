"""Remember which (device, inode, size, mtime, ctime) was already hashed, so re-pushing copies nothing.

ctime cannot be set by an unprivileged user and changes on every write, so a matching key means the content
is unchanged, with one caveat ("racy" files, as in git): timestamps have a coarse granularity, so a file
written just before it was hashed could be modified again within the same tick without its ctime changing.
Entries are therefore only recorded for files whose ctime is older than ``racy_window_ns`` when hashing began.

Lookups and records use one dedicated connection with ``synchronous=NORMAL``: a cache entry needs no fsync
of its own (WAL with NORMAL never corrupts the database; a crash may only lose the latest entries, which
costs a re-hash), and neither needs an ORM session.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from daemon.store.db import chunked, db_time, marks
from daemon.store.tables import utcnow


@dataclass(frozen=True)
class StatKey:
    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> StatKey:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


_LOOKUP = "SELECT sha256 FROM stat_cache WHERE dev = ? AND ino = ? AND size = ? AND mtime_ns = ? AND ctime_ns = ?"
_RECORD = """
INSERT INTO stat_cache (dev, ino, size, mtime_ns, ctime_ns, sha256, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (dev, ino) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns,
    ctime_ns = excluded.ctime_ns, sha256 = excluded.sha256, seen_at = excluded.seen_at
"""


class StatCache:
    def __init__(self, db_path: Path, write_lock: threading.Lock, *, busy_timeout_s: float = 5.0) -> None:
        self._write_lock = write_lock  # the registry's: in-process writers queue here, not in SQLite's busy loop
        self._conn_lock = threading.Lock()
        self._conn = sqlite3.connect(db_path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA synchronous = NORMAL")

    def close(self) -> None:
        with self._conn_lock:
            self._conn.close()

    def lookup(self, key: StatKey) -> str | None:
        with self._conn_lock:
            row = self._conn.execute(_LOOKUP, (key.dev, key.ino, key.size, key.mtime_ns, key.ctime_ns)).fetchone()
        return None if row is None else str(row[0])

    def record(self, key: StatKey, sha256: str) -> None:
        """Remember ``key`` → ``sha256``; best effort (a busy database just means no entry)."""
        values = (key.dev, key.ino, key.size, key.mtime_ns, key.ctime_ns, sha256, db_time(utcnow()))
        with self._write_lock, self._conn_lock, contextlib.suppress(sqlite3.OperationalError):
            self._conn.execute(_RECORD, values)


def forget(conn: sqlite3.Connection, shas: Sequence[str]) -> None:
    """Drop entries for removed objects, inside the caller's (GC) transaction, in chunks that stay within
    SQLite's limit on bound variables (32,766 in most builds; a GC can remove more objects than that)."""
    for chunk in chunked(shas):
        conn.execute(f"DELETE FROM stat_cache WHERE sha256 IN ({marks(len(chunk))})", chunk)
