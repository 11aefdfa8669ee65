"""Backups of a state directory (while the daemon serves), their verification, and restores.

A backup is a directory::

    DEST/registry.db        a consistent snapshot of the registry (rollback-journal mode: one self-contained file)
    DEST/objects/ab/cdef…   every file object that snapshot references, sha256-verified while copied
    DEST/MANIFEST.json      format, times, versions, counts, sizes, and the sha256 of registry.db

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

**Restore** refuses while a daemon holds ``STATE/daemon.lock`` and holds that lock itself throughout, so no
daemon can start halfway. It verifies the backup, adds its objects to ``STATE/objects`` (each copied into
``STATE.restore-tmp``, fsynced, then renamed into place: the old database is still complete with extra
unreferenced objects), keeps the old database and objects in ``STATE/pre-restore-<time>/`` (hard links;
nothing is ever removed automatically), checkpoints the old database and moves its WAL and shared-memory files
aside so they can never be applied to the new one, and finally renames the new ``registry.db`` into place: one
atomic rename, so a crash leaves either the old or the new registry.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import quote

from daemon import __version__
from daemon.registry.objects import GC_LOCK, fsync_dir
from daemon.store.engine import DB_NAME
from daemon.store.migrations import MIGRATIONS

if TYPE_CHECKING:
    from daemon.settings import Settings

FORMAT = "modeltui-backup"
FORMAT_VERSION = 1
MANIFEST = "MANIFEST.json"
DAEMON_LOCK = "daemon.lock"
OBJECTS = "objects"
#: Exit statuses of :func:`backup_main` / :func:`restore_main`.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_DAEMON_RUNNING = 75  # EX_TEMPFAIL: stop the daemon and try again
CHUNK = 1 << 20
#: Hashing threads: hashlib and file I/O release the GIL.
WORKERS = min(8, os.cpu_count() or 1)
_SQLITE_SIDECARS = ("-wal", "-shm", "-journal")
_RESTORING = "restore-in-progress"


class BackupError(Exception):
    """A backup, verification or restore that cannot go on; the message says why."""


class DaemonRunning(BackupError):
    """A daemon (or another restore) holds the state directory's ``daemon.lock``."""

    def __init__(self, message: str, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


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


@dataclass
class VerifyReport:
    path: Path
    kind: str
    """``"backup"`` (has a MANIFEST.json) or ``"state"``."""
    schema_version: int | None = None
    models: int = 0
    versions: int = 0
    objects: int = 0
    """Distinct referenced objects checked (files and blobs)."""
    object_bytes: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class RestoreResult:
    state_dir: Path
    source: Path
    aside: Path | None
    """Where the previous registry.db (and links to its objects) were kept; None when there was none."""
    objects_added: int
    objects_present: int
    report: VerifyReport
    seconds: float


# -- helpers ---------------------------------------------------------------------------------------------------


def _object_path(root: Path, sha256: str) -> Path:
    return root / OBJECTS / sha256[:2] / sha256[2:]


def _hash_file(path: Path) -> tuple[str, int]:
    """(sha256, size) of a file, read in 1 MiB chunks."""
    hasher = hashlib.sha256()
    size = 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        while n := os.readv(fd, [buf]):
            hasher.update(view[:n])
            size += n
    finally:
        os.close(fd)
    return hasher.hexdigest(), size


def _copy_hashed(src: Path, dst: Path, mode: int = 0o400) -> tuple[str, int]:
    """Copy ``src`` to the new file ``dst`` (fsynced, ``mode``), hashing what was read; returns (sha256, size)."""
    hasher = hashlib.sha256()
    size = 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    fd_in = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fd_out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            while n := os.readv(fd_in, [buf]):
                hasher.update(view[:n])
                chunk = view[:n]
                while chunk:
                    chunk = chunk[os.write(fd_out, chunk) :]
                size += n
            os.fchmod(fd_out, mode)
            os.fsync(fd_out)
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)
    return hasher.hexdigest(), size


_NO_LINK = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES)


def _place(src: Path, dst: Path, link: bool) -> tuple[str, int, bool]:
    """Hard-link (when ``link`` and possible) or copy ``src`` to ``dst``, then the content's (sha256, size) and
    whether it was linked. A linked file is hashed after linking: what the backup holds is what was checked."""
    if link:
        try:
            os.link(src, dst)
        except OSError as exc:
            if exc.errno not in _NO_LINK:
                raise
        else:
            sha, size = _hash_file(dst)
            return sha, size, True
    sha, size = _copy_hashed(src, dst)
    return sha, size, False


def _referenced(conn: sqlite3.Connection) -> list[tuple[str, int, int]]:
    """Distinct digests the ``files`` table references, with the smallest and largest size recorded."""
    rows = conn.execute("SELECT sha256, MIN(size), MAX(size) FROM files GROUP BY sha256 ORDER BY sha256")
    return [(str(sha), int(lo), int(hi)) for sha, lo, hi in rows]


def _count(conn: sqlite3.Connection, table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # table: one of ours, not input


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def _chown_like(paths: Iterable[Path], ref: os.stat_result) -> None:
    """Run as root for a state directory another user owns: give what we created to that user, or the daemon
    could not open it (objects are 0400, the lock files 0600)."""
    if os.geteuid() != 0 or ref.st_uid == 0:
        return
    for path in paths:
        os.lchown(path, ref.st_uid, ref.st_gid)


def _walk(root: Path) -> Iterator[Path]:
    yield root
    if root.is_dir() and not root.is_symlink():
        for dirpath, dirnames, filenames in os.walk(root):
            for name in (*dirnames, *filenames):
                yield Path(dirpath) / name


@contextlib.contextmanager
def _gc_shared(state_dir: Path, timeout_s: float) -> Iterator[None]:
    """Hold ``STATE/gc.lock`` shared: the daemon's GC (exclusive, non-blocking) refuses to run meanwhile. Waits
    for a GC that is running now, at most ``timeout_s``."""
    path = state_dir / GC_LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        _chown_like([path], os.stat(state_dir))
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


def _lock_holder(fd: int) -> tuple[int | None, str]:
    """What ``acquire_lock`` (daemon/server.py: ``PID SOCKET``) or a restore (``PID restore-in-progress``)
    wrote into a lock file: the pid, and the second word."""
    words = os.pread(fd, 4096, 0).decode(errors="replace").split()
    pid = int(words[0]) if words and words[0].isdigit() else None
    return pid, words[1] if len(words) > 1 else ""


def _lock_state(state_dir: Path, *, create: bool) -> int | None:
    """Take ``STATE/daemon.lock`` exclusively without waiting, as a daemon would; returns the descriptor (None
    when the file does not exist and ``create`` is false). Raises :class:`DaemonRunning` naming the holder."""
    path = state_dir / DAEMON_LOCK
    flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid, what = _lock_holder(fd)
        os.close(fd)
        who = f"pid {pid}" if pid is not None else "an unknown process"
        if what == _RESTORING:
            message = f"another restore ({who}) is running on {state_dir} (it holds {path})"
        else:
            message = f"a modeltuid ({who}) is running on {state_dir} (it holds {path}); stop it before restoring"
        raise DaemonRunning(message, pid) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {_RESTORING}\n".encode(), 0)
    _chown_like([path], os.stat(state_dir))
    return fd


def _timestamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


# -- backup ----------------------------------------------------------------------------------------------------


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
            if _has_table(dst, "stat_cache"):
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
        t0 = time.monotonic()
        try:
            schema = _snapshot(state_dir / DB_NAME, partial / DB_NAME, busy_timeout_s)
        except sqlite3.Error as exc:
            raise BackupError(f"cannot snapshot {state_dir / DB_NAME}: {exc}") from None
        snapshot_s = time.monotonic() - t0
        conn = sqlite3.connect(f"file:{quote(os.fspath(partial / DB_NAME))}?mode=ro", uri=True)
        try:
            checked = [str(row[0]) for row in conn.execute("PRAGMA quick_check(5)")]
            if checked != ["ok"]:
                raise BackupError(f"the registry database in {state_dir} is damaged: {'; '.join(checked)}")
            referenced = _referenced(conn)
            blobs = {str(sha) for (sha,) in conn.execute("SELECT sha256 FROM blobs")}
            models, versions = _count(conn, "models"), _count(conn, "versions")
        finally:
            conn.close()
        todo: list[tuple[str, int]] = []
        missing: list[str] = []
        for sha, _, size in referenced:
            if _object_path(state_dir, sha).is_file():
                todo.append((sha, size))
            elif sha not in blobs:
                missing.append(sha)
        if missing:
            raise BackupError(
                f"{len(missing)} object(s) referenced by the registry are missing from {state_dir / OBJECTS}, "
                f"e.g. {missing[0]}; the store itself is damaged (run verify on it)"
            )
        for sub in sorted({sha[:2] for sha, _ in todo}):
            (objects_out / sub).mkdir(mode=0o700)

        def one(item: tuple[str, int]) -> tuple[int, bool]:
            sha, size = item
            if on_object is not None:
                on_object(sha)
            got, got_size, linked = _place(_object_path(state_dir, sha), _object_path(partial, sha), link)
            if got != sha or got_size != size:
                raise BackupError(
                    f"object {sha} in {state_dir / OBJECTS} is corrupt (its content hashes to {got}, "
                    f"{got_size} bytes; {size} expected): the backup was not made"
                )
            return got_size, linked

        with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="backup") as pool:
            placed = list(pool.map(one, todo))
    object_bytes = sum(size for size, _ in placed)
    linked = sum(1 for _, was_linked in placed if was_linked)
    for sub in sorted({sha[:2] for sha, _ in todo}):
        fsync_dir(objects_out / sub)
    fsync_dir(objects_out)
    db_sha, db_bytes = _hash_file(partial / DB_NAME)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": created_at,
        "daemon_version": __version__,
        "schema_version": schema,
        "source": {"host": socket.gethostname(), "state_dir": os.fspath(state_dir.absolute())},
        "counts": {
            "models": models,
            "versions": versions,
            "objects": len(referenced),
            "file_objects": len(todo),
            "blobs": len(blobs),
        },
        "object_bytes": object_bytes,
        "total_bytes": object_bytes + db_bytes,
        "db": {"name": DB_NAME, "size": db_bytes, "sha256": db_sha},
    }
    _write_durably(partial / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    fsync_dir(partial)
    os.rename(partial, dest)  # replaces an empty directory `dest` atomically
    fsync_dir(dest.parent)
    return BackupResult(
        path=dest,
        created_at=created_at,
        schema_version=schema,
        models=models,
        versions=versions,
        objects=len(todo),
        blobs=len(blobs),
        object_bytes=object_bytes,
        db_bytes=db_bytes,
        linked=linked,
        seconds=time.monotonic() - started,
        snapshot_seconds=snapshot_s,
    )


def _write_durably(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


# -- verify ----------------------------------------------------------------------------------------------------


def _read_manifest(path: Path, problems: list[str]) -> dict[str, Any] | None:
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        problems.append(f"{MANIFEST}: unreadable: {exc}")
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        problems.append(f"{MANIFEST}: not a modeltui backup manifest")
        return None
    if manifest.get("format_version") != FORMAT_VERSION:
        problems.append(
            f"{MANIFEST}: backup format version {manifest.get('format_version')!r} is not supported "
            f"(this modeltui reads version {FORMAT_VERSION})"
        )
        return None
    return manifest


def verify(path: Path) -> VerifyReport:
    """Check a backup or a state directory: the manifest (a backup's) and the database file's sha256,
    ``PRAGMA integrity_check``, ``PRAGMA foreign_key_check``, a known schema version, and every object that
    ``files`` references: present as a file object (size and sha256 checked) or else as a blob (same). Blobs
    themselves are re-hashed too. Never writes to a backup; problems are listed, not raised."""
    kind = "backup" if (path / MANIFEST).exists() else "state"
    report = VerifyReport(path=path, kind=kind)
    problems = report.problems
    db_path = path / DB_NAME
    if not db_path.is_file():
        problems.append(f"{DB_NAME} is missing")
        return report
    manifest = _read_manifest(path, problems) if kind == "backup" else None
    if manifest is not None:
        db = manifest.get("db", {})
        sha, size = _hash_file(db_path)
        if sha != db.get("sha256") or size != db.get("size"):
            problems.append(
                f"{DB_NAME}: {size} bytes with sha256 {sha[:16]}…, but the manifest records "
                f"{db.get('size')} bytes with sha256 {str(db.get('sha256'))[:16]}…"
            )
    # A backup is never written to (immutable: no locks, no -shm); a state directory may be live.
    params = "mode=ro&immutable=1" if kind == "backup" else "mode=ro"
    try:
        conn = sqlite3.connect(f"file:{quote(os.fspath(db_path))}?{params}", uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        problems.append(f"{DB_NAME}: cannot open: {exc}")
        return report
    try:
        _check_db(conn, path, report, manifest)
    except sqlite3.DatabaseError as exc:
        problems.append(f"{DB_NAME}: {exc}")
    finally:
        conn.close()
    return report


def _check_db(conn: sqlite3.Connection, root: Path, report: VerifyReport, manifest: dict[str, Any] | None) -> None:
    problems = report.problems
    conn.execute("BEGIN")  # one snapshot for every query below (a live state directory)
    integrity = [str(row[0]) for row in conn.execute("PRAGMA integrity_check(20)")]
    if integrity != ["ok"]:
        problems.extend(f"integrity_check: {line}" for line in integrity)
        return  # nothing below can be trusted
    fk = conn.execute("PRAGMA foreign_key_check").fetchall()
    if fk:
        tables = sorted({str(row[0]) for row in fk})
        problems.append(f"foreign_key_check: {len(fk)} row(s) with a dangling reference in {', '.join(tables)}")
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    report.schema_version = version
    if not 1 <= version <= len(MIGRATIONS):
        problems.append(f"schema version {version} is unknown (this modeltui knows 1..{len(MIGRATIONS)})")
        return
    if manifest is not None and manifest.get("schema_version") != version:
        problems.append(f"schema version {version}, but the manifest records {manifest.get('schema_version')}")
    if not (_has_table(conn, "files") and _has_table(conn, "models") and _has_table(conn, "versions")):
        problems.append("the registry tables are missing")
        return
    report.models, report.versions = _count(conn, "models"), _count(conn, "versions")
    if manifest is not None:
        counts = manifest.get("counts", {})
        for name, got in (("models", report.models), ("versions", report.versions)):
            if counts.get(name) != got:
                problems.append(f"{got} {name}, but the manifest records {counts.get(name)}")
    has_blobs = _has_table(conn, "blobs")
    blob_sizes: dict[str, int] = (
        {str(s): int(n) for s, n in conn.execute("SELECT sha256, size FROM blobs")} if has_blobs else {}
    )
    referenced = _referenced(conn)
    report.objects = len(referenced)
    files: list[tuple[str, int]] = []
    inline: list[str] = []
    for sha, lo, hi in referenced:
        report.object_bytes += hi
        if lo != hi:
            problems.append(f"object {sha}: files record different sizes ({lo} and {hi})")
        if _object_path(root, sha).exists():
            files.append((sha, hi))
        elif sha in blob_sizes:
            inline.append(sha)
        else:
            problems.append(f"object {sha} ({hi} bytes) is missing")

    def check_file(item: tuple[str, int]) -> str | None:
        sha, size = item
        try:
            got, got_size = _hash_file(_object_path(root, sha))
        except OSError as exc:
            return f"object {sha}: unreadable: {exc.strerror}"
        if got_size != size:
            return f"object {sha}: {got_size} bytes, {size} expected"
        if got != sha:
            return f"object {sha}: content does not match its sha256 (hashes to {got})"
        return None

    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="verify") as pool:
        problems.extend(p for p in pool.map(check_file, files) if p is not None)
    sizes = {sha: hi for sha, _, hi in referenced}
    for sha in inline:
        if blob_sizes[sha] != sizes[sha]:
            problems.append(f"object {sha}: blob of {blob_sizes[sha]} bytes, {sizes[sha]} expected")
    if has_blobs:
        for sha, size, data in conn.execute("SELECT sha256, size, data FROM blobs"):
            blob = bytes(data)
            if len(blob) != size or hashlib.sha256(blob).hexdigest() != sha:
                problems.append(f"blob {sha}: content does not match its sha256 or size")


# -- restore ---------------------------------------------------------------------------------------------------


def _restore_tmp(state_dir: Path) -> Path:
    """``STATE.restore-tmp`` beside the state directory (same file system, so renames work), or
    ``STATE/.restore-tmp`` when the parent is not writable (``/var/lib`` for a system daemon's user). A leftover
    from an interrupted restore is removed: only a restore holding ``daemon.lock`` writes there."""
    for tmp in (state_dir.with_name(state_dir.name + ".restore-tmp"), state_dir / ".restore-tmp"):
        if tmp.exists() or tmp.is_symlink():
            if tmp.is_symlink() or not tmp.is_dir():
                raise BackupError(f"{tmp} exists and is not a directory; remove it")
            shutil.rmtree(tmp)
        try:
            tmp.mkdir(mode=0o700)
        except PermissionError:
            continue
        if os.stat(tmp).st_dev == os.stat(state_dir).st_dev:
            return tmp
        tmp.rmdir()
    raise BackupError(f"cannot create a working directory for the restore beside or inside {state_dir}")


def _checkpoint(db_path: Path) -> None:
    """Fold the old database's WAL into it, so moving the WAL away loses nothing (best effort: a damaged
    database is what one restores over, and its WAL is kept aside anyway)."""
    if not db_path.exists():
        return
    with contextlib.suppress(sqlite3.Error):
        conn = sqlite3.connect(f"file:{quote(os.fspath(db_path))}?mode=rw", uri=True, timeout=5.0)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()


def restore(src: Path, state_dir: Path, *, link: bool = True) -> RestoreResult:
    """Replace the registry in ``state_dir`` with the backup ``src`` (see the module docstring). Refuses
    (:class:`DaemonRunning`) while a daemon runs there, and (:class:`BackupError`, changing nothing) when the
    backup fails :func:`verify`. The result is verified again; its report is in the result."""
    started = time.monotonic()
    lock_fd = _lock_state(state_dir, create=False) if state_dir.is_dir() else None
    try:
        if not (src / MANIFEST).is_file():
            raise BackupError(f"{src} is not a modeltui backup ({MANIFEST} is missing); nothing was changed")
        checked = verify(src)
        if not checked.ok:
            shown = "".join(f"\n  - {p}" for p in checked.problems[:20])
            more = f"\n  … and {len(checked.problems) - 20} more" if len(checked.problems) > 20 else ""
            raise BackupError(f"the backup {src} failed verification; nothing was changed:{shown}{more}")
        manifest = json.loads((src / MANIFEST).read_text())
        if lock_fd is None:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            lock_fd = _lock_state(state_dir, create=True)
        return _restore_locked(src, state_dir, manifest, link, started)
    finally:
        if lock_fd is not None:
            os.close(lock_fd)


def _restore_locked(src: Path, state_dir: Path, manifest: dict[str, Any], link: bool, started: float) -> RestoreResult:
    owner = os.stat(state_dir)
    if os.geteuid() == 0 and owner.st_uid != 0:
        link = False  # the copies are chowned to the daemon's user: the backup's files must keep their owner
    tmp = _restore_tmp(state_dir)
    created: list[Path] = []
    try:
        # 1. The new database, beside the live one; checked against the manifest while copied.
        new_db = tmp / DB_NAME
        sha, size = _copy_hashed(src / DB_NAME, new_db, 0o600)
        if sha != manifest["db"]["sha256"] or size != manifest["db"]["size"]:
            raise BackupError(f"{src / DB_NAME} changed since it was verified; nothing was changed")
        created.append(state_dir / DB_NAME)
        # 2. Its objects, into the live store: the old database stays complete (they are unreferenced there).
        conn = sqlite3.connect(f"file:{quote(os.fspath(new_db))}?mode=ro&immutable=1", uri=True)
        try:
            referenced = [(sha, hi) for sha, _, hi in _referenced(conn)]
        finally:
            conn.close()
        wanted = [(s, n) for s, n in referenced if _object_path(src, s).is_file()]
        added, present = _install_objects(src, state_dir, tmp, wanted, link, created)
        # 3. Keep the old database (and links to every old object) aside; never apply its WAL to the new one.
        aside = _set_aside(state_dir)
        # 4. The switch: one rename.
        os.rename(new_db, state_dir / DB_NAME)
        fsync_dir(state_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _chown_like([p for path in created for p in _walk(path)], owner)
    report = verify(state_dir)
    return RestoreResult(
        state_dir=state_dir,
        source=src,
        aside=aside,
        objects_added=added,
        objects_present=present,
        report=report,
        seconds=time.monotonic() - started,
    )


def _install_objects(
    src: Path, state_dir: Path, tmp: Path, wanted: list[tuple[str, int]], link: bool, created: list[Path]
) -> tuple[int, int]:
    """Copy (or link) each wanted object into ``tmp``, hash-checked and fsynced, then rename it into
    ``STATE/objects`` unless an intact copy is there already (a damaged one is replaced). Returns (added,
    already present)."""
    objects = state_dir / OBJECTS
    if not objects.is_dir():
        objects.mkdir(mode=0o700)
        created.append(objects)
        fsync_dir(state_dir)

    def one(item: tuple[str, int]) -> bool:
        sha, size = item
        final = _object_path(state_dir, sha)
        with contextlib.suppress(OSError):
            if _hash_file(final) == (sha, size):
                return False
        staged = tmp / sha
        got, got_size, _ = _place(_object_path(src, sha), staged, link)
        if (got, got_size) != (sha, size):
            raise BackupError(f"object {sha} in {src} changed since it was verified; nothing was changed")
        os.rename(staged, final)
        return True

    subs = sorted({sha[:2] for sha, _ in wanted})
    for sub in subs:
        d = objects / sub
        if not d.is_dir():
            d.mkdir(mode=0o700)
            created.append(d)
    fsync_dir(objects)
    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="restore") as pool:
        results = list(pool.map(one, wanted))
    created.extend(_object_path(state_dir, sha) for (sha, _), new in zip(wanted, results, strict=True) if new)
    for sub in subs:
        fsync_dir(objects / sub)
    added = sum(results)
    return added, len(wanted) - added


def _set_aside(state_dir: Path) -> Path | None:
    """``STATE/pre-restore-<time>/``: a hard link to the old registry.db (checkpointed first), its -wal/-shm
    files moved there, and hard links to every file object of the old store. None when there was no database."""
    old_db = state_dir / DB_NAME
    if not old_db.exists():
        for suffix in _SQLITE_SIDECARS:  # orphans: they must not meet the new database either
            with contextlib.suppress(FileNotFoundError):
                os.unlink(state_dir / (DB_NAME + suffix))
        return None
    _checkpoint(old_db)
    aside = state_dir / f"pre-restore-{_timestamp()}"
    n = 1
    while aside.exists():
        n += 1
        aside = state_dir / f"pre-restore-{_timestamp()}-{n}"
    aside.mkdir(mode=0o700)
    os.link(old_db, aside / DB_NAME)
    for suffix in _SQLITE_SIDECARS:
        with contextlib.suppress(FileNotFoundError):
            os.rename(state_dir / (DB_NAME + suffix), aside / (DB_NAME + suffix))
    objects = state_dir / OBJECTS
    if objects.is_dir():
        for sub in objects.iterdir():
            if len(sub.name) != 2 or not sub.is_dir():
                continue
            (aside / OBJECTS / sub.name).mkdir(parents=True, mode=0o700, exist_ok=True)
            for entry in sub.iterdir():
                if entry.is_symlink() or not entry.is_file():
                    continue
                with contextlib.suppress(FileExistsError):
                    os.link(entry, aside / OBJECTS / sub.name / entry.name)
    fsync_dir(aside)
    fsync_dir(state_dir)
    return aside


# -- CLI entry points (wired into daemon/cli.py as `modeltuid backup DEST` / `modeltuid restore SRC`) ----------


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


def restore_main(settings: Settings, src: Path, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``modeltuid restore SRC``: 0 when restored and verified, 75 while a daemon runs on the state directory,
    1 with the reason otherwise."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        result = restore(src, settings.state_dir)
    except DaemonRunning as exc:
        print(f"modeltuid restore: {exc}", file=err)
        return EXIT_DAEMON_RUNNING
    except BackupError as exc:
        print(f"modeltuid restore: {exc}", file=err)
        return EXIT_FAILED
    except (OSError, sqlite3.Error) as exc:
        print(f"modeltuid restore: {exc}", file=err)
        return EXIT_FAILED
    r = result.report
    print(
        f"restored {src} into {settings.state_dir} in {result.seconds:.2f} s: {r.models} models, "
        f"{r.versions} versions, {r.objects} objects ({result.objects_added} added, "
        f"{result.objects_present} already present)",
        file=out,
    )
    if result.aside is not None:
        print(f"the previous registry is kept in {result.aside} (remove it yourself when done)", file=out)
    if not r.ok:
        print(f"modeltuid restore: the restored registry failed verification ({len(r.problems)} problems):", file=err)
        for problem in r.problems[:20]:
            print(f"  - {problem}", file=err)
        return EXIT_FAILED
    print("verified: integrity, foreign keys, schema, and the sha256 of every object", file=out)
    return EXIT_OK


def verify_main(path: Path, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``modeltuid verify PATH`` (a backup or a state directory): 0 when sound, 1 with the problems."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        report = verify(path)
    except (OSError, sqlite3.Error) as exc:
        print(f"modeltuid verify: {exc}", file=err)
        return EXIT_FAILED
    what = f"{report.kind} {path}: {report.models} models, {report.versions} versions, {report.objects} objects"
    if report.ok:
        print(f"{what}, schema {report.schema_version}: ok", file=out)
        return EXIT_OK
    print(f"modeltuid verify: {what}: {len(report.problems)} problem(s):", file=err)
    for problem in report.problems:
        print(f"  - {problem}", file=err)
    return EXIT_FAILED
