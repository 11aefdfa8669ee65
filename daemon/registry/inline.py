"""objects.put: content that arrives inside frames, for clients that cannot pass descriptors (over SSH).

Each upload in progress is a staging file (``put-*`` in the store's staging directory) and a running sha256,
keyed by the caller's uid, the digest and the size: chunks must come in order, and at the last byte the
size and digest are checked, then the file is stored through the same ingest as objects.upload (dedup,
fsync, rename). Nothing is an object before that check, so a crash mid-upload leaves a staging file, which
the daemon clears when it starts (and ``gc`` when it is old). An upload left idle is dropped after
``idle_seconds`` (by a timer that runs while uploads are in progress, so an abandoned one does not keep its
descriptor and file until the next put); one interrupted by a lost connection can go on from ``received``.
Shutdown drops them all (:meth:`InlineUploads.close`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.protocol import results as r
from daemon.protocol.errors import ErrorCode, ProtocolError, conflict, invalid

from .objects import Ingested

Key = tuple[int, str, int]  # (uid, sha256, size)


@dataclass(eq=False)
class _Partial:
    fd: int
    path: str
    touched: float
    digest: Any = field(default_factory=hashlib.sha256)
    received: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    """Held while writing; ``fd`` is -1 once the upload is dropped, which writers check under it."""

    def discard(self) -> None:
        """Close and remove the staging file (called with ``lock`` held): a writer that fetched this upload
        before it was dropped sees ``fd == -1``, never a closed (maybe reused) descriptor."""
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class InlineUploads:
    """The objects.put uploads in progress. Thread-safe: handlers call :meth:`put` from worker threads."""

    def __init__(self, staging_dir: Path, ingest: Callable[[int, int], Ingested],
                 stored: Callable[[str, int], bool], *, idle_seconds: float = 900.0, per_caller: int = 16,
                 clock: Callable[[], float] = time.monotonic, sweep_seconds: float | None = 60.0) -> None:  # fmt: skip
        """``sweep_seconds``: how often the timer drops idle uploads while any is in progress (None: never;
        :meth:`expire` is then the caller's)."""
        self.staging_dir = staging_dir
        self._ingest = ingest
        self._stored = stored
        self.idle_seconds = idle_seconds
        self.per_caller = per_caller
        self._clock = clock
        self._sweep_seconds = sweep_seconds
        self._timer: threading.Timer | None = None
        self._closed = False
        self._partials: dict[Key, _Partial] = {}
        self._lock = threading.Lock()

    def expire(self) -> None:
        """Drop the uploads idle for ``idle_seconds`` (the timer calls this; so does every put)."""
        with self._lock:
            self._expire_locked()

    def _expire_locked(self) -> None:
        cutoff = self._clock() - self.idle_seconds
        for key, partial in list(self._partials.items()):
            if partial.touched >= cutoff or not partial.lock.acquire(blocking=False):  # one being written is not idle
                continue
            try:
                if partial.touched < cutoff:
                    del self._partials[key]
                    partial.discard()
            finally:
                partial.lock.release()

    def _sweep(self) -> None:
        try:
            self.expire()
        finally:
            with self._lock:
                self._timer = None
                self._arm_locked()

    def _arm_locked(self) -> None:
        """Start the timer if uploads are in progress and it is not running."""
        if self._timer is None and self._partials and self._sweep_seconds is not None and not self._closed:
            self._timer = threading.Timer(self._sweep_seconds, self._sweep)
            self._timer.daemon = True
            self._timer.name = "objects.put-expiry"
            self._timer.start()

    def _start_locked(self, key: Key) -> _Partial:
        if sum(1 for k in self._partials if k[0] == key[0]) >= self.per_caller:
            raise ProtocolError(ErrorCode.UNAVAILABLE, f"{self.per_caller} uploads are already in progress for "
                                "this user; finish or abandon one first")  # fmt: skip
        fd, path = tempfile.mkstemp(dir=self.staging_dir, prefix="put-")
        partial = self._partials[key] = _Partial(fd, path, self._clock())
        self._arm_locked()
        return partial

    def put(self, uid: int, sha256: str, size: int, offset: int, data: bytes) -> r.PutResult:
        """Append ``data`` at ``offset`` of the upload of (``sha256``, ``size``); store it once complete."""
        key = (uid, sha256, size)
        with self._lock:
            if self._closed:
                raise ProtocolError(ErrorCode.UNAVAILABLE, "the daemon is stopping")
            self._expire_locked()
            partial = self._partials.get(key)
            if partial is None:
                if offset == 0 and self._stored(sha256, size):  # nothing to send: the store has it
                    return r.PutResult(sha256=sha256, size=size, received=size, stored=True)
                if offset != 0:
                    raise conflict(f"no upload of {sha256[:12]}… is in progress (it may have expired): "
                                   "start again at offset 0", received=0)  # fmt: skip
                partial = self._start_locked(key)
        with partial.lock:
            if partial.fd < 0:  # dropped (idle, failed or shutdown) between the lookup and here
                raise conflict("the upload was abandoned: start again at offset 0", received=0)
            partial.touched = self._clock()
            if offset != partial.received:
                if offset == 0 and not data:  # a probe: say how far it is
                    return r.PutResult(sha256=sha256, size=size, received=partial.received, stored=False)
                raise conflict(f"expected offset {partial.received}, not {offset}", received=partial.received)
            if partial.received + len(data) > size:
                self._fail(key, partial)
                raise invalid(f"more than the {size} bytes announced")
            try:
                _write_all(partial.fd, data)
            except OSError as exc:
                self._fail(key, partial)
                if exc.errno == 28:  # ENOSPC
                    raise ProtocolError(ErrorCode.UNAVAILABLE, "no space left in the object store") from None
                raise
            partial.digest.update(data)
            partial.received += len(data)
            if partial.received < size:
                return r.PutResult(sha256=sha256, size=size, received=partial.received, stored=False)
            try:
                if partial.digest.hexdigest() != sha256:
                    raise ProtocolError(ErrorCode.INTEGRITY, f"the content sent does not match its sha256 "
                                        f"{sha256[:12]}… (did the file change while it was sent?)")  # fmt: skip
                got = self._ingest(partial.fd, size)
            finally:
                self._fail(key, partial)
        return r.PutResult(sha256=got.sha256, size=got.size, received=size, stored=True, copied=got.copied)

    def _fail(self, key: Key, partial: _Partial) -> None:
        """Forget the upload and remove its staging file (called with ``partial.lock`` held)."""
        with self._lock:
            if self._partials.get(key) is partial:
                del self._partials[key]
        partial.discard()

    def close(self) -> None:
        """At shutdown (after the handlers' pool has drained): stop the timer, drop every upload."""
        with self._lock:
            self._closed = True
            timer, self._timer = self._timer, None
            partials, self._partials = list(self._partials.values()), {}
        if timer is not None:
            timer.cancel()
        for partial in partials:
            with partial.lock:
                partial.discard()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
