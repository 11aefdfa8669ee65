"""Newline-delimited frames over a non-blocking AF_UNIX stream socket, with file descriptors (SCM_RIGHTS).

asyncio's streams cannot carry ancillary data, so this reads with ``recvmsg`` when the loop says the socket
is readable. Each descriptor is tagged with the stream offset of the byte it arrived with (the last byte of
its ``recvmsg``), so a frame gets exactly the descriptors sent within its own bytes — a rejected frame's
descriptors are closed, never handed to the next request. Linux never merges two messages that carry
descriptors into one ``recvmsg`` (it stops right after one), so each read yields at most one batch
(≤ ``FDS_PER_MESSAGE``).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import errno
import os
import socket
import struct
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

FDS_PER_MESSAGE = 250
_RECV_BYTES = 256 * 1024
_CMSG_SPACE = socket.CMSG_SPACE(253 * array.array("i").itemsize)
#: Descriptors a peer may have queued but not yet claimed before the connection is dropped.
MAX_QUEUED_FDS = 1024


class ConnectionClosed(Exception):
    """The peer closed the connection."""


class FrameTooLarge(Exception):
    """A frame exceeded the cap; its bytes up to the next newline are skipped."""


class DescriptorError(Exception):
    """Descriptors were missing, truncated or too many."""


@dataclass(frozen=True)
class PeerCredentials:
    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket) -> PeerCredentials:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return PeerCredentials(pid, uid, gid)


class FramedSocket:
    """One connection: ``read_frame``/``frame_fds`` for the reader, ``write`` for any number of writers."""

    def __init__(self, sock: socket.socket, max_frame: int) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.max_frame = max_frame
        self._buf = bytearray()
        self._base = 0  # stream offset of self._buf[0]
        self._frame = (0, 0)  # stream offsets of the last frame returned
        self._fds: deque[tuple[int, int]] = deque()  # (stream offset it arrived at, descriptor)
        self._discarding = False
        self._eof = False
        self._write_lock = asyncio.Lock()

    # -- reading -------------------------------------------------------------------------------------------
    async def _wait(self, writer: bool) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        fd = self.sock.fileno()
        if fd < 0:
            raise ConnectionClosed("socket closed")
        (loop.add_writer if writer else loop.add_reader)(fd, ready)
        try:
            await fut
        finally:
            (loop.remove_writer if writer else loop.remove_reader)(fd)

    def _recv_once(self) -> bool:
        """Read what is available; False when nothing was (EAGAIN)."""
        try:
            data, anc, flags, _ = self.sock.recvmsg(_RECV_BYTES, _CMSG_SPACE, socket.MSG_CMSG_CLOEXEC)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            if isinstance(exc, ConnectionResetError) or exc.errno in (errno.ECONNRESET, errno.EBADF):
                self._eof = True
                return True
            raise
        # Linux may merge plain bytes queued before a descriptor-carrying message into this read, but
        # stops right after that message: the descriptors rode on the LAST byte returned (a frame's first).
        arrived_at = self._base + len(self._buf) + len(data) - 1
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
                self._fds.extend((arrived_at, fd) for fd in fds)
        if flags & socket.MSG_CTRUNC:
            self.close_queued_fds()
            raise DescriptorError("descriptors were truncated")
        if len(self._fds) > MAX_QUEUED_FDS:
            self.close_queued_fds()
            raise DescriptorError(f"more than {MAX_QUEUED_FDS} unclaimed descriptors")
        if not data:
            self._eof = True
        self._buf += data
        return True

    def _consume(self, n: int) -> None:
        del self._buf[:n]
        self._base += n

    async def read_frame(self) -> bytes:
        """The next frame without its newline; then :meth:`frame_fds` gives the descriptors that came
        with it. Raises FrameTooLarge (then skips to the next newline) or ConnectionClosed."""
        while True:
            if self._discarding:
                nl = self._buf.find(b"\n")
                if nl >= 0:
                    self._consume(nl + 1)
                    self._discarding = False
                else:
                    self._consume(len(self._buf))
            if not self._discarding:
                nl = self._buf.find(b"\n")
                if nl >= 0:
                    if nl + 1 > self.max_frame:
                        self._consume(nl + 1)
                        raise FrameTooLarge(f"frame of {nl + 1} bytes exceeds {self.max_frame}")
                    line = bytes(self._buf[:nl])
                    self._frame = (self._base, self._base + nl + 1)
                    self._consume(nl + 1)
                    return line
                if len(self._buf) > self.max_frame:
                    self._consume(len(self._buf))
                    self._discarding = True
                    raise FrameTooLarge(f"frame exceeds {self.max_frame} bytes")
            if self._eof:
                raise ConnectionClosed("peer closed the connection")
            if not self._recv_once():
                await self._wait(writer=False)

    def frame_fds(self) -> list[int]:
        """The descriptors that arrived within the last frame's bytes (the caller owns and closes them).
        Descriptors that arrived with earlier, rejected or skipped bytes are closed here: they can never
        be mistaken for another request's."""
        start, end = self._frame
        mine: list[int] = []
        while self._fds and self._fds[0][0] < end:
            offset, fd = self._fds.popleft()
            if offset >= start:
                mine.append(fd)
            else:
                os.close(fd)
        return mine

    def close_queued_fds(self) -> None:
        while self._fds:
            os.close(self._fds.popleft()[1])

    # -- writing -------------------------------------------------------------------------------------------
    async def _send_with_fds(self, one_byte: bytes, fds: Sequence[int]) -> None:
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        while True:
            try:
                if self.sock.sendmsg([one_byte], anc) == 1:
                    return
            except (BlockingIOError, InterruptedError):
                pass
            await self._wait(writer=True)

    async def write(self, data: bytes, fds: Sequence[int] = ()) -> None:
        """Send one frame; descriptors ride on its first bytes, at most FDS_PER_MESSAGE per message."""
        loop = asyncio.get_running_loop()
        async with self._write_lock:
            pos = 0
            for start in range(0, len(fds), FDS_PER_MESSAGE):
                if pos >= len(data):
                    raise DescriptorError("frame too short to carry its descriptors")
                await self._send_with_fds(data[pos : pos + 1], fds[start : start + FDS_PER_MESSAGE])
                pos += 1
            if pos < len(data):
                await loop.sock_sendall(self.sock, data[pos:])

    def close(self) -> None:
        self.close_queued_fds()
        with contextlib.suppress(OSError):
            self.sock.close()
