"""The engine: pragmas on every connection, private files, BEGIN IMMEDIATE for writes."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

from sqlalchemy import text

from daemon.registry.service import Registry
from daemon.store.engine import make_engine, read_session, write_session


def test_pragmas_and_permissions(tmp_path: Path) -> None:
    state = tmp_path / "state"
    engine = make_engine(state, busy_timeout_s=2.5)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 2500
    engine.dispose()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "registry.db").stat().st_mode) == 0o600


def test_registry_dirs_are_private(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "state")
    reg.close()
    for name in ("objects", "staging"):
        assert stat.S_IMODE((tmp_path / "state" / name).stat().st_mode) == 0o700


def test_write_session_takes_the_write_lock_up_front(tmp_path: Path) -> None:
    engine = make_engine(tmp_path / "s", busy_timeout_s=10)
    with write_session(engine) as s:
        s.exec(text("CREATE TABLE t (x INTEGER)"))  # type: ignore[call-overload]
    entered = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def holder() -> None:
        with write_session(engine) as s:
            entered.set()
            s.exec(text("INSERT INTO t VALUES (1)"))  # type: ignore[call-overload]
            release.wait(5)
            order.append("first")

    t = threading.Thread(target=holder)
    t.start()
    entered.wait(5)
    with read_session(engine) as s:  # WAL: readers are not blocked by the writer
        assert s.exec(text("SELECT count(*) FROM t")).one()[0] == 0  # type: ignore[call-overload]
    release.set()
    with write_session(engine) as s:
        order.append("second")
        s.exec(text("INSERT INTO t VALUES (2)"))  # type: ignore[call-overload]
    t.join()
    assert order == ["first", "second"]
    engine.dispose()
