"""The Unix-socket server: bind safely, read frames, dispatch requests, push events.

Handlers know nothing of sockets: each gets its validated request and a :class:`Context` (who is calling,
descriptors that came with the request, a progress callback) and returns a result, optionally with
descriptors to pass back.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import functools
import json
import logging
import os
import pwd
import socket
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from daemon import __version__
from daemon.access import Access, caller_groups
from daemon.protocol import frames
from daemon.protocol.errors import ErrorCode, ProtocolError
from daemon.protocol.events import Event, LogEvent, ProgressEvent
from daemon.protocol.requests import REQUEST_TYPES
from daemon.protocol.results import Result
from daemon.protocol.transport import (
    ConnectionClosed,
    DescriptorError,
    FramedSocket,
    FrameTooLarge,
    peer_credentials,
)

log = logging.getLogger("modeltuid.server")

KNOWN_OPS = frozenset(t.model_fields["op"].default for t in REQUEST_TYPES)
#: Requests one connection may have in flight; more wait (back-pressure, not an error).
MAX_INFLIGHT_PER_CONNECTION = 8
#: What the daemon keeps for one subscriber that does not read: at most this many events and this many bytes
#: (beyond what the kernel's socket buffer holds). A subscriber past either limit is dropped: its queue is
#: emptied, one last error frame says why, and the connection is closed (docs/architecture.md).
MAX_QUEUED_EVENTS = 1_000
MAX_QUEUED_BYTES = 2 * frames.MAX_FRAME_BYTES
#: How long a dropped subscriber has to read what is already on its way and that last frame.
FAREWELL_SECONDS = 60.0
#: How long a new connection has to send its hello.
HANDSHAKE_SECONDS = 10.0
#: How long a refused connection is kept so that its client can send its hello and then read why (never
#: more than MAX_REFUSING at once: beyond that a refused connection is closed at once, without a frame).
REFUSAL_LINGER_SECONDS = 2.0
MAX_REFUSING = 64
#: Refusals of one uid are logged at most once in this many seconds (a flood of connections, not of lines).
REFUSAL_LOG_SECONDS = 60.0


class AlreadyRunning(Exception):
    """Another daemon holds the lock or answers on the socket."""


@dataclass(frozen=True)
class Caller:
    """Who sent a request, from SO_PEERCRED: trusted, unlike anything in the frames."""

    uid: int
    gid: int
    pid: int
    user: str
    groups: frozenset[str] = frozenset()
    """Group names of the connecting process (access control: ``@group`` entries)."""


@functools.lru_cache(maxsize=256)
def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid:{uid}"


@dataclass
class Context:
    """What a handler may know about its request besides its fields."""

    caller: Caller
    fds: list[int]
    progress: Callable[[int, int, str], None]
    subscribe: Callable[[set[str]], None]


@dataclass(frozen=True)
class Serialized:
    """A result already serialised to JSON (a cached read): sent as it is."""

    data: bytes


HandlerResult = Result | Serialized | tuple[Result, list[int]]
Dispatch = Callable[[Any, Context], Awaitable[HandlerResult]]


@dataclass(eq=False)
class Connection:
    conn: FramedSocket
    caller: Caller
    topics: set[str] = field(default_factory=set)
    inflight: set[asyncio.Task[Any]] = field(default_factory=set)
    outbox: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    queued_bytes: int = 0
    dropped: bool = False
    """Fell too far behind: nothing more is queued for it, and it is being closed."""
    unsent: int = 0
    """Answers that could not be sent because the peer had gone (logged once, when the connection ends)."""
    last_active: float = 0.0
    """Loop time of its last frame read or request finished (the idle timeout counts from there)."""

    def push(self, data: bytes) -> bool:
        """Queue an event; False when the connection is dropped or its queue is at a limit."""
        if self.dropped or self.outbox.qsize() >= MAX_QUEUED_EVENTS:
            return False
        if self.queued_bytes + len(data) > MAX_QUEUED_BYTES:
            return False
        self.outbox.put_nowait(data)
        self.queued_bytes += len(data)
        return True

    async def next_event(self) -> bytes:
        data = await self.outbox.get()
        self.queued_bytes -= len(data)
        return data

    def drop(self) -> int:
        """Stop queueing and forget what is queued (the memory it held); returns how many events that was."""
        self.dropped = True
        forgotten = self.outbox.qsize()
        self.outbox = asyncio.Queue()
        self.queued_bytes = 0
        return forgotten


class EventHub:
    """Fans events out to the connections subscribed to their topic."""

    def __init__(self) -> None:
        self.connections: set[Connection] = set()
        self._farewells: set[asyncio.Task[None]] = set()

    def listeners(self, route: str) -> int:
        return sum(route in c.topics for c in self.connections)

    def publish(self, event: Event) -> None:
        data = frames.encode(frames.EventFrame(event=event))
        route = event.route if isinstance(event, LogEvent) else event.topic
        for c in list(self.connections):
            if route in c.topics and not c.push(data):
                self._drop(c)

    def _drop(self, c: Connection) -> None:
        """A subscriber too far behind: stop queueing for it, free its queue, tell it why, then close it."""
        self.connections.discard(c)
        behind = c.drop()
        log.warning("dropping a subscriber of %s (pid %d): %d events unread", c.caller.user, c.caller.pid, behind)
        message = (
            f"this connection fell {behind} events behind (a subscriber may have {MAX_QUEUED_EVENTS} events or "
            f"{MAX_QUEUED_BYTES >> 20} MiB unread); the daemon closed it: reconnect, then read again what you show"
        )
        farewell = frames.ErrorFrame(id=None, code=ErrorCode.UNAVAILABLE, message=message,
                                     data={"reason": "slow_subscriber", "unread": behind})  # fmt: skip
        task = asyncio.get_running_loop().create_task(self._farewell(c, frames.encode(farewell)))
        self._farewells.add(task)
        task.add_done_callback(self._farewells.discard)

    @staticmethod
    async def _farewell(c: Connection, frame: bytes) -> None:
        """Send the last frame after what is already being written (bounded in time), then shut down. Shut
        down, never close, a socket another task is reading: its reader sees EOF and cleans up; closing would
        let the descriptor number be reused under the loop."""
        with contextlib.suppress(TimeoutError, ConnectionClosed, OSError):
            await asyncio.wait_for(c.conn.write(frame), FAREWELL_SECONDS)
        with contextlib.suppress(OSError):
            c.conn.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        for task in list(self._farewells):
            task.cancel()


def acquire_lock(lock_path: Path, socket_path: Path) -> int:
    """Hold an exclusive lock for the daemon's lifetime; a second daemon fails here and is told who
    holds it (pid and socket are written into the lock file)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 4096, 0).decode(errors="replace").split()
        os.close(fd)
        pid, sock = [*holder, "?", "?"][:2]
        raise AlreadyRunning(f"another modeltuid (pid {pid}, socket {sock}) holds {lock_path}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {socket_path}\n".encode(), 0)
    return fd


def _socket_answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def bind_socket(path: Path, mode: int) -> socket.socket:
    """Bind the listening socket. A stale socket (or a symlink, never followed) is replaced; a live
    socket or any other kind of file makes us refuse. A private socket (0600) gets a private directory;
    a shared one (0660, system mode) a traversable one, access being decided by the socket's own mode."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700 if mode & 0o077 == 0 else 0o755)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            log.warning("removing symlink at the socket path %s (not following it)", path)
            path.unlink()
        elif stat.S_ISSOCK(st.st_mode):
            if _socket_answers(path):
                raise AlreadyRunning(f"a daemon already answers on {path}")
            log.info("replacing stale socket %s", path)
            path.unlink()
        else:
            raise AlreadyRunning(f"{path} exists and is not a socket; remove it or choose another path")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o777 & ~mode)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, mode, follow_symlinks=False)
    sock.listen(128)
    sock.setblocking(False)
    return sock


def adopt_socket(fd: int, expected: Path | None = None) -> socket.socket:
    """Wrap an inherited listening socket (systemd socket activation, descriptor ``fd``). It must be a
    listening ``AF_UNIX`` stream socket; a path other than ``expected`` is served anyway, with a warning
    (clients look for ``expected``). Raises :class:`ValueError` when the descriptor is unusable."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ValueError(f"descriptor {fd} is not a socket: {exc.strerror or exc}") from None
    try:
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    except OSError:
        listening = 0
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM or not listening:
        sock.detach()  # not ours to close: leave the descriptor as it was
        raise ValueError(f"descriptor {fd} is not a listening AF_UNIX stream socket")
    sock.set_inheritable(False)
    sock.setblocking(False)
    name = sock.getsockname()
    path = name.decode(errors="replace") if isinstance(name, bytes) else name
    if expected is not None and path != str(expected):
        log.warning("serving on the inherited socket %s, not on the configured %s", path or "(unnamed)", expected)
    return sock


class Server:
    """Accepts connections and runs one reader task per connection."""

    def __init__(
        self,
        socket_path: Path,
        dispatch: Dispatch,
        hub: EventHub,
        *,
        socket_mode: int = 0o600,
        max_clients: int = 256,
        max_clients_per_uid: int = 32,
        admin_reserved_clients: int = 8,
        idle_timeout: float = 300.0,
        listener: socket.socket | None = None,
        access: Access | None = None,
    ) -> None:
        """``listener``: an already listening socket (from :func:`adopt_socket`) to serve on instead of
        binding ``socket_path``; it is closed on stop but its file is left alone (its owner removes it).
        ``access``: the roles, so each connection's welcome says the caller's (None: the welcome says none).

        Admission: at most ``max_clients`` connections; at most ``max_clients_per_uid`` of one uid (root and
        the daemon's own uid excepted); the last ``admin_reserved_clients`` only for admins (at most all but
        one). A connection that said hello and then has nothing in flight and no subscription for
        ``idle_timeout`` seconds is closed (0: never)."""
        self.socket_path = socket_path
        self._inherited = listener
        self.dispatch = dispatch
        self.hub = hub
        self.access = access
        self.socket_mode = socket_mode
        self.max_frame = frames.MAX_FRAME_BYTES
        self.max_clients = max_clients
        self.max_clients_per_uid = max_clients_per_uid
        self.admin_reserved_clients = max(0, min(admin_reserved_clients, max_clients - 1))  # one for everyone
        self.idle_timeout = idle_timeout
        self._exempt_uids = frozenset({0, os.getuid() if access is None else access.owner_uid})
        self._per_uid: collections.Counter[int] = collections.Counter()
        self._refusing: set[asyncio.Task[Any]] = set()
        self._refusals_logged: dict[int, float] = {}
        self._listener: socket.socket | None = None
        self._accept_task: asyncio.Task[None] | None = None
        self._open: set[socket.socket] = set()  # every accepted socket, handshake or not
        self._handlers: set[asyncio.Task[Any]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._inode: tuple[int, int] | None = None
        self._stopping = False

    async def start(self) -> None:
        if self._inherited is not None:  # socket activation: systemd bound it, and keeps it
            self._listener, self._inherited = self._inherited, None
            self._inode = None  # never unlinked by us
        else:
            self._listener = bind_socket(self.socket_path, self.socket_mode)
            st = os.stat(self.socket_path)
            self._inode = (st.st_dev, st.st_ino)
        self._accept_task = asyncio.get_running_loop().create_task(self._accept_loop())
        if self.idle_timeout > 0:
            self._spawn(self._close_idle_connections())

    async def stop(self, grace: float = 30.0) -> None:
        """Stop accepting, stop reading, let requests in flight finish (bounded), then close.

        Handlers are not cancelled first: a cancelled handler would close descriptors that a worker
        thread may still be reading.
        """
        self._stopping = True  # frames still buffered are answered UNAVAILABLE, not started
        if self._accept_task is not None:
            self._accept_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accept_task
        if self._listener is not None:
            self._listener.close()
            self._unlink_own_socket()
        for sock in list(self._open):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RD)  # readers see EOF; responses in flight can still be sent
        deadline = asyncio.get_running_loop().time() + grace
        while self._handlers:  # the set may gain handlers that were waiting for a slot
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                log.warning("%d requests still running after %.0fs; cancelling them", len(self._handlers), grace)
                break
            await asyncio.wait(set(self._handlers), timeout=remaining)
        self.hub.close()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)

    def _unlink_own_socket(self) -> None:
        """Remove the socket file only if it is still ours (a newer daemon may have replaced it)."""
        try:
            st = os.lstat(self.socket_path)
        except FileNotFoundError:
            return
        if self._inode is not None and (st.st_dev, st.st_ino) == self._inode:
            self.socket_path.unlink()

    def _spawn(self, coro: Awaitable[Any], group: set[asyncio.Task[Any]] | None = None) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        for tasks in (self._tasks, group) if group is not None else (self._tasks,):
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        return task

    async def _accept_loop(self) -> None:
        assert self._listener is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = await loop.sock_accept(self._listener)
            except OSError as exc:
                # EMFILE, ENOBUFS, ENOMEM…: transient; an accept loop that dies leaves a deaf daemon.
                log.error("accept failed (%s); retrying", exc)
                await asyncio.sleep(0.5)
                continue
            try:
                uid = peer_credentials(sock).uid
            except OSError:
                sock.close()
                continue
            if len(self._open) >= self.max_clients:
                self._refuse(sock, uid, "max_clients", f"the daemon already serves {self.max_clients} connections "
                             "(max_clients in [daemon]); try again later")  # fmt: skip
                continue
            if uid not in self._exempt_uids and self._per_uid[uid] >= self.max_clients_per_uid:
                self._refuse(sock, uid, "max_clients_per_uid", f"uid {uid} already has {self.max_clients_per_uid} "
                             "connections open (max_clients_per_uid in [daemon]); close one first")  # fmt: skip
                continue
            self._open.add(sock)
            self._per_uid[uid] += 1
            self._spawn(self._serve_connection(sock, uid))

    def _refuse(self, sock: socket.socket, uid: int, limit: str, message: str) -> None:
        """Turn a connection away: one error frame saying which limit, then close (after its client has had
        a moment to send its hello, so that it reads the frame rather than a broken pipe). Logged at most
        once a minute per uid."""
        now = asyncio.get_running_loop().time()
        if now - self._refusals_logged.get(uid, -REFUSAL_LOG_SECONDS) >= REFUSAL_LOG_SECONDS:
            if len(self._refusals_logged) > 4096:
                self._refusals_logged = {u: t for u, t in self._refusals_logged.items()
                                         if now - t < REFUSAL_LOG_SECONDS}  # fmt: skip
            self._refusals_logged[uid] = now
            log.warning("refusing a connection of uid %d: %s (logged once a minute per uid)", uid, message)
        if len(self._refusing) >= MAX_REFUSING:
            sock.close()
            return
        self._spawn(self._turn_away(sock, limit, message), self._refusing)

    async def _turn_away(self, sock: socket.socket, limit: str, message: str) -> None:
        frame = frames.ErrorFrame(id=None, code=ErrorCode.UNAVAILABLE, message=message, data={"limit": limit})
        conn = FramedSocket(sock, self.max_frame)
        try:
            with contextlib.suppress(TimeoutError, ConnectionClosed, FrameTooLarge, OSError):
                await asyncio.wait_for(conn.read_frame(), REFUSAL_LINGER_SECONDS)  # its hello, if it sends one
            with contextlib.suppress(TimeoutError, ConnectionClosed, OSError):
                await asyncio.wait_for(conn.write(frames.encode(frame)), REFUSAL_LINGER_SECONDS)
        finally:
            conn.close()

    async def _serve_connection(self, sock: socket.socket, uid: int) -> None:
        conn: FramedSocket | None = None
        c: Connection | None = None
        writer: asyncio.Task[None] | None = None
        admitted = True
        try:
            creds = peer_credentials(sock)
            name = await asyncio.to_thread(user_name, creds.uid)  # NSS may block: not on the loop
            groups = await asyncio.to_thread(caller_groups, creds.pid, creds.uid, creds.gid, name)
            role = None if self.access is None else self.access.role(creds.uid, name, groups)
            if role != "admin" and len(self._open) > self.max_clients - self.admin_reserved_clients:
                self._open.discard(sock)  # the slot is free again at once; the refusal lingers outside the count
                self._per_uid[uid] -= 1
                if self._per_uid[uid] <= 0:
                    del self._per_uid[uid]
                admitted = False
                open_for_all = self.max_clients - self.admin_reserved_clients
                self._refuse(sock, uid, "admin_reserved_clients", f"the daemon already serves {open_for_all} "
                             f"connections; the other {self.admin_reserved_clients} are kept for admins "
                             "(max_clients, admin_reserved_clients in [daemon]); try again later")  # fmt: skip
                return
            conn = FramedSocket(sock, self.max_frame)
            c = Connection(conn, Caller(creds.uid, creds.gid, creds.pid, name, groups))
            if not await self._handshake(c):
                return
            c.last_active = asyncio.get_running_loop().time()
            self.hub.connections.add(c)
            writer = self._spawn(self._write_events(c))
            await self._read_requests(c)
        except (ConnectionClosed, ConnectionError):
            pass
        except (DescriptorError, OSError) as exc:
            log.warning("closing a connection: %s", exc)
        finally:
            try:
                if c is not None and c.inflight:
                    await asyncio.wait(c.inflight)  # their responses still go out, their fds close first
            finally:
                if c is not None:
                    self.hub.connections.discard(c)
                    if c.unsent:
                        log.debug("%s (pid %d) hung up before %d answer(s) could be sent",
                                  c.caller.user, c.caller.pid, c.unsent)  # fmt: skip
                if writer is not None:
                    writer.cancel()
                if admitted:  # else the refusal owns the socket now
                    self._open.discard(sock)
                    self._per_uid[uid] -= 1
                    if self._per_uid[uid] <= 0:
                        del self._per_uid[uid]
                    if conn is not None:
                        conn.close()
                    else:
                        sock.close()

    async def _send_error(
        self, c: Connection, req_id: int | None, code: ErrorCode, message: str, data: dict[str, Any] | None = None
    ) -> None:
        frame = frames.ErrorFrame(id=req_id, code=code, message=message, data=data or {})
        await c.conn.write(frames.encode(frame))

    async def _answer_error(
        self, c: Connection, req_id: int, code: ErrorCode, message: str, data: dict[str, Any] | None = None
    ) -> None:
        """An error answer to a request whose client may already have hung up: then it is only counted."""
        try:
            await self._send_error(c, req_id, code, message, data)
        except (ConnectionClosed, OSError):
            c.unsent += 1

    async def _handshake(self, c: Connection) -> bool:
        hello_error = "the first frame must be hello{protocol, client}"
        try:
            raw = await asyncio.wait_for(c.conn.read_frame(), HANDSHAKE_SECONDS)
            for fd in c.conn.frame_fds():  # nothing may ride on a hello
                os.close(fd)
            hello = frames.CLIENT_FRAME.validate_json(raw)
        except TimeoutError:
            with contextlib.suppress(ConnectionClosed, OSError):
                said = f"no hello within {HANDSHAKE_SECONDS:.0f} s; closing the connection"
                await self._send_error(c, None, ErrorCode.BAD_FRAME, said)
            return False
        except FrameTooLarge as exc:
            await self._send_error(c, None, ErrorCode.FRAME_TOO_LARGE, str(exc))
            return False
        except ValidationError:
            await self._send_error(c, None, ErrorCode.BAD_FRAME, hello_error)
            return False
        if not isinstance(hello, frames.Hello):
            await self._send_error(c, None, ErrorCode.BAD_FRAME, hello_error)
            return False
        if hello.protocol != frames.PROTOCOL_VERSION:
            await self._send_error(
                c,
                None,
                ErrorCode.PROTOCOL_MISMATCH,
                f"this daemon (modeltuid {__version__}) speaks protocol {frames.PROTOCOL_VERSION}, the client "
                f"speaks {hello.protocol}: upgrade the older of the two",
                {"daemon": frames.PROTOCOL_VERSION, "client": hello.protocol},
            )
            return False
        caller = c.caller
        role = None if self.access is None else self.access.role(caller.uid, caller.user, caller.groups)
        welcome = frames.Welcome(
            protocol=frames.PROTOCOL_VERSION, daemon_version=__version__, user=c.caller.user, role=role
        )
        await c.conn.write(frames.encode(welcome))
        return True

    async def _close_idle_connections(self) -> None:
        """Close connections that said hello and then sat idle (nothing in flight, no subscription, which
        is also how a log is followed) for ``idle_timeout`` seconds, each with a last frame saying why."""
        loop = asyncio.get_running_loop()
        period = min(max(self.idle_timeout / 4, 0.05), 15.0)
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            for c in list(self.hub.connections):
                if c.topics or c.inflight or c.dropped or now - c.last_active < self.idle_timeout:
                    continue
                self.hub.connections.discard(c)
                c.drop()
                log.debug("closing an idle connection of %s (pid %d)", c.caller.user, c.caller.pid)
                message = (f"this connection was idle for {self.idle_timeout:g} s (idle_timeout_seconds in "
                           "[daemon]); the daemon closed it: reconnect to send more")  # fmt: skip
                data = {"reason": "idle", "idle_timeout_seconds": self.idle_timeout}
                farewell = frames.ErrorFrame(id=None, code=ErrorCode.UNAVAILABLE, message=message, data=data)
                self._spawn(EventHub._farewell(c, frames.encode(farewell)))

    async def _write_events(self, c: Connection) -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            while True:
                await c.conn.write(await c.next_event())

    async def _read_requests(self, c: Connection) -> None:
        slots = asyncio.Semaphore(MAX_INFLIGHT_PER_CONNECTION)
        while True:
            try:
                raw = await c.conn.read_frame()
            except FrameTooLarge as exc:
                # Its id is unknown, so the client could not tell which call failed: say why and hang up.
                await self._send_error(c, None, ErrorCode.FRAME_TOO_LARGE, f"{exc}; closing the connection")
                return
            c.last_active = asyncio.get_running_loop().time()
            fds = c.conn.frame_fds()
            parsed = self._parse_request(raw)
            if self._stopping:
                await self._refuse_while_stopping(c, parsed.id, fds)
                continue
            if isinstance(parsed, frames.ErrorFrame) or parsed.request.fd_count != len(fds):
                for fd in fds:
                    os.close(fd)
                if not isinstance(parsed, frames.ErrorFrame):
                    parsed = frames.ErrorFrame(
                        id=parsed.id,
                        code=ErrorCode.INVALID,
                        message=f"{parsed.request.op} expects {parsed.request.fd_count} descriptors, "
                        f"{len(fds)} came with it",
                    )
                await c.conn.write(frames.encode(parsed))
                if parsed.id is None:
                    return  # nothing to answer to: the peer is not speaking the protocol
                continue
            await slots.acquire()
            if self._stopping:
                slots.release()
                await self._refuse_while_stopping(c, parsed.id, fds)
                continue
            task = self._spawn(self._handle(c, parsed, fds), self._handlers)
            c.inflight.add(task)
            task.add_done_callback(lambda _t: setattr(c, "last_active", asyncio.get_running_loop().time()))
            task.add_done_callback(c.inflight.discard)
            task.add_done_callback(lambda _t: slots.release())

    async def _refuse_while_stopping(self, c: Connection, req_id: int | None, fds: list[int]) -> None:
        for fd in fds:
            os.close(fd)
        await self._send_error(c, req_id, ErrorCode.UNAVAILABLE, "the daemon is stopping; try again")

    @staticmethod
    def _parse_request(raw: bytes) -> frames.RequestFrame | frames.ErrorFrame:
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            return frames.ErrorFrame(id=None, code=ErrorCode.BAD_FRAME, message=f"frame is not JSON: {exc}")
        req_id = obj.get("id") if isinstance(obj, dict) else None
        if not isinstance(req_id, int) or isinstance(req_id, bool) or not 0 <= req_id < 2**53:
            req_id = None
        if not isinstance(obj, dict) or obj.get("type") != "request":
            return frames.ErrorFrame(id=req_id, code=ErrorCode.BAD_FRAME, message="expected a request frame")
        body = obj.get("request")
        op = body.get("op") if isinstance(body, dict) else None
        if not isinstance(op, str) or op not in KNOWN_OPS:
            shown = repr(op)[:64]
            return frames.ErrorFrame(
                id=req_id,
                code=ErrorCode.UNKNOWN_OP,
                message=f"unknown operation {shown}",
                data={"known": sorted(KNOWN_OPS)},
            )
        try:
            return frames.RequestFrame.model_validate(obj)
        except ValidationError as exc:
            problems = [
                f"{'.'.join(str(p) for p in e['loc'][2:]) or op}: {e['msg']}" for e in exc.errors(include_url=False)
            ]
            return frames.ErrorFrame(
                id=req_id, code=ErrorCode.INVALID, message=f"invalid {op} request: " + "; ".join(problems[:10])
            )

    async def _handle(self, c: Connection, frame: frames.RequestFrame, fds: list[int]) -> None:
        loop = asyncio.get_running_loop()

        def progress(done: int, total: int, path: str = "") -> None:
            event = ProgressEvent(request_id=frame.id, done=done, total=total, path=path)
            data = frames.encode(frames.EventFrame(event=event))
            loop.call_soon_threadsafe(c.push, data)

        ctx = Context(c.caller, fds, progress, c.topics.update)
        out_fds: list[int] = []
        try:
            outcome = await self.dispatch(frame.request, ctx)
            result, out_fds = outcome if isinstance(outcome, tuple) else (outcome, [])
            body = result.data if isinstance(result, Serialized) else result.model_dump_json().encode()
            data = frames.encode_response(frame.id, body)
            if len(data) > self.max_frame:
                raise ProtocolError(
                    ErrorCode.FRAME_TOO_LARGE,
                    f"the result is {len(data)} bytes, over the {self.max_frame}-byte frame cap; ask for less",
                )
        except ProtocolError as exc:
            await self._answer_error(c, frame.id, exc.code, exc.message, exc.data)
        except Exception:
            log.exception("request %s from %s failed", frame.request.op, c.caller.user)
            await self._answer_error(c, frame.id, ErrorCode.INTERNAL, "internal error; see the daemon log")
        else:
            await self._answer(c, frame, data, out_fds)
        finally:
            for fd in fds + out_fds:
                with contextlib.suppress(OSError):
                    os.close(fd)

    async def _answer(self, c: Connection, frame: frames.RequestFrame, data: bytes, fds: list[int]) -> None:
        try:
            await c.conn.write(data, fds)
        except (ConnectionClosed, OSError):
            c.unsent += 1  # the peer went away (EPIPE, ECONNRESET…) before its answer could be sent
        except Exception:
            log.exception("the answer to %s from %s could not be sent", frame.request.op, c.caller.user)
