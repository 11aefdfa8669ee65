"""Garbage collection removes unreferenced objects and stale staging files, and nothing else."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from daemon.protocol import requests as q
from daemon.protocol.errors import ProtocolError
from daemon.registry.objects import ObjectStore
from daemon.registry.service import Registry
from daemon.registry.statcache import forget
from daemon.store.db import db_time
from tests.helpers.models import IRIS_MANIFEST

Ingest = Callable[[Registry, Path], q.PushFile]


def age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def age_blob(reg: Registry, sha: str, seconds: float) -> None:
    """Backdate a blob's ``created_at`` (its counterpart of an mtime)."""
    at = db_time(datetime.now(UTC) - timedelta(seconds=seconds))
    with sqlite3.connect(reg.state_dir / "registry.db") as db:
        assert db.execute("UPDATE blobs SET created_at = ? WHERE sha256 = ?", (at, sha)).rowcount == 1


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


BIG = 100_000  # larger than INLINE_MAX: a file object


def test_gc_removes_only_old_unreferenced(ingest_path: Ingest, reg: Registry, model_dir: Path, tmp_path: Path) -> None:
    files = [ingest_path(reg, p) for p in sorted(model_dir.iterdir())]
    reg.push(q.Push(files=files), "alice")
    referenced = {f.sha256 for f in files}

    old_sha = ingest_path(reg, write(tmp_path / "old", b"o" * BIG)).sha256
    young_sha = ingest_path(reg, write(tmp_path / "young", b"y" * BIG)).sha256
    age(reg.objects.path_of(old_sha), 7200)
    for sha in referenced:
        if reg.objects.kind_of(sha) == "file":
            age(reg.objects.path_of(sha), 7200)  # old but referenced: must survive
        else:
            age_blob(reg, sha, 7200)

    staging = reg.state_dir / "staging"
    stale = staging / "ingest-stale"
    stale.write_bytes(b"half")
    age(stale, 7200)
    fresh = staging / "ingest-fresh"
    fresh.write_bytes(b"in progress")
    stranger = reg.state_dir / "objects" / "README"
    stranger.write_text("not an object")

    dry = reg.gc(q.Gc(dry_run=True))
    assert (dry.objects_removed, dry.staging_removed, dry.dry_run) == (1, 1, True)
    assert reg.objects.path_of(old_sha).exists()

    res = reg.gc(q.Gc())  # default grace: 3600 s
    assert (res.objects_removed, res.bytes_removed, res.staging_removed) == (1, BIG, 1)
    assert not reg.objects.path_of(old_sha).exists()
    assert reg.objects.path_of(young_sha).exists()
    assert not stale.exists()
    assert fresh.exists()
    assert stranger.exists()
    assert all(reg.objects.verify(sha) for sha in referenced)

    res0 = reg.gc(q.Gc(grace_seconds=0))
    assert (res0.objects_removed, res0.staging_removed) == (1, 1)
    assert {sha for sha, _ in reg.objects.iter_objects()} | {sha for sha, _ in reg.objects.iter_blobs()} == referenced


def test_gc_of_blobs_and_pending_uploads(ingest_path: Ingest, reg: Registry, tmp_path: Path) -> None:
    """Blobs follow the rules of file objects, with ``created_at`` as their mtime; pending uploads count as
    unreferenced objects uploaded when they were last uploaded."""
    manifest = ingest_path(reg, write(tmp_path / "modeltui.toml", IRIS_MANIFEST))
    kept = ingest_path(reg, write(tmp_path / "model.bin", b"kept"))
    reg.push(q.Push(files=[manifest, kept]), "alice")
    old = ingest_path(reg, write(tmp_path / "model.bin", b"old, unreferenced"))
    young = ingest_path(reg, write(tmp_path / "model.bin", b"young, unreferenced"))
    reg.push(q.Push(files=[manifest, old]), "alice")
    reg.push(q.Push(files=[manifest, young]), "alice")
    for n in (2, 3):
        reg.remove_version(q.RemoveVersion(ref=f"iris:{n}"), "alice")
    pending = ingest_path(reg, write(tmp_path / "model.bin", b"never pushed"))
    assert [reg.objects.kind_of(f.sha256) for f in (kept, old, young, pending)] == ["blob"] * 3 + ["pending"]
    for sha in (manifest.sha256, kept.sha256, old.sha256):
        age_blob(reg, sha, 7200)

    dry = reg.gc(q.Gc(dry_run=True))
    assert (dry.objects_removed, dry.bytes_removed) == (1, old.size)
    res = reg.gc(q.Gc())
    assert (res.objects_removed, res.bytes_removed) == (1, old.size)
    assert reg.objects.kind_of(old.sha256) is None
    assert [reg.objects.kind_of(f.sha256) for f in (manifest, kept, young, pending)] == [
        "blob",
        "blob",
        "blob",
        "pending",
    ]

    res0 = reg.gc(q.Gc(grace_seconds=0))
    assert (res0.objects_removed, res0.bytes_removed) == (2, young.size + pending.size)
    assert {sha for sha, _ in reg.objects.iter_blobs()} == {manifest.sha256, kept.sha256}
    with pytest.raises(ProtocolError, match="upload it first"):
        reg.push(q.Push(files=[manifest, pending]), "alice")


@pytest.mark.parametrize("size", [100, BIG], ids=["pending", "file"])
def test_gc_forgets_stat_cache_of_removed_objects(
    size: int, ingest_path: Ingest, reg: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ObjectStore, "racy_window_ns", 0)
    p = write(tmp_path / "f", os.urandom(size))
    time.sleep(0.02)
    sha = ingest_path(reg, p).sha256
    kind = reg.objects.kind_of(sha)

    def cached() -> int:
        with sqlite3.connect(reg.state_dir / "registry.db") as db:
            return int(db.execute("SELECT count(*) FROM stat_cache WHERE sha256 = ?", (sha,)).fetchone()[0])

    assert cached() == 1
    assert reg.gc(q.Gc(grace_seconds=0)).objects_removed == 1
    assert reg.objects.kind_of(sha) is None
    assert cached() == 0
    again = ingest_path(reg, p)  # must re-read and store it, not trust a stale cache entry
    assert again.sha256 == sha
    assert reg.objects.kind_of(sha) == kind


def test_pushing_reused_object_refreshes_grace(ingest_path: Ingest, reg: Registry, tmp_path: Path) -> None:
    """An old unreferenced object that is uploaded again gets a fresh mtime, so GC spares it until push."""
    p = write(tmp_path / "f", b"reused" * BIG)
    sha = ingest_path(reg, p).sha256
    age(reg.objects.path_of(sha), 7200)
    ingest_path(reg, p)
    assert reg.gc(q.Gc()).objects_removed == 0
    assert reg.objects.path_of(sha).exists()
    assert os.path.getmtime(reg.objects.path_of(sha)) > time.time() - 60


def test_reused_blob_is_leased_until_its_push(ingest_path: Ingest, reg: Registry, tmp_path: Path) -> None:
    """A blob has no mtime: an upload reusing an old unreferenced blob leases it for the grace period."""
    manifest = ingest_path(reg, write(tmp_path / "modeltui.toml", IRIS_MANIFEST))
    weights = ingest_path(reg, write(tmp_path / "model.bin", b"weights"))
    reg.push(q.Push(files=[manifest, weights]), "alice")
    reg.remove_model(q.RemoveModel(name="iris"), "alice")
    for f in (manifest, weights):
        age_blob(reg, f.sha256, 7200)

    again = ingest_path(reg, tmp_path / "model.bin")
    assert reg.objects.kind_of(again.sha256) == "blob"
    assert reg.gc(q.Gc()).objects_removed == 1  # the manifest: old, unreferenced, not uploaded again
    assert reg.objects.kind_of(weights.sha256) == "blob"
    manifest = ingest_path(reg, tmp_path / "modeltui.toml")
    assert reg.push(q.Push(files=[manifest, again]), "alice").created
    assert reg.gc(q.Gc(grace_seconds=0)).objects_removed == 0


def _hold_at_lstat(monkeypatch: pytest.MonkeyPatch, path: Path) -> tuple[threading.Event, threading.Event]:
    """Make the thread named "gc" stop right after it lstat()s ``path``, until the returned resume is set."""
    reached, resume = threading.Event(), threading.Event()
    real = os.lstat

    def lstat(p: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        st = real(p, *args, **kwargs)
        if threading.current_thread().name == "gc" and os.fspath(p) == os.fspath(path):
            reached.set()
            resume.wait(10)
        return st

    monkeypatch.setattr(os, "lstat", lstat)
    return reached, resume


def test_gc_and_an_upload_reusing_the_object_do_not_interleave(
    ingest_path: Ingest, reg: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GC read the object's old mtime; an upload of the same content arrives before the unlink. The upload must
    not report the object as stored and then lose it: the push that follows has to succeed."""
    d = tmp_path / "m"
    d.mkdir()
    (d / "modeltui.toml").write_bytes(IRIS_MANIFEST)
    (d / "model.bin").write_bytes(os.urandom(200_000))  # a file object (larger than INLINE_MAX)
    weights = ingest_path(reg, d / "model.bin")
    obj = reg.objects.path_of(weights.sha256)
    age(obj, 7200)
    reached, resume = _hold_at_lstat(monkeypatch, obj)

    gc = threading.Thread(target=reg.gc, args=(q.Gc(),), name="gc")
    gc.start()
    assert reached.wait(10)
    uploaded: list[q.PushFile] = []
    upload = threading.Thread(target=lambda: uploaded.append(ingest_path(reg, d / "model.bin")))
    upload.start()
    upload.join(0.3)  # give the upload time to reach the object: it must wait for GC's decision
    resume.set()
    gc.join(10)
    upload.join(10)

    assert [u.sha256 for u in uploaded] == [weights.sha256]
    assert reg.objects.size_of(weights.sha256) == weights.size
    manifest = ingest_path(reg, d / "modeltui.toml")
    assert reg.push(q.Push(files=[manifest, uploaded[0]]), "alice").created


def test_refresh_and_unlink_run_under_the_store_lock(
    ingest_path: Ingest, reg: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The invariant behind the test above, checked deterministically: every mtime refresh of a reused object
    and every GC unlink of an object happen while the store lock is held."""
    p = tmp_path / "f"
    p.write_bytes(os.urandom(100_000))
    sha = ingest_path(reg, p).sha256
    objects_dir = os.fspath(reg.state_dir / "objects")
    seen: list[tuple[str, bool]] = []
    real_utime, real_unlink = os.utime, os.unlink

    def utime(path: Any, *args: Any, **kwargs: Any) -> None:
        if not args and not kwargs:  # "now": the store's refresh, not this test's age()
            seen.append(("utime", reg.objects.lock.locked()))
        real_utime(path, *args, **kwargs)

    def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        if os.fspath(path).startswith(objects_dir):
            seen.append(("unlink", reg.objects.lock.locked()))
        real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "utime", utime)
    monkeypatch.setattr(os, "unlink", unlink)
    ingest_path(reg, p)  # content already stored: refreshed, not copied
    age(reg.objects.path_of(sha), 7200)
    assert reg.gc(q.Gc()).objects_removed == 1
    assert ("utime", True) in seen
    assert ("unlink", True) in seen
    assert all(held for _, held in seen)


def test_forget_stays_within_sqlite_variable_limit(reg: Registry) -> None:
    """GC may remove more objects than SQLite binds variables in one statement (32,766 in most builds)."""
    shas = [f"{i:064x}" for i in range(40_000)]
    with sqlite3.connect(reg.state_dir / "registry.db", isolation_level=None) as db:
        db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 32_766)
        db.executemany(
            "INSERT INTO stat_cache (dev, ino, size, mtime_ns, ctime_ns, sha256, seen_at) "
            "VALUES (1, ?, 1, 1, 1, ?, 'x')",
            list(enumerate(shas)),
        )
        db.execute("BEGIN")
        forget(db, shas)
        db.execute("COMMIT")
        assert db.execute("SELECT count(*) FROM stat_cache").fetchone()[0] == 0
