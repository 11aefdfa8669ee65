"""Async client for modeltuid over its Unix socket, and the embedded-daemon start.

One persistent connection: a reader task routes responses to waiting calls by request id and hands events
to listeners, so the TUI is pushed changes instead of polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from daemon.protocol import frames, lifecycle, requests, results
from daemon.protocol.errors import ErrorCode, ProtocolError
from daemon.protocol.events import Event
from daemon.protocol.paths import ENV_SOCKET, find_socket
from daemon.protocol.transport import ConnectionClosed, DescriptorError, FramedSocket, FrameTooLarge

R = TypeVar("R", bound=results.Result)
EventListener = Callable[[Event], None]


class DaemonUnavailable(ProtocolError):
    """No daemon answers on the socket (and none could be started)."""

    def __init__(self, message: str, *, startable: bool = False) -> None:
        super().__init__(ErrorCode.UNAVAILABLE, message)
        #: Nothing listens there (no socket file, or a stale one): starting an embedded daemon may help.
        self.startable = startable


@dataclass
class Reply:
    """A response: the result's JSON and any descriptors the daemon passed with it (the caller closes them)."""

    raw: bytes
    fds: list[int] = field(default_factory=list)

    @cached_property
    def result(self) -> dict[str, Any]:
        value = json.loads(self.raw)
        if not isinstance(value, dict):
            raise ProtocolError(ErrorCode.BAD_FRAME, "a response's result must be a JSON object")
        return value


class DaemonClient:
    """A connection to modeltuid. Use :func:`connect` to make one."""

    def __init__(self, conn: FramedSocket, welcome: frames.Welcome, socket_path: Path) -> None:
        self._conn = conn
        self.welcome = welcome
        self.socket_path = socket_path
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._listeners: list[EventListener] = []
        self._progress: dict[int, Callable[[int, int, str], None]] = {}
        self.readonly = False
        """``--readonly``: requests that change state are refused here, before anything is sent."""
        self.can_pass_fds = True
        """False over SSH (modeltui.ssh_transport): descriptors cannot cross, so requests that pass them are
        refused here, before anything is sent; a push then sends its bytes inline (objects.put)."""
        self.closed = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read_loop())

    # -- connection ----------------------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        error: ProtocolError = DaemonUnavailable("the daemon closed the connection")
        try:
            while True:
                raw = await self._conn.read_frame()
                fds = self._conn.frame_fds()
                head = frames.RESPONSE_HEAD.match(raw)
                if head is not None and raw.endswith(b"}"):
                    # The daemon's own layout: take the result's bytes; the caller validates them once.
                    self._deliver(int(head.group(1)), Reply(raw[head.end() : -1], fds))
                    continue
                frame = frames.SERVER_FRAME.validate_json(raw)
                if isinstance(frame, frames.ResponseFrame):
                    self._deliver(frame.id, Reply(json.dumps(frame.result).encode(), fds))
                    continue
                for fd in fds:  # descriptors ride only on responses
                    os.close(fd)
                if isinstance(frame, frames.ErrorFrame):
                    exc = ProtocolError(frame.code, frame.message, frame.data)
                    if frame.id is None:
                        error = exc  # the daemon hangs up after an error it cannot attribute
                        continue
                    fut = self._pending.pop(frame.id, None)
                    if fut is not None and not fut.done():
                        fut.set_exception(exc)
                elif isinstance(frame, frames.EventFrame):
                    self._dispatch_event(frame.event)
        except (ConnectionClosed, OSError):
            pass
        except (ValidationError, ValueError) as exc:
            error = ProtocolError(ErrorCode.BAD_FRAME, f"unreadable frame from the daemon: {exc}")
        except FrameTooLarge as exc:
            error = ProtocolError(ErrorCode.FRAME_TOO_LARGE, f"a frame from the daemon was too large: {exc}")
        except DescriptorError as exc:
            error = ProtocolError(ErrorCode.BAD_FRAME, f"descriptors from the daemon: {exc}")
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(error)
            self._pending.clear()
            self.closed.set()

    def _deliver(self, req_id: int, reply: Reply) -> None:
        fut = self._pending.pop(req_id, None)
        if fut is not None and not fut.done():
            fut.set_result(reply)
        else:
            for fd in reply.fds:
                os.close(fd)

    def _dispatch_event(self, event: Event) -> None:
        if event.topic == "progress":
            cb = self._progress.get(event.request_id)
            if cb is not None:
                cb(event.done, event.total, event.path)
            return
        for listener in list(self._listeners):
            listener(event)

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        self._conn.close()
        self.closed.set()  # also when the reader was cancelled before it ever ran (its finally never did)

    async def __aenter__(self) -> DaemonClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- requests ------------------------------------------------------------------------------------------
    async def send(
        self,
        request: requests.BaseRequest[Any],
        *,
        fds: Sequence[int] = (),
        progress: Callable[[int, int, str], None] | None = None,
    ) -> Reply:
        """Send one request (with descriptors) and wait for its raw reply, with the descriptors that
        came back (the caller closes them). Raises ProtocolError."""
        if self.closed.is_set():
            raise DaemonUnavailable("the connection to the daemon is closed")
        if self.readonly and request.changes_state:
            raise ProtocolError(ErrorCode.FORBIDDEN, f"{request.op_name} changes state: refused by --readonly")
        if (fds or request.fd_count) and not self.can_pass_fds:
            raise ProtocolError(
                ErrorCode.INVALID, f"{request.op_name} passes file descriptors, which cannot cross this connection"
            )
        req_id = next(self._ids)
        data = b'{"type":"request","id":%d,"request":%s}\n' % (req_id, request.model_dump_json().encode())
        if len(data) > frames.MAX_FRAME_BYTES:
            raise ProtocolError(
                ErrorCode.FRAME_TOO_LARGE,
                f"the {type(request).__name__} request is {len(data)} bytes, "
                f"over the {frames.MAX_FRAME_BYTES}-byte frame cap",
            )
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        if progress is not None:
            self._progress[req_id] = progress
        # The write owns duplicates of the descriptors: shielded, it may outlive a cancelled caller (who
        # then closes its own), and must neither leave half a frame nor send a reused descriptor number.
        owned = [os.dup(fd) for fd in fds]

        async def write() -> None:
            try:
                await self._conn.write(data, owned)
            finally:
                for fd in owned:
                    os.close(fd)

        try:
            await asyncio.shield(write())
            return await fut
        except OSError as exc:
            raise DaemonUnavailable(f"lost the connection to the daemon: {exc}") from exc
        finally:
            self._pending.pop(req_id, None)
            self._progress.pop(req_id, None)

    async def call(
        self, request: requests.BaseRequest[R], *, progress: Callable[[int, int, str], None] | None = None
    ) -> R:
        """Send a request and return its result, of the type the request class declares."""
        reply = await self.send(request, progress=progress)
        return request.parse_result(reply.raw)

    def add_listener(self, listener: EventListener) -> None:
        """Call ``listener`` (on the event loop) for every pushed event of the subscribed topics."""
        self._listeners.append(listener)

    def remove_listener(self, listener: EventListener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    async def subscribe(self, *topics: str) -> None:
        await self.call(requests.Subscribe.model_validate({"topics": list(topics)}))


async def connect(socket_path: Path, *, client_name: str = "modeltui", timeout: float = 5.0) -> DaemonClient:  # noqa: ASYNC109
    """Connect and say hello. Raises DaemonUnavailable when nothing answers."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.sock_connect(sock, str(socket_path)), timeout)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        sock.close()
        raise DaemonUnavailable(f"no daemon answers on {socket_path}: {exc.strerror}", startable=True) from exc
    except PermissionError as exc:
        sock.close()
        raise ProtocolError(
            ErrorCode.FORBIDDEN,
            f"no permission to use {socket_path}: ask the daemon's administrator to add you to its group",
        ) from exc
    except (TimeoutError, OSError) as exc:
        sock.close()
        raise DaemonUnavailable(f"the daemon on {socket_path} does not answer: {exc}") from exc
    except asyncio.CancelledError:  # a caller's own timeout (the hosts view's per-host one): no leaked socket
        sock.close()
        raise
    conn = FramedSocket(sock, frames.MAX_FRAME_BYTES)
    welcome = await handshake(conn, f"the daemon on {socket_path}", client_name=client_name, timeout=timeout)
    return DaemonClient(conn, welcome, socket_path)


async def handshake(conn: FramedSocket, who: str, *, client_name: str, timeout: float) -> frames.Welcome:  # noqa: ASYNC109
    """Say hello on a fresh connection and read the welcome; closes ``conn`` on failure."""
    try:
        hello = frames.Hello(protocol=frames.PROTOCOL_VERSION, client=client_name)
        await asyncio.wait_for(conn.write(frames.encode(hello)), timeout)
        raw = await asyncio.wait_for(conn.read_frame(), timeout)
        reply = frames.SERVER_FRAME.validate_json(raw)
    except (ConnectionClosed, OSError, TimeoutError, ValidationError) as exc:
        conn.close()
        raise DaemonUnavailable(f"{who} did not answer hello: {exc or type(exc).__name__}") from exc
    except asyncio.CancelledError:  # a caller's own timeout, or the App exiting: no leaked connection
        conn.close()
        raise
    if isinstance(reply, frames.ErrorFrame):
        conn.close()
        raise ProtocolError(reply.code, reply.message, reply.data)
    if not isinstance(reply, frames.Welcome):
        conn.close()
        raise ProtocolError(ErrorCode.BAD_FRAME, f"expected welcome, got {reply.type}")
    return reply


def spawn_daemon(socket_path: Path, *, config: str | None = None) -> subprocess.Popen[bytes]:
    """Start modeltuid for the current user in the background, detached from this terminal.

    The daemon writes its own log file in its state directory; nothing goes to our terminal. Its stdout and
    stderr go to the start log beside the socket (:func:`lifecycle.start_log_path`), so whatever kills it
    before it can log (a missing package, a bad config, an unwritable state directory) is kept.
    """
    env = dict(os.environ)
    env[ENV_SOCKET] = str(socket_path)
    cmd = [sys.executable, "-m", "daemon", "run", "--detach-log"]
    if config:
        cmd += ["--config", config]
    socket_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(lifecycle.start_log_path(socket_path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        return subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=fd,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        os.close(fd)


def start_failure(socket_path: Path, what: str) -> DaemonUnavailable:
    """The error for an embedded start that failed: what happened, the last line the daemon wrote (a
    traceback's last line is the exception), and the file that holds all of it."""
    log = lifecycle.start_log_path(socket_path)
    line = lifecycle.last_line(log)
    return DaemonUnavailable(f"{what}: {line or 'it wrote nothing'} (its output: {log})")


async def connect_or_start(
    socket_flag: str | None = None,
    *,
    config: str | None = None,
    start: bool = True,
    client_name: str = "modeltui",
    start_timeout: float = 15.0,
) -> DaemonClient:
    """Find the socket (flag > env > config > default), connect, and start an embedded daemon if none
    answers and ``start`` is true."""
    path = find_socket(socket_flag, config)
    try:
        return await connect(path, client_name=client_name)
    except DaemonUnavailable as exc:
        if not (start and exc.startable):
            raise
    try:
        proc = spawn_daemon(path, config=config)
    except OSError as exc:
        raise DaemonUnavailable(f"cannot start a daemon for {path}: {exc}") from exc
    deadline = time.monotonic() + start_timeout
    last: DaemonUnavailable | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None and proc.returncode != 0:
            # Another client may have won the race to start it: try once more before giving up.
            with contextlib.suppress(DaemonUnavailable):
                return await connect(path, client_name=client_name)
            raise start_failure(path, f"the embedded daemon exited with status {proc.returncode}")
        try:
            return await connect(path, client_name=client_name)
        except DaemonUnavailable as exc:
            last = exc
            await asyncio.sleep(0.05)
    raise start_failure(path, f"started a daemon but it did not answer within {start_timeout:.0f}s ({last})")
