"""Schema migrations: the migrated schema matches the tables, and later migrations keep the data."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import Connection, create_engine, inspect
from sqlmodel import SQLModel

from daemon.protocol import requests as q
from daemon.protocol.errors import ErrorCode, ProtocolError
from daemon.registry.service import Registry
from daemon.store import migrations, tables
from daemon.store.engine import make_engine


def _schema(engine_url: str) -> dict[str, object]:
    insp = inspect(create_engine(engine_url))
    out: dict[str, object] = {}
    for t in sorted(insp.get_table_names()):
        out[t] = {
            "columns": sorted((c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(t)),
            "indexes": sorted((i["name"], tuple(i["column_names"])) for i in insp.get_indexes(t)),
            "unique": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(t)),
            "fks": sorted((tuple(f["constrained_columns"]), f["referred_table"]) for f in insp.get_foreign_keys(t)),
        }
    return out


def test_migrations_match_the_tables(tmp_path: Path) -> None:
    migrated = make_engine(tmp_path / "a")
    migrations.migrate(migrated)
    migrated.dispose()
    created = create_engine(f"sqlite:///{tmp_path / 'b.db'}")
    assert tables.ModelRow.__tablename__ == "models"
    SQLModel.metadata.create_all(created)
    created.dispose()
    assert _schema(f"sqlite:///{tmp_path / 'a' / 'registry.db'}") == _schema(f"sqlite:///{tmp_path / 'b.db'}")


def test_later_migration_keeps_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    reg = Registry(state)
    d = tmp_path / "m"
    d.mkdir()
    (d / "modeltui.toml").write_bytes(b'name = "iris"\nflavor = "onnx"\nmodel_file = "m.onnx"\n')
    (d / "m.onnx").write_bytes(b"onnx")
    files = []
    for p in sorted(d.iterdir()):
        with open(p, "rb") as f:
            got = reg.ingest(f.fileno(), p.stat().st_size)
        files.append(q.PushFile(path=p.name, sha256=got.sha256, size=got.size))
    reg.push(q.Push(files=files, alias="production", tags={"k": "v"}), "alice")
    reg.close()
    latest = len(migrations.MIGRATIONS)
    with sqlite3.connect(state / "registry.db") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == latest

    def v2_index_by_creator(conn: Connection) -> None:
        conn.exec_driver_sql("CREATE INDEX ix_versions_created_by ON versions (created_by)")

    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, v2_index_by_creator])
    reg = Registry(state)
    try:
        detail = reg.show(q.Show(ref="iris@production"))
        assert (detail.version.number, detail.version.tags, detail.version.created_by) == (1, {"k": "v"}, "alice")
        assert [f.path for f in detail.files] == ["m.onnx", "modeltui.toml"]
    finally:
        reg.close()
    with sqlite3.connect(state / "registry.db") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == latest + 1
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "ix_versions_created_by" in names


def test_failed_migration_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    Registry(state).close()

    def broken(conn: Connection) -> None:
        conn.exec_driver_sql("CREATE TABLE half (x INTEGER)")
        raise RuntimeError("boom")

    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, broken])
    with pytest.raises(RuntimeError, match="boom"):
        Registry(state)
    with sqlite3.connect(state / "registry.db") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(migrations.MIGRATIONS) - 1
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half'").fetchone()[0] == 0


def test_newer_database_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    Registry(state).close()
    with sqlite3.connect(state / "registry.db") as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(ProtocolError, match="newer than this daemon") as exc:
        Registry(state)
    assert exc.value.code == ErrorCode.UNAVAILABLE
