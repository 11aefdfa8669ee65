"""objects.put: content that arrives inside frames, for clients that cannot pass descriptors (over SSH).

Each upload in progress is a staging file (``put-*`` in the store's staging directory) and a running sha256,
keyed by the caller's uid, the digest and the size: chunks must come in order, and at the last byte the
size and digest are checked, then the file is stored through the same ingest as objects.upload (dedup,
fsync, rename). Nothing is an object before that check, so a crash mid-upload leaves a staging file, which
the daemon clears when it starts (and ``gc`` when it is old). An upload left idle is dropped after
``idle_seconds``; one interrupted by a lost connection can go on from ``received``.
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
    digest: Any = field(default_factory=hashlib.sha256)
    received: int = 0
    touched: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class InlineUploads:
    """The objects.put uploads in progress. Thread-safe: handlers call :meth:`put` from worker threads."""

    def __init__(self, staging_dir: Path, ingest: Callable[[int, int], Ingested],
                 stored: Callable[[str, int], bool], *, idle_seconds: float = 900.0,
                 per_caller: int = 16) -> None:  # fmt: skip
        self.staging_dir = staging_dir
        self._ingest = ingest
        self._stored = stored
        self.idle_seconds = idle_seconds
        self.per_caller = per_caller
        self._partials: dict[Key, _Partial] = {}
        self._lock = threading.Lock()

    def _expire_locked(self) -> None:
        cutoff = time.monotonic() - self.idle_seconds
        for key in [k for k, p in self._partials.items() if p.touched < cutoff and not p.lock.locked()]:
            self._partials.pop(key).discard()

    def _start_locked(self, key: Key) -> _Partial:
        if sum(1 for k in self._partials if k[0] == key[0]) >= self.per_caller:
            raise ProtocolError(ErrorCode.UNAVAILABLE, f"{self.per_caller} uploads are already in progress for "
                                "this user; finish or abandon one first")  # fmt: skip
        fd, path = tempfile.mkstemp(dir=self.staging_dir, prefix="put-")
        partial = self._partials[key] = _Partial(fd, path)
        return partial

    def _drop(self, key: Key, partial: _Partial) -> None:
        with self._lock:
            if self._partials.get(key) is partial:
                del self._partials[key]
        partial.discard()

    def put(self, uid: int, sha256: str, size: int, offset: int, data: bytes) -> r.PutResult:
        """Append ``data`` at ``offset`` of the upload of (``sha256``, ``size``); store it once complete."""
        key = (uid, sha256, size)
        with self._lock:
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
            if partial.fd < 0:  # dropped by a concurrent put that failed
                raise conflict("the upload was abandoned: start again at offset 0", received=0)
            partial.touched = time.monotonic()
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
        self._drop(key, partial)
        partial.fd = -1

    def close(self) -> None:
        with self._lock:
            partials, self._partials = list(self._partials.values()), {}
        for partial in partials:
            partial.discard()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
