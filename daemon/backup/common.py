"""What backup, verify and restore share: the backup format's names, the error they raise, and hashed
copies of immutable objects (hard-linked when possible)."""

from __future__ import annotations

import errno
import hashlib
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

FORMAT = "modeltui-backup"
FORMAT_VERSION = 1
MANIFEST = "MANIFEST.json"
OBJECTS = "objects"
#: Exit statuses of the three commands (a restore has one more: ``restore.EXIT_DAEMON_RUNNING``).
EXIT_OK = 0
EXIT_FAILED = 1
CHUNK = 1 << 20
#: Hashing threads: hashlib and file I/O release the GIL.
WORKERS = min(8, os.cpu_count() or 1)


class BackupError(Exception):
    """A backup, verification or restore that cannot go on; the message says why."""


def object_path(root: Path, sha256: str) -> Path:
    return root / OBJECTS / sha256[:2] / sha256[2:]


def hash_file(path: Path) -> tuple[str, int]:
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


def copy_hashed(src: Path, dst: Path, mode: int = 0o400) -> tuple[str, int]:
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


def place(src: Path, dst: Path, link: bool) -> tuple[str, int, bool]:
    """Hard-link (when ``link`` and possible) or copy ``src`` to ``dst``, then the content's (sha256, size) and
    whether it was linked. A linked file is hashed after linking: what the backup holds is what was checked."""
    if link:
        try:
            os.link(src, dst)
        except OSError as exc:
            if exc.errno not in _NO_LINK:
                raise
        else:
            sha, size = hash_file(dst)
            return sha, size, True
    sha, size = copy_hashed(src, dst)
    return sha, size, False


def referenced_objects(conn: sqlite3.Connection) -> list[tuple[str, int, int]]:
    """Distinct digests the ``files`` table references, with the smallest and largest size recorded."""
    rows = conn.execute("SELECT sha256, MIN(size), MAX(size) FROM files GROUP BY sha256 ORDER BY sha256")
    return [(str(sha), int(lo), int(hi)) for sha, lo, hi in rows]


def count_rows(conn: sqlite3.Connection, table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # table: one of ours, not input


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def chown_like(paths: Iterable[Path], ref: os.stat_result) -> None:
    """Run as root for a state directory another user owns: give what we created to that user, or the daemon
    could not open it (objects are 0400, the lock files 0600)."""
    if os.geteuid() != 0 or ref.st_uid == 0:
        return
    for path in paths:
        os.lchown(path, ref.st_uid, ref.st_gid)
