"""What several handler classes use: cached reads, the ingest thread pool, the descriptor check."""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from pydantic import BaseModel

from daemon.protocol import results as r
from daemon.protocol.errors import ErrorCode, ProtocolError
from daemon.protocol.frames import MAX_FRAME_BYTES
from daemon.readcache import ReadCache
from daemon.server import Serialized

O_PATH = getattr(os, "O_PATH", 0o10000000)


async def cached_read(
    cache: ReadCache, req: BaseModel, models: Sequence[str] | None, read: Callable[[], r.Result]
) -> Serialized:
    """Serve a read from the cache, or run it in a thread and keep its JSON."""
    key = req.model_dump_json().encode()
    hit = cache.get(key, models)
    if hit is not None:
        return Serialized(hit)
    snapshot = cache.snapshot(models)
    data = (await asyncio.to_thread(read)).model_dump_json().encode()
    if len(data) < MAX_FRAME_BYTES:  # a result too large to send is refused each time, not kept
        cache.put(key, snapshot, data)
    return Serialized(data)


def ingest_pool() -> ThreadPoolExecutor:
    """Long uploads get their own threads, so they never hold up everyone's reads in the default pool."""
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="ingest")


def check_readable(fd: int) -> None:
    """Only descriptors opened for reading: an O_PATH or write-only descriptor would let a caller learn
    whether a file it cannot read matches a stored object."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    if flags & O_PATH or flags & os.O_ACCMODE not in (os.O_RDONLY, os.O_RDWR):
        raise ProtocolError(ErrorCode.INVALID, "each uploaded file must be passed open for reading")
