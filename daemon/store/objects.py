"""Content-addressed artifact store: ``objects/ab/cdef…`` named by sha256, written crash-safely.

An object is streamed into ``staging/`` (one read pass, hashed while written, memory bounded by one
1 MiB buffer), fsynced, renamed into place, and its directory fsynced: after a crash an object file is either
complete or absent. Leftover staging files and objects no version references are removed by :meth:`gc`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from daemon.protocol.errors import ErrorCode, ProtocolError, invalid

from .engine import private_dir
from .faults import NO_FAULTS, Faults
from .statcache import StatCache, StatKey

CHUNK = 1 << 20
WRITEBACK = 16 << 20
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

    def __init__(self, state_dir: Path, cache: StatCache, *, faults: Faults = NO_FAULTS) -> None:
        self.objects_dir = private_dir(state_dir / "objects")
        self.staging_dir = private_dir(state_dir / "staging")
        self._cache = cache
        self._faults = faults
        self._in_flight: set[str] = set()
        self._in_flight_lock = threading.Lock()

    def path_of(self, sha256: str) -> Path:
        if not _SHA_RE.fullmatch(sha256):
            raise invalid(f"invalid sha256 digest {sha256[:80]!r}")
        return self.objects_dir / sha256[:2] / sha256[2:]

    def size_of(self, sha256: str) -> int | None:
        """The object's size, or None when it is not in the store."""
        try:
            return self.path_of(sha256).stat().st_size
        except FileNotFoundError:
            return None

    def touch(self, sha256: str) -> None:
        """Refresh the mtime of a reused object so GC's grace period protects it until it is referenced."""
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.path_of(sha256))

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
            if cached is not None and self.size_of(cached) == expected_size:
                self.touch(cached)
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
        not written again, and new content is written without the streaming machinery (thread, writeback)."""
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
        if os.path.exists(self.path_of(sha256)):
            self.touch(sha256)
            return Ingested(sha256, total, copied=False)
        return self._copy(fd, expected_size, progress, data=(data, sha256))

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
        if dest.exists():
            os.unlink(tmp)
            self.touch(sha256)
            return Ingested(sha256, size, copied=False)
        if not dest.parent.is_dir():
            private_dir(dest.parent)
            fsync_dir(self.objects_dir)
        os.rename(tmp, dest)
        self._faults.hit("object.renamed")
        fsync_dir(dest.parent)
        return Ingested(sha256, size, copied=True)

    def open_object(self, sha256: str) -> int:
        """An O_RDONLY descriptor on the object (the caller closes it)."""
        try:
            return os.open(self.path_of(sha256), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ProtocolError(ErrorCode.INTEGRITY, f"object {sha256} is missing from the store") from None

    def read_bytes(self, sha256: str, limit: int) -> bytes:
        fd = self.open_object(sha256)
        try:
            return os.pread(fd, limit + 1, 0)
        finally:
            os.close(fd)

    def verify(self, sha256: str) -> bool:
        """Re-hash an object: True when its content still matches its name."""
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
        found: list[tuple[str, Path]] = []
        for sub in sorted(self.objects_dir.iterdir()):
            if not sub.is_dir() or len(sub.name) != 2:
                continue
            for entry in sorted(sub.iterdir()):
                sha = sub.name + entry.name
                if _SHA_RE.fullmatch(sha):
                    found.append((sha, entry))
        return found

    def gc(self, referenced: Collection[str], *, grace_seconds: int, dry_run: bool) -> GcStats:
        """Remove unreferenced objects and staging files not modified for ``grace_seconds``.

        The caller must hold the registry's write lock so no version can start referencing an object
        between reading ``referenced`` and the removal. Files this store does not name are left alone.
        """
        cutoff_ns = time.time_ns() - grace_seconds * 1_000_000_000
        removed: list[str] = []
        removed_bytes = 0
        touched_dirs: set[Path] = set()
        for sha, path in self.iter_objects():
            if sha in referenced:
                continue
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue
            if st.st_mtime_ns > cutoff_ns:
                continue
            if not dry_run:
                path.unlink(missing_ok=True)
                touched_dirs.add(path.parent)
            removed.append(sha)
            removed_bytes += st.st_size
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
        for directory in touched_dirs:
            fsync_dir(directory)
        return GcStats(len(removed), removed_bytes, staging, removed)
