"""Remember which (device, inode, size, mtime, ctime) was already hashed, so re-pushing copies nothing.

ctime cannot be set by an unprivileged user and changes on every write, so a matching key means the content
is unchanged, with one caveat ("racy" files, as in git): timestamps have a coarse granularity, so a file
written just before it was hashed could be modified again within the same tick without its ctime changing.
Entries are therefore only recorded for files whose ctime is older than ``racy_window_ns`` when hashing began.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from sqlalchemy import Engine, delete
from sqlalchemy.dialects.sqlite import insert
from sqlmodel import Session, col, select

from .engine import read_session, write_session
from .tables import StatCacheRow, utcnow


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


class StatCache:
    def __init__(self, engine: Engine, write_lock: threading.Lock) -> None:
        self._engine = engine
        self._lock = write_lock

    def lookup(self, key: StatKey) -> str | None:
        with read_session(self._engine) as s:
            row = s.exec(select(StatCacheRow).where(StatCacheRow.dev == key.dev, StatCacheRow.ino == key.ino)).first()
        if row is None or StatKey(row.dev, row.ino, row.size, row.mtime_ns, row.ctime_ns) != key:
            return None
        return row.sha256

    def record(self, key: StatKey, sha256: str) -> None:
        values = {
            "dev": key.dev,
            "ino": key.ino,
            "size": key.size,
            "mtime_ns": key.mtime_ns,
            "ctime_ns": key.ctime_ns,
            "sha256": sha256,
            "seen_at": utcnow(),
        }
        stmt = insert(StatCacheRow).values(**values)
        stmt = stmt.on_conflict_do_update(index_elements=["dev", "ino"], set_=values)
        with self._lock, write_session(self._engine) as s:
            s.exec(stmt)


def forget(session: Session, shas: list[str]) -> None:
    """Drop entries for removed objects, inside the caller's (GC) transaction."""
    if shas:
        session.exec(delete(StatCacheRow).where(col(StatCacheRow.sha256).in_(shas)))
