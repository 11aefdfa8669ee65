"""Garbage collection removes unreferenced objects and stale staging files, and nothing else."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.protocol import requests as q
from daemon.store.objects import ObjectStore
from daemon.versions import Registry

Ingest = Callable[[Registry, Path], q.PushFile]


def age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_gc_removes_only_old_unreferenced(ingest_path: Ingest, reg: Registry, model_dir: Path, tmp_path: Path) -> None:
    files = [ingest_path(reg, p) for p in sorted(model_dir.iterdir())]
    reg.push(q.Push(files=files), "alice")
    referenced = {f.sha256 for f in files}

    old = tmp_path / "old"
    old.write_bytes(b"orphan, old")
    young = tmp_path / "young"
    young.write_bytes(b"orphan, young")
    old_sha = ingest_path(reg, old).sha256
    young_sha = ingest_path(reg, young).sha256
    age(reg.objects.path_of(old_sha), 7200)
    for sha in referenced:
        age(reg.objects.path_of(sha), 7200)  # old but referenced: must survive

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
    assert (res.objects_removed, res.bytes_removed, res.staging_removed) == (1, len(b"orphan, old"), 1)
    assert not reg.objects.path_of(old_sha).exists()
    assert reg.objects.path_of(young_sha).exists()
    assert not stale.exists()
    assert fresh.exists()
    assert stranger.exists()
    assert all(reg.objects.verify(sha) for sha in referenced)

    res0 = reg.gc(q.Gc(grace_seconds=0))
    assert (res0.objects_removed, res0.staging_removed) == (1, 1)
    assert {sha for sha, _ in reg.objects.iter_objects()} == referenced


def test_gc_forgets_stat_cache_of_removed_objects(
    ingest_path: Ingest, reg: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ObjectStore, "racy_window_ns", 0)
    p = tmp_path / "f"
    p.write_bytes(b"content")
    time.sleep(0.02)
    sha = ingest_path(reg, p).sha256

    def cached() -> int:
        with sqlite3.connect(reg.state_dir / "registry.db") as db:
            return int(db.execute("SELECT count(*) FROM stat_cache WHERE sha256 = ?", (sha,)).fetchone()[0])

    assert cached() == 1
    reg.gc(q.Gc(grace_seconds=0))
    assert not reg.objects.path_of(sha).exists()
    assert cached() == 0
    again = ingest_path(reg, p)  # must re-read and store it, not trust a stale cache entry
    assert again.sha256 == sha
    assert reg.objects.path_of(sha).exists()


def test_pushing_reused_object_refreshes_grace(ingest_path: Ingest, reg: Registry, tmp_path: Path) -> None:
    """An old unreferenced object that is uploaded again gets a fresh mtime, so GC spares it until push."""
    p = tmp_path / "f"
    p.write_bytes(b"reused")
    sha = ingest_path(reg, p).sha256
    age(reg.objects.path_of(sha), 7200)
    ingest_path(reg, p)
    assert reg.gc(q.Gc()).objects_removed == 0
    assert reg.objects.path_of(sha).exists()
    assert os.path.getmtime(reg.objects.path_of(sha)) > time.time() - 60
