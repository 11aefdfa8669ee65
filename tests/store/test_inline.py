"""Small objects inline in SQLite: nothing on disk at upload, blobs committed with their push, read as memfds."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from daemon.protocol import requests as q
from daemon.protocol.errors import ErrorCode, ProtocolError
from daemon.registry import objects
from daemon.registry.objects import INLINE_MAX, ObjectStore
from daemon.registry.pending import Pending
from daemon.registry.service import Registry
from daemon.store.faults import Faults
from tests.helpers.models import IRIS_MANIFEST

Ingest = Callable[[Registry, Path], q.PushFile]


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def ingest(reg: Registry, path: Path) -> tuple[q.PushFile, bool]:
    fd = os.open(path, os.O_RDONLY)
    try:
        got = reg.ingest(fd, path.stat().st_size)
    finally:
        os.close(fd)
    return q.PushFile(path=path.name, sha256=got.sha256, size=got.size), got.copied


def blob_count(reg: Registry) -> int:
    with sqlite3.connect(reg.state_dir / "registry.db") as db:
        return int(db.execute("SELECT count(*) FROM blobs").fetchone()[0])


def on_disk(reg: Registry) -> list[Path]:
    return [p for d in ("objects", "staging") for p in (reg.state_dir / d).rglob("*") if p.is_file()]


def test_small_upload_writes_nothing_and_push_stores_blobs(reg: Registry, tmp_path: Path) -> None:
    manifest, copied = ingest(reg, write(tmp_path / "modeltui.toml", IRIS_MANIFEST))
    assert copied
    weights, copied = ingest(reg, write(tmp_path / "model.bin", b"w" * INLINE_MAX))
    assert copied
    assert ingest(reg, tmp_path / "model.bin") == (weights, False)  # pending already: not copied again
    assert reg.objects.kind_of(weights.sha256) == "pending"
    assert on_disk(reg) == []
    assert blob_count(reg) == 0
    assert reg.objects.size_of(weights.sha256) is None  # pending is not stored

    res = reg.push(q.Push(files=[manifest, weights]), "alice")
    assert res.created
    assert on_disk(reg) == []
    assert blob_count(reg) == 2
    assert reg.objects.kind_of(weights.sha256) == "blob"
    assert reg.objects.size_of(weights.sha256) == INLINE_MAX
    assert ingest(reg, tmp_path / "model.bin") == (weights, False)
    assert reg.counts() == (1, 1, 2, len(IRIS_MANIFEST) + INLINE_MAX)


def test_one_byte_over_inline_max_is_a_file_object(reg: Registry, tmp_path: Path) -> None:
    f, copied = ingest(reg, write(tmp_path / "big", b"x" * (INLINE_MAX + 1)))
    assert copied
    assert reg.objects.kind_of(f.sha256) == "file"
    assert reg.objects.path_of(f.sha256).stat().st_size == INLINE_MAX + 1


def test_checkout_of_blobs_gives_sealed_memfds(reg: Registry, tmp_path: Path) -> None:
    data = os.urandom(5000)
    manifest, _ = ingest(reg, write(tmp_path / "modeltui.toml", IRIS_MANIFEST))
    weights, _ = ingest(reg, write(tmp_path / "model.bin", data))
    reg.push(q.Push(files=[manifest, weights]), "alice")
    result, fds = reg.checkout(q.Checkout(ref="iris"))
    try:
        assert [f.path for f in result.files] == ["model.bin", "modeltui.toml"]
        fd = fds[0]
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0
        assert stat.S_ISREG(os.fstat(fd).st_mode)
        assert os.fstat(fd).st_size == len(data)
        assert os.pread(fd, len(data) + 1, 0) == data
        assert os.read(fd, len(data) + 1) == data
        with pytest.raises(PermissionError):  # sealed: immutable, like a file object
            os.pwrite(fd, b"evil", 0)
        assert os.pread(fds[1], 1 << 16, 0) == IRIS_MANIFEST
    finally:
        for fd in fds:
            os.close(fd)
    assert reg.objects.verify(weights.sha256)


def test_file_object_written_before_blobs_keeps_working(reg: Registry, tmp_path: Path) -> None:
    """A small object stored as a file (before blobs existed, or spilled) wins over everything else."""
    data = b"legacy weights"
    sha = hashlib.sha256(data).hexdigest()
    reg.objects._copy(-1, len(data), None, data=(memoryview(data), sha))
    assert reg.objects.kind_of(sha) == "file"
    weights, copied = ingest(reg, write(tmp_path / "model.bin", data))
    assert (weights.sha256, copied) == (sha, False)
    manifest, _ = ingest(reg, write(tmp_path / "modeltui.toml", IRIS_MANIFEST))
    reg.push(q.Push(files=[manifest, weights]), "alice")
    assert reg.objects.kind_of(sha) == "file"
    assert blob_count(reg) == 1  # only the manifest
    _, fds = reg.checkout(q.Checkout(ref="iris"))
    try:
        assert os.path.samestat(os.fstat(fds[0]), os.stat(reg.objects.path_of(sha)))
    finally:
        for fd in fds:
            os.close(fd)


def test_file_object_wins_over_blob_and_gc_drops_the_shadowed_blob(reg: Registry, tmp_path: Path) -> None:
    manifest, _ = ingest(reg, write(tmp_path / "modeltui.toml", IRIS_MANIFEST))
    weights, _ = ingest(reg, write(tmp_path / "model.bin", b"both ways"))
    reg.push(q.Push(files=[manifest, weights]), "alice")
    reg.objects._copy(-1, weights.size, None, data=(memoryview(b"both ways"), weights.sha256))
    assert reg.objects.kind_of(weights.sha256) == "file"
    fd = reg.objects.open_object(weights.sha256)
    try:
        assert os.path.samestat(os.fstat(fd), os.stat(reg.objects.path_of(weights.sha256)))
    finally:
        os.close(fd)
    assert reg.gc(q.Gc(grace_seconds=0)).objects_removed == 0  # the digest is still stored
    assert {sha for sha, _ in reg.objects.iter_blobs()} == {manifest.sha256}
    assert reg.objects.verify(weights.sha256)


def test_pending_over_budget_spills_oldest_to_file_objects(reg: Registry, tmp_path: Path) -> None:
    """The client was told these are uploaded: beyond the memory budget they go to disk, never away."""
    reg.objects._pending.budget_bytes = 10_000
    files = [ingest(reg, write(tmp_path / "modeltui.toml", IRIS_MANIFEST))[0]]
    for i in range(6):
        files.append(ingest(reg, write(tmp_path / f"f{i}", bytes([i]) * 4000))[0])
    files.append(ingest(reg, write(tmp_path / "model.bin", b"m"))[0])
    kinds = [reg.objects.kind_of(f.sha256) for f in files]
    assert kinds == ["file", "file", "file", "file", "file", "pending", "pending", "pending"]
    assert reg.objects._pending.total_bytes <= 10_000
    assert list((reg.state_dir / "staging").iterdir()) == []
    reg.push(q.Push(files=files), "alice")
    assert [reg.objects.kind_of(f.sha256) for f in files] == ["file"] * 5 + ["blob"] * 3
    assert reg.gc(q.Gc(grace_seconds=0)).objects_removed == 0


def test_pending_uploads_expire(reg: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest, _ = ingest(reg, write(tmp_path / "modeltui.toml", IRIS_MANIFEST))
    weights, _ = ingest(reg, write(tmp_path / "model.bin", b"w"))
    later = time.monotonic_ns() + reg.objects._pending.ttl_ns + 1
    monkeypatch.setattr(objects.time, "monotonic_ns", lambda: later)
    with pytest.raises(ProtocolError, match="upload it first") as exc:
        reg.push(q.Push(files=[manifest, weights]), "alice")
    assert exc.value.code == ErrorCode.INVALID
    assert reg.objects.kind_of(weights.sha256) is None
    assert len(reg.objects._pending) == 0  # dropped when found expired


def test_pending_ttl_is_never_below_minutes(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "state", gc_grace_seconds=0)
    try:
        assert reg.objects._pending.ttl_ns >= 60 * 1_000_000_000
    finally:
        reg.close()


def test_stat_cache_hit_requires_stored_or_pending(
    reg: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ObjectStore, "racy_window_ns", 0)
    p = write(tmp_path / "model.bin", b"cached")
    time.sleep(0.02)
    first, copied = ingest(reg, p)
    assert copied
    with reg.objects.lock:
        reg.objects._pending.pop(first.sha256)  # gone, but the stat cache still names it
    again, copied = ingest(reg, p)
    assert (again, copied) == (first, True)
    assert reg.objects.kind_of(first.sha256) == "pending"


def test_failed_push_keeps_pending_uploads(reg: Registry, tmp_path: Path) -> None:
    manifest, _ = ingest(reg, write(tmp_path / "modeltui.toml", IRIS_MANIFEST))
    weights, _ = ingest(reg, write(tmp_path / "model.bin", b"w"))
    missing = q.PushFile(path="extra", sha256="ab" * 32, size=1)
    with pytest.raises(ProtocolError, match="upload it first"):
        reg.push(q.Push(files=[manifest, weights, missing]), "alice")
    assert blob_count(reg) == 0
    assert reg.objects.kind_of(weights.sha256) == "pending"
    assert reg.push(q.Push(files=[manifest, weights]), "alice").created


def test_push_of_existing_version_leaves_no_pending(reg: Registry, tmp_path: Path) -> None:
    manifest, _ = ingest(reg, write(tmp_path / "modeltui.toml", IRIS_MANIFEST))
    weights, _ = ingest(reg, write(tmp_path / "model.bin", b"w"))
    reg.push(q.Push(files=[manifest, weights]), "alice")
    ingest(reg, tmp_path / "model.bin")
    assert not reg.push(q.Push(files=[manifest, weights], alias="production"), "alice").created
    assert len(reg.objects._pending) == 0
    assert reg.show(q.Show(ref="iris@production")).version.number == 1


def test_gc_deleting_a_blob_and_an_upload_of_it_do_not_interleave(
    reg: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GC deleted an old unreferenced blob but has not committed; an upload of that content must not lease the
    blob it still sees (and report it stored): it waits for the commit, then holds the content as pending."""
    manifest, _ = ingest(reg, write(tmp_path / "modeltui.toml", IRIS_MANIFEST))
    weights, _ = ingest(reg, write(tmp_path / "model.bin", b"old weights"))
    reg.push(q.Push(files=[manifest, weights]), "alice")
    reg.remove_model(q.RemoveModel(name="iris"), "alice")
    reached, resume = threading.Event(), threading.Event()
    held_at_commit: list[bool] = []

    class PauseBeforeCommit(Faults):
        def hit(self, point: str) -> None:
            if point == "db.before_commit" and threading.current_thread().name == "gc":
                held_at_commit.append(reg.objects.lock.locked())
                reached.set()
                resume.wait(10)

    monkeypatch.setattr(reg.objects, "_faults", PauseBeforeCommit())
    gc = threading.Thread(target=reg.gc, args=(q.Gc(grace_seconds=0),), name="gc")
    gc.start()
    assert reached.wait(10)
    uploaded: list[tuple[q.PushFile, bool]] = []
    upload = threading.Thread(target=lambda: uploaded.append(ingest(reg, tmp_path / "model.bin")))
    upload.start()
    upload.join(0.3)
    resume.set()
    gc.join(10)
    upload.join(10)

    assert held_at_commit == [True]
    assert uploaded == [(weights, True)]
    assert reg.objects.kind_of(weights.sha256) == "pending"
    manifest, _ = ingest(reg, tmp_path / "modeltui.toml")
    assert reg.push(q.Push(files=[manifest, weights]), "alice").created


def test_gc_deletes_more_blobs_than_sqlite_binds_variables(reg: Registry) -> None:
    """32,766 variables per statement in most SQLite builds: GC's deletes must be chunked."""

    @event.listens_for(reg._engine, "connect")
    def _limit(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 32_766)

    reg._engine.dispose()  # new connections get the limit
    n = 40_000
    with sqlite3.connect(reg.state_dir / "registry.db") as db:
        db.executemany(
            "INSERT INTO blobs (sha256, size, created_at, data) VALUES (?, 1, '2000-01-01 00:00:00.000000', x'00')",
            [(f"{i:064x}",) for i in range(n)],
        )
    res = reg.gc(q.Gc())
    assert (res.objects_removed, res.bytes_removed) == (n, n)
    assert blob_count(reg) == 0
    writer = reg._db._writer
    assert writer is not None
    assert writer.driver_connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) == 32_766


def test_pending_accounting() -> None:
    p = Pending(budget_bytes=10, ttl_ns=100, max_leases=2)
    assert p.add("a", b"12345", 0) == []
    assert p.add("b", b"12345", 1) == []
    assert p.add("c", b"123", 2) == [("a", b"12345")]  # over budget: the oldest is handed out to spill
    assert p.total_bytes == 13
    p.spilled("a", ok=False)  # the spill failed: still held, and counted again
    assert p.get("a", 3) == b"12345"
    assert p.add("d", b"1", 4) == [("a", b"12345")]
    p.spilled("a", ok=True)
    assert (p.get("a", 5), p.total_bytes) == (None, 9)
    p.pop("b")
    assert p.total_bytes == 4
    assert p.get("c", 2 + 100) == b"123"
    assert p.get("c", 2 + 101) is None  # expired
    assert p.older_than(1000) == [("d", 1)]
    assert p.expire(1000) == [("d", 1)]
    assert (len(p), p.total_bytes) == (0, 0)

    for i, sha in enumerate("xyz"):
        p.lease(sha, i)
    assert [p.leased_since(sha, 0) for sha in "xyz"] == [False, True, True]  # capped at two, oldest dropped
    p.lease("w", 150)
    assert [p.leased_since(sha, 0) for sha in "yzw"] == [False, False, True]  # older than the ttl


def test_remembered_blob_sizes_follow_gc(reg: Registry, tmp_path: Path) -> None:
    """Uploads remember which blobs exist; GC's deletions must make them forget, or a re-upload would report
    content as stored that is gone."""
    manifest, _ = ingest(reg, write(tmp_path / "modeltui.toml", IRIS_MANIFEST))
    weights, _ = ingest(reg, write(tmp_path / "model.bin", b"w"))
    reg.push(q.Push(files=[manifest, weights]), "alice")
    assert ingest(reg, tmp_path / "model.bin") == (weights, False)  # found, and remembered
    assert weights.sha256 in reg.objects._blob_sizes
    reg.remove_model(q.RemoveModel(name="iris"), "alice")
    time.sleep(0.01)  # the re-upload's lease is now older than GC's cutoff
    assert reg.gc(q.Gc(grace_seconds=0)).objects_removed == 2
    assert weights.sha256 not in reg.objects._blob_sizes
    assert ingest(reg, tmp_path / "model.bin") == (weights, True)
    assert reg.objects.kind_of(weights.sha256) == "pending"
