"""``modeltuid restore SRC``: replace a state directory's registry with a verified backup.

A restore refuses while a daemon holds ``STATE/daemon.lock`` and holds that lock itself throughout, so no
daemon can start halfway. It verifies the backup, adds its objects to ``STATE/objects`` (each copied into
``STATE.restore-tmp``, fsynced, then renamed into place: the old database is still complete with extra
unreferenced objects), keeps the old database and objects in ``STATE/pre-restore-<time>/`` (hard links;
nothing is ever removed automatically), checkpoints the old database and moves its WAL and shared-memory files
aside so they can never be applied to the new one, and finally renames the new ``registry.db`` into place: one
atomic rename, so a crash leaves either the old or the new registry.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sqlite3
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import quote

from daemon.backup.common import (
    EXIT_FAILED,
    EXIT_OK,
    MANIFEST,
    OBJECTS,
    WORKERS,
    BackupError,
    chown_like,
    copy_hashed,
    hash_file,
    object_path,
    place,
    referenced_objects,
)
from daemon.backup.verify import VerifyReport, verify
from daemon.registry.objects import fsync_dir
from daemon.store.engine import DB_NAME

if TYPE_CHECKING:
    from daemon.settings import Settings

DAEMON_LOCK = "daemon.lock"
EXIT_DAEMON_RUNNING = 75  # EX_TEMPFAIL: stop the daemon and try again
_SQLITE_SIDECARS = ("-wal", "-shm", "-journal")
_RESTORING = "restore-in-progress"


class DaemonRunning(BackupError):
    """A daemon (or another restore) holds the state directory's ``daemon.lock``."""

    def __init__(self, message: str, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


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
    chown_like([path], os.stat(state_dir))
    return fd


def _timestamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _walk(root: Path) -> Iterator[Path]:
    yield root
    if root.is_dir() and not root.is_symlink():
        for dirpath, dirnames, filenames in os.walk(root):
            for name in (*dirnames, *filenames):
                yield Path(dirpath) / name


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
        sha, size = copy_hashed(src / DB_NAME, new_db, 0o600)
        if sha != manifest["db"]["sha256"] or size != manifest["db"]["size"]:
            raise BackupError(f"{src / DB_NAME} changed since it was verified; nothing was changed")
        created.append(state_dir / DB_NAME)
        # 2. Its objects, into the live store: the old database stays complete (they are unreferenced there).
        conn = sqlite3.connect(f"file:{quote(os.fspath(new_db))}?mode=ro&immutable=1", uri=True)
        try:
            referenced = [(sha, hi) for sha, _, hi in referenced_objects(conn)]
        finally:
            conn.close()
        wanted = [(s, n) for s, n in referenced if object_path(src, s).is_file()]
        added, present = _install_objects(src, state_dir, tmp, wanted, link, created)
        # 3. Keep the old database (and links to every old object) aside; never apply its WAL to the new one.
        aside = _set_aside(state_dir)
        # 4. The switch: one rename.
        os.rename(new_db, state_dir / DB_NAME)
        fsync_dir(state_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    chown_like([p for path in created for p in _walk(path)], owner)
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
        final = object_path(state_dir, sha)
        with contextlib.suppress(OSError):
            if hash_file(final) == (sha, size):
                return False
        staged = tmp / sha
        got, got_size, _ = place(object_path(src, sha), staged, link)
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
    created.extend(object_path(state_dir, sha) for (sha, _), new in zip(wanted, results, strict=True) if new)
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
