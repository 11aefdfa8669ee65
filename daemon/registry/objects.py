"""Content-addressed artifact store, named by sha256: small objects inline in SQLite, others as files.

Two kinds of stored object, and one of not-yet-stored uploads:

* **File objects** (``objects/ab/cdef…``): streamed into ``staging/`` (one read pass, hashed while written,
  memory bounded by one 1 MiB buffer), fsynced, renamed into place, directory fsynced; after a crash an
  object file is either complete or absent. Every object larger than ``INLINE_MAX`` is one.
* **Blobs**: rows of the ``blobs`` table, for objects of at most ``INLINE_MAX`` bytes. They are never written
  at upload: the content waits in memory (:mod:`daemon.registry.pending`) and the push that references it
  INSERTs it in its own transaction, so the push's one fsynced commit makes the version and its new objects
  durable together. File objects written before blobs existed keep working; if a digest is stored both ways
  (only transiently, e.g. a pending upload spilled to disk while a push committed it), the file wins.
* **Pending** uploads: small content held in memory until a push claims it; dropped after the GC grace period
  (at least 5 minutes), spilled to file objects when they exceed their memory budget, lost on a restart.

Lookups go pending → file → blob. Content only ever moves pending → blob (a push: commit, then drop the
pending entry) or pending → file (a spill: rename, then drop), so a lookup in that order never misses content
that is being moved. Leftover staging files and objects no version references are removed by :meth:`gc`;
the store lock makes an upload's "already stored → keep it alive" and GC's "old → remove" exclusive.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import re
import sqlite3
import stat
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from daemon.protocol.errors import ErrorCode, ProtocolError, invalid
from daemon.store.db import Db, chunked, db_time, marks
from daemon.store.engine import DB_NAME, private_dir
from daemon.store.faults import NO_FAULTS, Faults
from daemon.store.tables import utcnow

from .pending import Pending
from .statcache import StatCache, StatKey, forget

log = logging.getLogger(__name__)

CHUNK = 1 << 20
WRITEBACK = 16 << 20
#: Objects of at most this many bytes are stored as rows of ``blobs`` (see the module docstring).
INLINE_MAX = 64 << 10
#: Memory for uploads waiting for their push; beyond it the oldest are spilled to file objects.
PENDING_BUDGET = 64 << 20
PENDING_MIN_TTL_S = 300
#: How many blob sizes ``ObjectStore`` remembers (~200 bytes each).
KNOWN_BLOBS = 16_384
#: In the state directory: a backup holds a shared flock on it while it copies the objects its database
#: snapshot references; GC needs it exclusively (non-blocking) to remove anything (``daemon/backup/backup.py``).
GC_LOCK = "gc.lock"
_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
_SHA_RE = re.compile(r"[0-9a-f]{64}")

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Ingested:
    sha256: str
    size: int
    copied: bool


@dataclass(frozen=True)
class GcStats:
    objects_removed: int
    bytes_removed: int
    staging_removed: int
    removed: list[str]


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        written = os.write(fd, data)
        data = data[written:]


class ObjectStore:
    #: Files changed less than this long before hashing began are not stat-cached (see statcache.py).
    racy_window_ns = 1_000_000_000

    def __init__(
        self,
        state_dir: Path,
        cache: StatCache,
        db: Db,
        *,
        faults: Faults = NO_FAULTS,
        grace_seconds: int = 3600,
        pending_bytes: int = PENDING_BUDGET,
        busy_timeout_s: float = 5.0,
    ) -> None:
        self.objects_dir = private_dir(state_dir / "objects")
        self.staging_dir = private_dir(state_dir / "staging")
        self.gc_lock_path = state_dir / GC_LOCK
        self._objects_prefix = os.fspath(self.objects_dir) + os.sep
        self._cache = cache
        self._db = db
        # Point lookups of blobs (every upload of small content, every manifest read) on one dedicated
        # connection: ~4 µs instead of ~12 µs through the pool. Autocommit: each lookup is its own snapshot.
        self._reader = sqlite3.connect(
            state_dir / DB_NAME, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._reader_lock = threading.Lock()
        self._faults = faults
        self._in_flight: set[str] = set()
        self._in_flight_lock = threading.Lock()
        #: The store lock. It makes "the object exists → refresh it" (an upload reusing content) atomic with
        #: "it is still old → remove it" (GC), so GC never removes what an upload has just reported as stored,
        #: and it guards the pending map. Lock order: the registry's write lock, then this one; never the
        #: other way round, so nothing that holds it may wait for the registry's lock (or SQLite's write lock).
        self.lock = threading.Lock()
        # Uploads expire after the grace period, like unreferenced objects; but never within minutes, even with
        # a grace of 0 (which is meant for an explicit GC, not to make every upload expire before its push).
        ttl_s = max(grace_seconds, PENDING_MIN_TTL_S)
        self._pending = Pending(budget_bytes=pending_bytes, ttl_ns=ttl_s * 1_000_000_000)
        #: Sizes of blobs found by uploads, most recently used last (under the store lock). Re-uploads of small
        #: content (the stat-cache hit of every unchanged file) then skip a lookup that costs ~20 µs right
        #: after a commit, when SQLite has dropped the reader's page cache. Only GC deletes blobs, under the
        #: store lock, and it evicts what it deletes, so an entry is never stale (one daemon per state dir).
        self._blob_sizes: OrderedDict[str, int] = OrderedDict()

    def close(self) -> None:
        with self._reader_lock:
            self._reader.close()

    def _lookup(self, statement: str, sha256: str) -> Any:
        with self._reader_lock:
            row = self._reader.execute(statement, (sha256,)).fetchone()
        return None if row is None else row[0]

    def path_of(self, sha256: str) -> Path:
        return Path(self._path(sha256))

    def _path(self, sha256: str) -> str:
        """``path_of`` as a string: pathlib costs ~10 µs per path, and a push looks up every file's digest."""
        if not _SHA_RE.fullmatch(sha256):
            raise invalid(f"invalid sha256 digest {sha256[:80]!r}")
        return f"{self._objects_prefix}{sha256[:2]}{os.sep}{sha256[2:]}"

    def _file_size(self, sha256: str) -> int | None:
        try:
            return os.stat(self._path(sha256)).st_size
        except FileNotFoundError:
            return None

    def _blob_size(self, sha256: str) -> int | None:
        size = self._lookup("SELECT size FROM blobs WHERE sha256 = ?", sha256)
        return None if size is None else int(size)

    def _blob_data(self, sha256: str) -> bytes | None:
        data = self._lookup("SELECT data FROM blobs WHERE sha256 = ?", sha256)
        return None if data is None else bytes(data)

    def size_of(self, sha256: str) -> int | None:
        """The stored object's size (file or blob), or None when it is not stored. Pending uploads are not."""
        size = self._file_size(sha256)
        return self._blob_size(sha256) if size is None else size

    def kind_of(self, sha256: str) -> str | None:
        """``"pending"``, ``"file"``, ``"blob"`` or None: where a lookup finds the content first."""
        with self.lock:
            if self._pending.get(sha256, time.monotonic_ns()) is not None:
                return "pending"
        if self._file_size(sha256) is not None:
            return "file"
        return "blob" if self._blob_size(sha256) is not None else None

    def _reuse_locked(self, sha256: str, size: int) -> bool:
        """True if the content is pending or stored with ``size`` bytes; then GC's grace period restarts for it
        (the pending entry's age, the file's mtime, or a lease on the blob). Call with the store lock held."""
        now_ns = time.monotonic_ns()
        data = self._pending.get(sha256, now_ns)
        if data is not None:
            if len(data) != size:
                return False
            self._pending.refresh(sha256, now_ns)
            return True
        path = self._path(sha256)
        try:
            if os.stat(path).st_size == size:
                os.utime(path)
                return True
            return False
        except FileNotFoundError:
            pass
        if size > INLINE_MAX or self._known_blob_size(sha256) != size:
            return False
        self._pending.lease(sha256, now_ns)
        return True

    def _known_blob_size(self, sha256: str) -> int | None:
        """The blob's size, from ``_blob_sizes`` or the database. Call with the store lock held."""
        size = self._blob_sizes.get(sha256)
        if size is not None:
            self._blob_sizes.move_to_end(sha256)
            return size
        size = self._blob_size(sha256)
        if size is not None:  # only what a lookup under the store lock found: GC cannot be halfway through it
            self._blob_sizes[sha256] = size
            if len(self._blob_sizes) > KNOWN_BLOBS:
                self._blob_sizes.popitem(last=False)
        return size

    def reuse(self, sha256: str, size: int) -> bool:
        """True if the object is pending or stored with ``size`` bytes, and protected from GC for a grace period
        from now: an upload may then skip storing it (``copied=False``) and the push that follows finds it."""
        with self.lock:
            return self._reuse_locked(sha256, size)

    def ingest(self, fd: int, expected_size: int, progress: Progress | None = None) -> Ingested:
        """Store the content of the open regular file ``fd``; unchanged files (stat cache) are not read."""
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise invalid("only regular files can be uploaded")
        if st.st_size != expected_size:
            raise invalid(f"file is {st.st_size} bytes, but {expected_size} were announced")
        key = StatKey.of(st)
        started_ns = time.time_ns()
        # A file changed within the racy window is never recorded, so it cannot be in the cache either.
        cacheable = key.ctime_ns < started_ns - self.racy_window_ns
        if cacheable:
            cached = self._cache.lookup(key)
            # A hit counts only while the content is still pending or stored: GC may have removed it since.
            if cached is not None and self.reuse(cached, expected_size):
                if progress is not None:
                    progress(expected_size)
                return Ingested(cached, expected_size, copied=False)
        if expected_size <= CHUNK:
            result = self._ingest_small(fd, expected_size, progress)
        else:
            result = self._copy(fd, expected_size, progress)
        if StatKey.of(os.fstat(fd)) != key:
            raise invalid("file changed while it was being uploaded; try again")
        if cacheable:
            self._cache.record(key, result.sha256)
        return result

    def _ingest_small(self, fd: int, expected_size: int, progress: Progress | None) -> Ingested:
        """A file of at most one chunk is read and hashed in memory first: content the store already has is
        not written again; new content of at most ``INLINE_MAX`` bytes waits in memory for its push (nothing is
        written now); larger new content is written without the streaming machinery (thread, writeback)."""
        buf = bytearray(expected_size + 1)  # one spare byte detects a file longer than announced
        view = memoryview(buf)
        total = 0
        while total <= expected_size and (n := os.preadv(fd, [view[total:]], total)):
            total += n
        if total > expected_size:
            raise invalid(f"file has more than the {expected_size} bytes announced")
        if total < expected_size:
            raise invalid(f"read {total} bytes, but {expected_size} were announced")
        data = view[:total]
        sha256 = hashlib.sha256(data).hexdigest()
        if progress is not None:
            progress(total)
        if total > INLINE_MAX:
            if self.reuse(sha256, total):
                return Ingested(sha256, total, copied=False)
            return self._copy(fd, expected_size, progress, data=(data, sha256))
        with self.lock:
            if self._reuse_locked(sha256, total):
                return Ingested(sha256, total, copied=False)
            spill = self._pending.add(sha256, bytes(data), time.monotonic_ns())
        for victim, content in spill:
            self._spill(victim, content)
        return Ingested(sha256, total, copied=True)

    def _spill(self, sha256: str, data: bytes) -> None:
        """Write a pending upload as a file object (the pending map is over budget). Rename first, drop the
        entry after: a lookup (pending → file) finds the content throughout."""
        ok = False
        try:
            self._copy(-1, len(data), None, data=(memoryview(data), sha256))
            ok = True
        finally:
            with self.lock:
                self._pending.spilled(sha256, ok=ok)

    def _copy(
        self, fd: int, expected_size: int, progress: Progress | None, data: tuple[memoryview, str] | None = None
    ) -> Ingested:
        """Write to staging (streamed from ``fd``, or ``data`` already read and hashed), fsync, install."""
        out, tmp = tempfile.mkstemp(dir=self.staging_dir, prefix="ingest-")
        with self._in_flight_lock:
            self._in_flight.add(os.path.basename(tmp))
        try:
            if data is None:
                digest = self._stream(fd, out, expected_size, progress)
            else:
                _write_all(out, data[0])
                digest = data[1]
            self._faults.hit("object.written")
            os.fchmod(out, 0o400)  # objects are immutable
            os.fsync(out)
            self._faults.hit("object.fsynced")
            os.close(out)
            out = -1
            return self._install(tmp, digest, expected_size)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise ProtocolError(ErrorCode.UNAVAILABLE, "no space left in the object store") from None
            raise
        finally:
            if out >= 0:
                os.close(out)
            with self._in_flight_lock:
                self._in_flight.discard(os.path.basename(tmp))
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _stream(self, fd: int, out: int, expected_size: int, progress: Progress | None) -> str:
        """One read pass: pread into two reused buffers, hash each chunk in a helper thread while it is
        written (hashlib and os.write release the GIL), and kick off writeback as we go so the final fsync
        is short. Memory stays at two chunks whatever the size. Returns the hex digest."""
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        buffers = (bytearray(CHUNK), bytearray(CHUNK))
        hasher = hashlib.sha256()
        pending: Future[None] | None = None
        total = flushed = turn = 0
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-hash") as pool:
            while True:
                buf = buffers[turn]
                turn ^= 1  # alternate strictly: the other buffer may still be being hashed
                n = os.preadv(fd, [buf], total)
                if n == 0:
                    break
                total += n
                if total > expected_size:
                    raise invalid(f"file has more than the {expected_size} bytes announced")
                chunk = memoryview(buf)[:n]
                if pending is not None:
                    pending.result()  # the other buffer is free again once its hash is done
                pending = pool.submit(hasher.update, chunk)
                _write_all(out, chunk)
                if total - flushed >= WRITEBACK:
                    # Starts writeback of what we wrote (Linux) without waiting; keeps page cache small too.
                    os.posix_fadvise(out, flushed, total - flushed, os.POSIX_FADV_DONTNEED)
                    flushed = total
                if progress is not None:
                    progress(total)
            if pending is not None:
                pending.result()
        if total != expected_size:
            raise invalid(f"read {total} bytes, but {expected_size} were announced")
        return hasher.hexdigest()

    def _install(self, tmp: str, sha256: str, size: int) -> Ingested:
        dest = self.path_of(sha256)
        with self.lock:  # only the file matters here: a spill installs content that is still pending
            try:
                exists = os.stat(dest).st_size == size
                if exists:
                    os.utime(dest)
            except FileNotFoundError:
                exists = False
        if exists:
            os.unlink(tmp)
            return Ingested(sha256, size, copied=False)
        if not dest.parent.is_dir():
            private_dir(dest.parent)
            fsync_dir(self.objects_dir)
        os.rename(tmp, dest)  # fresh mtime (just written): GC's grace period spares it until the push
        self._faults.hit("object.renamed")
        fsync_dir(dest.parent)
        return Ingested(sha256, size, copied=True)

    # -- pushes ----------------------------------------------------------------------------------------------

    def locate(self, conn: sqlite3.Connection, digests: Collection[str]) -> tuple[dict[str, int], dict[str, bytes]]:
        """Sizes of the ``digests`` that are pending or stored (missing ones are absent), and the content of
        the pending ones, which the caller's transaction must store with :meth:`store_blobs`.

        Call under the registry's write lock with ``conn`` in the push's transaction: GC cannot remove stored
        objects meanwhile, and pending content taken here stays valid even if the entry is dropped later.
        """
        sizes: dict[str, int] = {}
        inline: dict[str, bytes] = {}
        with self.lock:
            now_ns = time.monotonic_ns()
            for sha in digests:
                data = self._pending.get(sha, now_ns)
                if data is not None:
                    inline[sha] = data
                    sizes[sha] = len(data)
        unresolved = []
        for sha in digests:
            if sha not in sizes:
                size = self._file_size(sha)
                if size is None:
                    unresolved.append(sha)
                else:
                    sizes[sha] = size
        for chunk in chunked(unresolved):
            found = conn.execute(f"SELECT sha256, size FROM blobs WHERE sha256 IN ({marks(len(chunk))})", chunk)
            sizes.update(found)
        missing = [sha for sha in unresolved if sha not in sizes]
        if missing:
            with self.lock:  # only GC deletes blobs, and it forgets them; this just makes sure
                for sha in missing:
                    self._blob_sizes.pop(sha, None)
        return sizes, inline

    @staticmethod
    def store_blobs(conn: sqlite3.Connection, inline: dict[str, bytes], now: datetime) -> None:
        """INSERT pending content as blobs in the caller's transaction (its commit makes them durable)."""
        if inline:
            at = db_time(now)
            conn.executemany(
                "INSERT OR IGNORE INTO blobs (sha256, size, created_at, data) VALUES (?, ?, ?, ?)",
                [(sha, len(data), at, data) for sha, data in inline.items()],
            )

    def settle(self, digests: Iterable[str]) -> None:
        """After a push committed: its pending uploads are blobs now, and its leases have done their job."""
        with self.lock:
            for sha in digests:
                self._pending.pop(sha)

    # -- reading ---------------------------------------------------------------------------------------------

    def pending_data(self, sha256: str) -> bytes | None:
        """The content of a small upload not yet made durable by a push (None: not pending)."""
        with self.lock:
            return self._pending.get(sha256, time.monotonic_ns())

    def _content(self, sha256: str) -> int | bytes | None:
        """An open descriptor on the file object, else the blob's bytes, else None. File → blob → file again:
        GC drops a blob that a file object shadows, which a spill may have created since the first look."""
        path = self._path(sha256)
        with contextlib.suppress(FileNotFoundError):
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        data = self._blob_data(sha256)
        if data is not None:
            return data
        with contextlib.suppress(FileNotFoundError):
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        return None

    def open_object(self, sha256: str) -> int:
        """An O_RDONLY descriptor on a file object, or a sealed memfd holding a blob (at offset 0; readers use
        pread either way). The caller closes it."""
        found = self._content(sha256)
        if found is None:
            raise ProtocolError(ErrorCode.INTEGRITY, f"object {sha256} is missing from the store")
        if isinstance(found, int):
            return found
        fd = os.memfd_create(f"modeltui-{sha256[:16]}", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            _write_all(fd, memoryview(found))
            os.lseek(fd, 0, os.SEEK_SET)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)  # immutable, like a file object (0400)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def read_object(self, sha256: str, limit: int) -> bytes | None:
        """Up to ``limit + 1`` bytes of the pending or stored object, or None. Read whole or not at all even if
        GC removes the object meanwhile (one descriptor, one snapshot); the caller re-checks under its lock."""
        with self.lock:
            data = self._pending.get(sha256, time.monotonic_ns())
        if data is None:
            found = self._content(sha256)
            if found is None:
                return None
            if isinstance(found, bytes):
                data = found
            else:
                try:
                    return os.pread(found, limit + 1, 0)
                finally:
                    os.close(found)
        return data[: limit + 1]

    def verify(self, sha256: str) -> bool:
        """Re-hash a stored object: True when its content still matches its name."""
        hasher = hashlib.sha256()
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        fd = self.open_object(sha256)
        try:
            offset = 0
            while n := os.preadv(fd, [buf], offset):
                hasher.update(view[:n])
                offset += n
        finally:
            os.close(fd)
        return hasher.hexdigest() == sha256

    def iter_objects(self) -> list[tuple[str, Path]]:
        """File objects (not blobs), by digest."""
        found: list[tuple[str, Path]] = []
        for sub in sorted(self.objects_dir.iterdir()):
            if not sub.is_dir() or len(sub.name) != 2:
                continue
            for entry in sorted(sub.iterdir()):
                sha = sub.name + entry.name
                if _SHA_RE.fullmatch(sha):
                    found.append((sha, entry))
        return found

    def iter_blobs(self) -> list[tuple[str, int]]:
        """Blobs as (digest, size), by digest."""
        with self._reader_lock:
            rows = self._reader.execute("SELECT sha256, size FROM blobs ORDER BY sha256").fetchall()
        return [(sha, int(size)) for sha, size in rows]

    # -- garbage collection ------------------------------------------------------------------------------------

    def gc(self, *, grace_seconds: int, dry_run: bool) -> GcStats:
        """Remove objects no version references that were not stored or uploaded for ``grace_seconds``: file
        objects, blobs, pending uploads; and staging files as old. Also blobs a file object shadows.

        The caller must hold the registry's write lock, so no version can start referencing an object between
        reading the references and the removal; this runs in one ``BEGIN IMMEDIATE`` transaction for the same
        reason across processes. Files this store does not name are left alone.

        A removal (not a dry run) first takes ``gc.lock`` exclusively without waiting: while a backup holds it
        shared, this raises ``UNAVAILABLE`` and removes nothing (the backup's snapshot may reference objects
        that are no longer referenced here).
        """
        if dry_run:
            return self._gc(grace_seconds=grace_seconds, dry_run=True)
        fd = os.open(self.gc_lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ProtocolError(
                    ErrorCode.UNAVAILABLE,
                    "a backup is copying objects (it holds gc.lock): garbage collection is deferred, "
                    "run it again once the backup has finished",
                ) from None
            return self._gc(grace_seconds=grace_seconds, dry_run=False)
        finally:
            os.close(fd)  # releases the flock

    def _gc(self, *, grace_seconds: int, dry_run: bool) -> GcStats:
        cutoff_ns = time.time_ns() - grace_seconds * 1_000_000_000
        cutoff_mono = time.monotonic_ns() - grace_seconds * 1_000_000_000
        cutoff_at = db_time(utcnow() - timedelta(seconds=grace_seconds))
        removed: list[str] = []
        removed_bytes = 0
        with contextlib.ExitStack() as held, self._db.write(self._faults) as conn:
            referenced = {sha for (sha,) in conn.execute("SELECT DISTINCT sha256 FROM files")}
            files, touched_dirs, file_bytes = self._gc_files(referenced, cutoff_ns, dry_run, removed)
            removed_bytes += file_bytes
            # Held until after the commit: an upload must not find a blob this transaction is deleting.
            held.enter_context(self.lock)
            expired = self._pending.older_than(cutoff_mono) if dry_run else self._pending.expire(cutoff_mono)
            for sha, size in expired:
                removed.append(sha)
                removed_bytes += size
            doomed: list[str] = []
            for sha, size, created_at in conn.execute("SELECT sha256, size, created_at FROM blobs"):
                if files.get(sha) == size:
                    doomed.append(sha)  # shadowed: the file object wins, so the digest stays stored
                elif (
                    sha not in referenced
                    and created_at < cutoff_at
                    and not self._pending.leased_since(sha, cutoff_mono)
                ):
                    doomed.append(sha)
                    removed.append(sha)
                    removed_bytes += size
            if not dry_run:
                for chunk in chunked(doomed):
                    conn.execute(f"DELETE FROM blobs WHERE sha256 IN ({marks(len(chunk))})", chunk)
                for sha in doomed:
                    self._blob_sizes.pop(sha, None)
                forget(conn, removed)
        staging = self._gc_staging(cutoff_ns, dry_run)
        for directory in touched_dirs:
            fsync_dir(directory)
        return GcStats(len(removed), removed_bytes, staging, removed)

    def _gc_files(
        self, referenced: Collection[str], cutoff_ns: int, dry_run: bool, removed: list[str]
    ) -> tuple[dict[str, int], set[Path], int]:
        """Unlink unreferenced file objects not modified since ``cutoff_ns``; returns the size of each file
        object that stays, the directories to fsync, and the bytes removed."""
        kept: dict[str, int] = {}
        touched_dirs: set[Path] = set()
        removed_bytes = 0
        for sha, path in self.iter_objects():
            with self.lock:  # an upload reusing this object either refreshed the mtime already, or waits
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue
                if sha in referenced or st.st_mtime_ns > cutoff_ns:
                    kept[sha] = st.st_size
                    continue
                if not dry_run:
                    os.unlink(path)
            if dry_run:
                kept[sha] = st.st_size
            else:
                touched_dirs.add(path.parent)
            removed.append(sha)
            removed_bytes += st.st_size
        return kept, touched_dirs, removed_bytes

    def clear_staging(self) -> tuple[int, int]:
        """Remove every file in staging: partial uploads of a daemon that was killed. Only the daemon that
        holds the state directory's lock may call it, before it serves (nothing can be uploading then).
        Returns (files, bytes) removed."""
        files = size = 0
        for entry in self.staging_dir.iterdir():
            try:
                st = entry.lstat()
                if stat.S_ISDIR(st.st_mode):  # never made by the store: not ours to judge
                    continue
                entry.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:  # a cleanup must never stop the daemon starting: `gc` retries it later
                log.warning("could not remove %s from staging: %s", entry, exc.strerror or exc)
                continue
            files += 1
            size += st.st_size
        return files, size

    def _gc_staging(self, cutoff_ns: int, dry_run: bool) -> int:
        staging = 0
        with self._in_flight_lock:
            in_flight = set(self._in_flight)
        for entry in self.staging_dir.iterdir():
            if entry.name in in_flight:
                continue
            try:
                if entry.lstat().st_mtime_ns > cutoff_ns:
                    continue
                if not dry_run:
                    entry.unlink()
            except FileNotFoundError:
                continue
            staging += 1
        return staging
