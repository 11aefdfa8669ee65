"""``modeltuid backup DEST``: a consistent backup of a state directory while the daemon serves.

**Consistency.** The database is snapshotted first, with SQLite's online backup API in ONE step
(``src.backup(dst)``, ``pages=-1``): the whole copy runs in one read transaction, which WAL mode lets run
alongside the daemon's writers, so it sees exactly the commits made before it began and blocks nobody.
(A stepwise backup would restart after every foreign write, and never finish under continuous pushes;
``VACUUM INTO`` would rebuild every table and index, costing CPU for a compaction nobody needs.) Then the
objects referenced by *that snapshot* (not by the live database) are copied. Objects are immutable and a
version's objects are durable before its row commits, so they all exist, unless the garbage collector removes
one whose versions were deleted after the snapshot: the backup holds a shared flock on ``STATE/gc.lock`` from
before the snapshot until the last object is copied, and GC takes it exclusively without waiting, refusing to
run meanwhile (``daemon/registry/objects.py``). Everything is written to ``DEST.partial`` and renamed to ``DEST``
only when complete and fsynced, so an interrupted backup never looks like a finished one.

Small objects are rows of the ``blobs`` table, so they are in the snapshot already. ``stat_cache`` (inode →
digest, a cache of the pushing clients' files) is emptied in the copy: inode numbers mean nothing on another
machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import quote

from daemon import __version__
from daemon.backup.common import (
    EXIT_FAILED,
    EXIT_OK,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    OBJECTS,
    WORKERS,
    BackupError,
    chown_like,
    count_rows,
    has_table,
    hash_file,
    object_path,
    place,
    referenced_objects,
)
from daemon.registry.objects import GC_LOCK, fsync_dir
from daemon.store.engine import DB_NAME

if TYPE_CHECKING:
    from daemon.settings import Settings


@dataclass(frozen=True)
class BackupResult:
    path: Path
    created_at: str
    schema_version: int
    models: int
    versions: int
    objects: int
    """File objects copied (the referenced small objects are blobs, inside registry.db)."""
    blobs: int
    object_bytes: int
    db_bytes: int
    linked: int
    """Objects hard-linked instead of copied (same file system)."""
    seconds: float
    snapshot_seconds: float

    @property
    def total_bytes(self) -> int:
        return self.object_bytes + self.db_bytes


@contextlib.contextmanager
def _gc_shared(state_dir: Path, timeout_s: float) -> Iterator[None]:
    """Hold ``STATE/gc.lock`` shared: the daemon's GC (exclusive, non-blocking) refuses to run meanwhile. Waits
    for a GC that is running now, at most ``timeout_s``."""
    path = state_dir / GC_LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        chown_like([path], os.stat(state_dir))
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise BackupError(
                        f"garbage collection has held {path} for more than {timeout_s:.0f} s; try again later"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def _check_dest(state_dir: Path, dest: Path) -> Path:
    """``dest`` must not exist or be an empty directory, and not lie inside the state directory."""
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise BackupError(f"{dest} exists and is not a directory; give a new path or an empty directory")
    if dest.is_dir() and any(dest.iterdir()):
        raise BackupError(f"{dest} exists and is not empty; give a new path or an empty directory")
    resolved = dest.resolve()
    if resolved == state_dir.resolve() or state_dir.resolve() in resolved.parents:
        raise BackupError(f"{dest} is inside the state directory {state_dir}; put backups elsewhere")
    partial = dest.with_name(dest.name + ".partial")
    if partial.exists() or partial.is_symlink():
        raise BackupError(f"{partial} exists: an interrupted or running backup; remove it (after it ended) and retry")
    return partial


def _snapshot(db_path: Path, out: Path, busy_timeout_s: float) -> int:
    """Copy the live database into ``out`` in one step (one read transaction: a consistent snapshot that WAL
    writers do not wait for), as a rollback-journal database without the stat cache. Returns its schema
    version.

    The source connection is read-only on purpose: closing a read-write connection that finds no other
    process holding a lock on the database file checkpoints, then deletes the WAL and shared-memory files,
    under a daemon that still uses them if that daemon lost its POSIX locks (any ``close()`` of another
    descriptor on the file in its process drops them). A read-only connection never checkpoints or deletes."""
    src = sqlite3.connect(f"file:{quote(os.fspath(db_path))}?mode=ro", uri=True, timeout=busy_timeout_s)
    try:
        src.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        dst = sqlite3.connect(out, isolation_level=None)
        try:
            src.backup(dst)  # pages=-1: everything in one sqlite3_backup_step
            dst.execute("PRAGMA journal_mode = DELETE")
            if has_table(dst, "stat_cache"):
                dst.execute("DELETE FROM stat_cache")
            version = int(dst.execute("PRAGMA user_version").fetchone()[0])
        finally:
            dst.close()
    finally:
        src.close()
    fd = os.open(out, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchmod(fd, 0o600)
        os.fsync(fd)
    finally:
        os.close(fd)
    return version


def backup(
    state_dir: Path,
    dest: Path,
    *,
    link: bool = True,
    busy_timeout_s: float = 5.0,
    gc_wait_s: float = 60.0,
    on_object: Callable[[str], None] | None = None,
) -> BackupResult:
    """Back ``state_dir`` up into the new directory ``dest`` (see the module docstring); safe while the daemon
    serves. ``link``: hard-link objects when ``dest`` is on the same file system (objects are immutable),
    otherwise copy them. Every object is hashed on the way. ``on_object`` is called before each object (tests).
    Raises :class:`BackupError`; nothing named ``dest`` exists unless the backup completed."""
    started = time.monotonic()
    db_path = state_dir / DB_NAME
    if not db_path.is_file():
        raise BackupError(f"{state_dir} holds no registry ({DB_NAME} is missing)")
    partial = _check_dest(state_dir, dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial.mkdir(mode=0o700)
    try:
        return _backup_into(state_dir, dest, partial, link, busy_timeout_s, gc_wait_s, on_object, started)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


@dataclass(frozen=True)
class _Snapshot:
    """What the snapshot in ``DEST.partial/registry.db`` holds, read right after it was taken."""

    schema: int
    seconds: float
    referenced: list[tuple[str, int, int]]
    blobs: set[str]
    models: int
    versions: int


def _backup_into(
    state_dir: Path,
    dest: Path,
    partial: Path,
    link: bool,
    busy_timeout_s: float,
    gc_wait_s: float,
    on_object: Callable[[str], None] | None,
    started: float,
) -> BackupResult:
    created_at = datetime.now(UTC).isoformat(timespec="seconds")
    objects_out = partial / OBJECTS
    objects_out.mkdir(mode=0o700)
    with _gc_shared(state_dir, gc_wait_s):
        snap = _take_snapshot(state_dir, partial, busy_timeout_s)
        todo = _file_objects(state_dir, snap)
        placed = _copy_objects(state_dir, partial, todo, link, on_object)
    object_bytes = sum(size for size, _ in placed)
    linked = sum(1 for _, was_linked in placed if was_linked)
    for sub in sorted({sha[:2] for sha, _ in todo}):
        fsync_dir(objects_out / sub)
    fsync_dir(objects_out)
    db_sha, db_bytes = hash_file(partial / DB_NAME)
    manifest = _manifest(state_dir, created_at, snap, len(todo), object_bytes, db_sha, db_bytes)
    _write_durably(partial / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    fsync_dir(partial)
    os.rename(partial, dest)  # replaces an empty directory `dest` atomically
    fsync_dir(dest.parent)
    return BackupResult(
        path=dest,
        created_at=created_at,
        schema_version=snap.schema,
        models=snap.models,
        versions=snap.versions,
        objects=len(todo),
        blobs=len(snap.blobs),
        object_bytes=object_bytes,
        db_bytes=db_bytes,
        linked=linked,
        seconds=time.monotonic() - started,
        snapshot_seconds=snap.seconds,
    )


def _take_snapshot(state_dir: Path, partial: Path, busy_timeout_s: float) -> _Snapshot:
    """Snapshot the live database into ``partial`` and read what it references; refuses a damaged one."""
    t0 = time.monotonic()
    try:
        schema = _snapshot(state_dir / DB_NAME, partial / DB_NAME, busy_timeout_s)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot snapshot {state_dir / DB_NAME}: {exc}") from None
    seconds = time.monotonic() - t0
    conn = sqlite3.connect(f"file:{quote(os.fspath(partial / DB_NAME))}?mode=ro", uri=True)
    try:
        checked = [str(row[0]) for row in conn.execute("PRAGMA quick_check(5)")]
        if checked != ["ok"]:
            raise BackupError(f"the registry database in {state_dir} is damaged: {'; '.join(checked)}")
        return _Snapshot(
            schema=schema,
            seconds=seconds,
            referenced=referenced_objects(conn),
            blobs={str(sha) for (sha,) in conn.execute("SELECT sha256 FROM blobs")},
            models=count_rows(conn, "models"),
            versions=count_rows(conn, "versions"),
        )
    finally:
        conn.close()


def _file_objects(state_dir: Path, snap: _Snapshot) -> list[tuple[str, int]]:
    """(sha256, size) of every file object the snapshot references; refuses when one is neither a file object
    nor a blob (the store itself is damaged)."""
    todo: list[tuple[str, int]] = []
    missing: list[str] = []
    for sha, _, size in snap.referenced:
        if object_path(state_dir, sha).is_file():
            todo.append((sha, size))
        elif sha not in snap.blobs:
            missing.append(sha)
    if missing:
        raise BackupError(
            f"{len(missing)} object(s) referenced by the registry are missing from {state_dir / OBJECTS}, "
            f"e.g. {missing[0]}; the store itself is damaged (run verify on it)"
        )
    return todo


def _copy_objects(
    state_dir: Path,
    partial: Path,
    todo: list[tuple[str, int]],
    link: bool,
    on_object: Callable[[str], None] | None,
) -> list[tuple[int, bool]]:
    """Link or copy each object into ``partial``, hash-checked; (size, linked) of each, in ``todo``'s order."""
    for sub in sorted({sha[:2] for sha, _ in todo}):
        (partial / OBJECTS / sub).mkdir(mode=0o700)

    def one(item: tuple[str, int]) -> tuple[int, bool]:
        sha, size = item
        if on_object is not None:
            on_object(sha)
        got, got_size, linked = place(object_path(state_dir, sha), object_path(partial, sha), link)
        if got != sha or got_size != size:
            raise BackupError(
                f"object {sha} in {state_dir / OBJECTS} is corrupt (its content hashes to {got}, "
                f"{got_size} bytes; {size} expected): the backup was not made"
            )
        return got_size, linked

    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="backup") as pool:
        return list(pool.map(one, todo))


def _manifest(
    state_dir: Path, created_at: str, snap: _Snapshot, file_objects: int, object_bytes: int, db_sha: str, db_bytes: int
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": created_at,
        "daemon_version": __version__,
        "schema_version": snap.schema,
        "source": {"host": socket.gethostname(), "state_dir": os.fspath(state_dir.absolute())},
        "counts": {
            "models": snap.models,
            "versions": snap.versions,
            "objects": len(snap.referenced),
            "file_objects": file_objects,
            "blobs": len(snap.blobs),
        },
        "object_bytes": object_bytes,
        "total_bytes": object_bytes + db_bytes,
        "db": {"name": DB_NAME, "size": db_bytes, "sha256": db_sha},
    }


def _write_durably(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def backup_main(settings: Settings, dest: Path, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``modeltuid backup DEST``: 0 when the backup is complete, 1 with the reason otherwise."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        result = backup(settings.state_dir, dest, busy_timeout_s=settings.busy_timeout_seconds)
    except BackupError as exc:
        print(f"modeltuid backup: {exc}", file=err)
        return EXIT_FAILED
    except (OSError, sqlite3.Error) as exc:
        print(f"modeltuid backup: {exc}", file=err)
        return EXIT_FAILED
    how = f"{result.linked} hard-linked, {result.objects - result.linked} copied" if result.objects else "none"
    print(
        f"backed up {settings.state_dir} to {result.path} in {result.seconds:.2f} s: "
        f"{result.models} models, {result.versions} versions (schema {result.schema_version}); "
        f"{result.objects} file objects ({_size(result.object_bytes)}; {how}) and "
        f"{result.blobs} inline blobs in registry.db ({_size(result.db_bytes)}); every object sha256-verified",
        file=out,
    )
    return EXIT_OK
