"""A small HTTP/1.1 server on asyncio protocols: keep-alive, pipelining (answered in order),
``Content-Length`` or ``Transfer-Encoding: chunked`` bodies, header and body caps, idle and slow-request
timeouts. Lines end in CRLF: a bare LF or CR in the head is refused at once (400), not waited on.

One request per connection is handled at a time; the handler answers by calling
:meth:`Connection.respond`, now or later (after a batch), and the next buffered request is parsed then.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 100
MAX_CHUNK_LINE = 1024
"""A chunk-size line (hex size and extensions) longer than this is refused."""
MAX_CHUNKS = 256 * 1024
"""A chunked body of many tiny chunks costs ~80 bytes of Python objects per chunk: the count is capped."""
_BARE_LF = re.compile(rb"(?<!\r)\n")
MAX_BODY_BYTES = 16 * 1024 * 1024
IDLE_TIMEOUT = 75.0
REQUEST_TIMEOUT = 30.0
DRAIN_SECONDS = 2.0
DRAIN_MAX_BYTES = 64 * 1024 * 1024

_STATUS_LINE = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}
_CLOSE = b"Connection: close\r\n"
_KEEP = b"Connection: keep-alive\r\n"
JSON = b"application/json"


class Request:
    __slots__ = (
        "authorization",
        "chunks",
        "close",
        "content_type",
        "expect",
        "http10",
        "length",
        "method",
        "path",
        "t0",
    )

    def __init__(self) -> None:
        self.method = b""
        self.path = b""
        self.http10 = False
        self.close = False
        self.content_type = b""
        self.authorization = b""
        self.expect = False
        self.length = 0
        self.t0 = 0.0
        self.chunks: _Chunks | None = None
        """The body's decoder when it comes chunked (``length`` is then the bytes decoded so far)."""


class _Reject(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


Handler = Callable[["Connection", Request, bytes], None]
ErrorBody = Callable[[int, str], bytes]
Record = Callable[[Request, int, float], None]


class _Chunks:
    """Decodes a chunked body from the front of the connection's buffer, as much as has arrived."""

    __slots__ = ("done", "parts", "remaining", "trailers")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.remaining = -1  # bytes of the current chunk still to read (+2 for its CRLF); -1: a size line is next
        self.trailers = False
        self.done = False

    def feed(self, buf: bytes, total: int, limit: int) -> tuple[bytes, int]:
        """Consume what can be decoded; return the rest of ``buf`` and the body's decoded length so far.

        Walks ``buf`` with an index and slices once at the end: re-slicing per chunk made a body of many
        tiny chunks quadratic on the event loop. Raises :class:`_Reject` on a malformed chunk, a body over
        ``limit``, or more than ``MAX_CHUNKS`` chunks."""
        pos = 0
        while not self.done:
            if self.trailers:
                if buf.startswith(b"\r\n", pos):
                    self.done = True
                    return buf[pos + 2 :], total
                end = buf.find(b"\r\n\r\n", pos)
                if end < 0:
                    if len(buf) - pos > MAX_HEADER_BYTES:
                        raise _Reject(431, f"the chunked body's trailer is larger than {MAX_HEADER_BYTES} bytes")
                    break
                self.done = True
                return buf[end + 4 :], total
            if self.remaining < 0:
                nl = buf.find(b"\r\n", pos, pos + MAX_CHUNK_LINE + 2)
                if nl < 0:
                    if len(buf) - pos > MAX_CHUNK_LINE or buf.find(b"\n", pos) >= 0:
                        raise _Reject(400, "malformed chunk size line")
                    break
                size_text = buf[pos:nl].split(b";", 1)[0].strip(b" \t")
                if not size_text or len(size_text) > 15 or size_text.strip(b"0123456789abcdefABCDEF"):
                    raise _Reject(400, "malformed chunk size")
                size = int(size_text, 16)
                pos = nl + 2
                if size == 0:
                    self.trailers = True
                    continue
                if total + size > limit:
                    raise _Reject(413, f"the chunked body is larger than the limit of {limit} bytes")
                if len(self.parts) >= MAX_CHUNKS:
                    raise _Reject(413, f"the chunked body has more than {MAX_CHUNKS} chunks")
                total += size
                self.remaining = size + 2
            if len(buf) - pos < self.remaining:
                break
            end = pos + self.remaining - 2
            if buf[end : end + 2] != b"\r\n":
                raise _Reject(400, "a chunk does not end with CRLF where its size says")
            self.parts.append(buf[pos:end])
            pos = end + 2
            self.remaining = -1
        return buf[pos:], total

    def body(self) -> bytes:
        return self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)


def _bare_line_end(data: bytes) -> bool:
    """True if ``data`` holds an LF not preceded by CR (HTTP/1.1 lines end in CRLF). One C-speed scan: this
    runs on every read of an incomplete head."""
    return _BARE_LF.search(data) is not None


def _parse_head(head: bytes) -> Request:
    lines = head.split(b"\r\n")
    if head.count(b"\n") != len(lines) - 1 or head.count(b"\r") != len(lines) - 1:
        raise _Reject(400, "a line of the request head ends in a bare LF or CR: lines end in CRLF")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise _Reject(400, "malformed request line")
    req = Request()
    req.method, req.path, version = parts
    if version == b"HTTP/1.1":
        pass
    elif version == b"HTTP/1.0":
        req.http10 = True
        req.close = True
    else:
        raise _Reject(505, "only HTTP/1.1 and HTTP/1.0 are supported")
    if len(lines) > MAX_HEADERS + 1:
        raise _Reject(431, f"more than {MAX_HEADERS} header fields")
    length: bytes | None = None
    chunked = False
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name[-1:] in (b" ", b"\t") or name[:1] in (b" ", b"\t"):
            raise _Reject(400, "malformed header field")
        n = name.lower()
        if n == b"content-length":
            v = value.strip()
            if not v.isdigit() or len(v) > 18:
                raise _Reject(400, "invalid Content-Length")
            if length is not None and length != v:
                raise _Reject(400, "conflicting Content-Length fields")
            length = v
        elif n == b"transfer-encoding":
            if value.strip().lower() != b"chunked" or chunked:
                raise _Reject(501, "only Transfer-Encoding: chunked is supported (once, with no other coding)")
            chunked = True
        elif n == b"connection":
            tokens = value.lower()
            if b"close" in tokens:
                req.close = True
            elif req.http10 and b"keep-alive" in tokens:
                req.close = False
        elif n == b"content-type":
            req.content_type = value.strip()
        elif n == b"authorization":
            req.authorization = value.strip()
        elif n == b"expect":
            if value.strip().lower() != b"100-continue":
                raise _Reject(417, "only Expect: 100-continue is supported")
            req.expect = True
    if chunked:
        if length is not None:
            raise _Reject(400, "a request cannot have both Content-Length and Transfer-Encoding")
        if req.http10:
            raise _Reject(400, "Transfer-Encoding is not defined for HTTP/1.0: send Content-Length")
        req.chunks = _Chunks()
    elif length is None:
        if req.method in (b"POST", b"PUT", b"PATCH"):
            raise _Reject(411, "a request body needs a Content-Length or Transfer-Encoding: chunked header")
        req.length = 0
    else:
        req.length = int(length)
    return req


class Connection(asyncio.Protocol):
    def __init__(self, server: HttpServer, public: bool = False) -> None:
        self.server = server
        self.public = public
        """Accepted on the shared public port (``--public-port``), not on the instance's own admin port."""
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.pending: Request | None = None
        self.busy = False
        self.closed = False
        self.draining = False
        self.eof = False
        self.drained = 0
        self.in_process = False
        self.read_paused = False
        self.write_paused = False
        self.since = 0.0  # when the partial request (or idleness) started, loop time
        self.born = 0.0
        self.served = 0

    # ---- asyncio callbacks ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.since = self.born = self.server.now()
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)

    def eof_received(self) -> bool | None:
        self.eof = True
        if self.busy:
            return True  # keep the write side open to answer the request in flight
        return None

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if not self.busy and not self.closed:
            self._process()

    def data_received(self, data: bytes) -> None:
        if self.draining:
            self.drained += len(data)
            if self.drained > DRAIN_MAX_BYTES:
                self.abort()
            return
        if not self.buf:
            self.since = self.server.now()
            self.buf = data
        else:
            self.buf += data
        if self.busy or self.write_paused:
            if len(self.buf) > MAX_HEADER_BYTES + MAX_BODY_BYTES and not self.read_paused:
                assert self.transport is not None
                self.transport.pause_reading()
                self.read_paused = True
            return
        self._process()

    # ---- parsing ----------------------------------------------------------------------------------

    def _process(self) -> None:
        self.in_process = True
        try:
            while not self.busy and not self.closed and not self.write_paused and not self.draining:
                req = self.pending
                if req is None:
                    buf = self.buf
                    while buf.startswith(b"\r\n"):
                        buf = buf[2:]
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        self.buf = buf
                        if _bare_line_end(buf):  # the CRLFCRLF we wait for would never come
                            self.buf = b""
                            self.fail(400, "a line of the request head ends in a bare LF: lines end in CRLF")
                        elif len(buf) > MAX_HEADER_BYTES:
                            self.fail(431, f"the request head is larger than {MAX_HEADER_BYTES} bytes")
                        return
                    if end > MAX_HEADER_BYTES:
                        self.fail(431, f"the request head is larger than {MAX_HEADER_BYTES} bytes")
                        return
                    try:
                        req = _parse_head(buf[:end])
                    except _Reject as exc:
                        self.buf = b""
                        self.fail(exc.status, exc.message)
                        return
                    self.buf = buf[end + 4 :]
                    if req.length > self.server.max_body:
                        self.fail(413, f"the body is {req.length} bytes; the limit is {self.server.max_body}")
                        return
                    self.pending = req
                    if req.expect and (len(self.buf) < req.length or (req.chunks is not None and not self.buf)):
                        assert self.transport is not None
                        self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                if req.chunks is not None:
                    try:
                        self.buf, req.length = req.chunks.feed(self.buf, req.length, self.server.max_body)
                    except _Reject as exc:
                        self.buf = b""
                        self.fail(exc.status, exc.message)
                        return
                    if not req.chunks.done:
                        return
                    body = req.chunks.body()
                    req.chunks = None
                else:
                    n = req.length
                    if len(self.buf) < n:
                        return
                    if n:
                        body, self.buf = self.buf[:n], self.buf[n:]
                    else:
                        body = b""
                self.pending = None
                self.busy = True
                req.t0 = time.perf_counter()
                try:
                    self.server.handler(self, req, body)
                except Exception as exc:  # a handler bug answers 500, the connection goes on
                    if self.busy:
                        self.respond(req, 500, self.server.error_body(500, f"internal error: {type(exc).__name__}"))
            if self.read_paused and not self.busy and self.transport is not None:
                self.read_paused = False
                self.transport.resume_reading()
        finally:
            self.in_process = False
        if self.buf:
            self.since = self.server.now()

    # ---- responses --------------------------------------------------------------------------------

    def respond(
        self,
        req: Request,
        status: int,
        body: bytes,
        content_type: bytes = JSON,
        extra: bytes = b"",
    ) -> None:
        self.server.record(req, status, time.perf_counter() - req.t0)
        self.busy = False
        self.served += 1
        if self.closed or self.transport is None:
            return
        if self.server.stopping:
            req.close = True  # stopping: the client opens its next connection to another instance
        if req.close:
            conn = _CLOSE
        elif req.http10:
            conn = _KEEP
        else:
            conn = b""
        self.transport.write(
            b"%sContent-Type: %s\r\nContent-Length: %d\r\n%s%s\r\n%s"
            % (_STATUS_LINE[status], content_type, len(body), extra, conn, body)
        )
        if req.close:
            self._lingering_close()
            return
        if self.eof and not self.buf:
            self.transport.close()
            return
        self.since = self.server.now()
        if not self.in_process and (self.buf or self.read_paused):
            self._process()

    def fail(self, status: int, message: str) -> None:
        """Answer a request that cannot be read to its end, then close the connection."""
        self.pending = None
        body = self.server.error_body(status, message)
        req = Request()
        req.close = True
        req.t0 = time.perf_counter()
        req.path = b"(unparsed)"
        self.busy = True
        self.respond(req, status, body)

    def _lingering_close(self) -> None:
        """Stop writing, but keep reading (and discarding) for a while: closing with unread data would
        reset the connection and the client could lose the response."""
        t = self.transport
        if t is None or self.closed:
            return
        self.buf = b""
        self.draining = True
        self.since = self.server.now()
        if t.can_write_eof():
            t.write_eof()
        else:
            t.close()
        if self.read_paused:
            self.read_paused = False
            t.resume_reading()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    def sweep(self, now: float) -> None:
        if self.closed:
            return
        age = now - self.since
        if self.draining:
            if age > DRAIN_SECONDS:
                self.close()
        elif self.busy:
            return
        elif self.buf or self.pending is not None:
            if age > self.server.request_timeout:
                self.fail(408, f"the request was not complete after {self.server.request_timeout:g} s")
        elif age > self.server.idle_timeout:
            self.close()


def bind_shared(host: str, port: int) -> socket.socket:
    """A listening socket on a port other instances of the same deployment share (SO_REUSEPORT): the
    kernel spreads connections over every instance listening, so a rollout overlaps old and new."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


#: How long a stopping server waits for the first request of a connection it has just accepted.
FRESH_GRACE = 0.3


class HttpServer:
    def __init__(
        self,
        handler: Handler,
        error_body: ErrorBody,
        record: Record,
        *,
        max_body: int = MAX_BODY_BYTES,
        idle_timeout: float = IDLE_TIMEOUT,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self.handler = handler
        self.error_body = error_body
        self.record = record
        self.max_body = max_body
        self.idle_timeout = idle_timeout
        self.request_timeout = request_timeout
        self.connections: set[Connection] = set()
        self.stopping = False
        self._server: asyncio.Server | None = None
        self._public: asyncio.Server | None = None
        self._sweeper: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    async def start(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> tuple[str, int]:
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(
            lambda: Connection(self), host, port, backlog=1024, reuse_address=True, ssl=tls
        )
        self._sweeper = asyncio.create_task(self._sweep())
        sock = self._server.sockets[0].getsockname()
        return str(sock[0]), int(sock[1])

    async def listen_shared(self, sock: socket.socket, tls: ssl.SSLContext | None = None) -> None:
        """Also accept on a socket from :func:`bind_shared` (TLS when ``tls`` is given)."""
        assert self._loop is not None
        self._public = await self._loop.create_server(
            lambda: Connection(self, public=True), sock=sock, backlog=1024, ssl=tls
        )

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = self.now()
            for conn in list(self.connections):
                conn.sweep(now)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let requests in flight finish (bounded), then close every connection.

        A connection accepted just before the listener closed usually has its request on the way: it gets a
        moment (FRESH_GRACE) to arrive and is answered with ``Connection: close``, like every response
        from now on, so clients move to another instance instead of meeting a reset."""
        self.stopping = True
        for server in (self._public, self._server):
            if server is not None:
                server.close()
        deadline = time.monotonic() + grace

        def waiting(c: Connection, now: float) -> bool:
            return c.busy or bool(c.buf) or (c.served == 0 and now - c.born < FRESH_GRACE)

        while any(waiting(c, self.now()) for c in self.connections) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for server in (self._public, self._server):
            if server is not None:
                await server.wait_closed()
