"""Asking every context at once: one client per host, a timeout per host, each answer handed over as it comes.

The hosts view and the fleet view (when there is no cluster) show every daemon the user can reach. They post
:class:`~modeltui.screens.hosts.FanOutCall` messages; the App hands them to its :class:`FanOut`, which asks
each context in a task of its own with its own timeout (:data:`HOST_TIMEOUT`), so a host that hangs delays
nobody else and the others' answers show at once.

The current context is asked through the App's own client; the others through clients this object opens on
first use and keeps while a view uses them (:meth:`FanOut.release` closes them when the last view goes, and
the App's exit closes them all; the next view starts afresh; a client that connects after that is closed at
once). A host that cannot be reached is tried again
with backoff (:data:`BACKOFF_FIRST` doubling up to :data:`BACKOFF_MAX`): until its next try, an ask answers
its last error at once, so a view that polls every few seconds neither waits for it nor hammers it. A host
already being asked for the same view and group is not asked again until it answers (the asks stay bounded).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from daemon.protocol.errors import ProtocolError

from .client import DaemonClient, DaemonUnavailable
from .screens.hosts import FanOutCall, HostAnswer

#: Seconds a host has to connect and answer one ask.
HOST_TIMEOUT = 3.0
#: Seconds before the first new try of a host that could not be reached; doubles with each failure.
BACKOFF_FIRST = 1.0
#: The longest wait between two tries of a host that cannot be reached.
BACKOFF_MAX = 30.0


#: What an ask answers for a host once its view is gone (nobody is shown it).
RELEASED = "the view that asked is gone"


class _Released(Exception):
    """Every view was released while a host was being connected: its client is not kept."""


class HostContext(Protocol):
    """What the fan-out needs of a context (:class:`modeltui.contexts.Context`)."""

    @property
    def name(self) -> str: ...


Opener = Callable[[Any], Awaitable[DaemonClient]]
"""Opens a client for a context (:func:`modeltui.contexts.open_client`, with the per-host timeout)."""


@dataclass
class _Host:
    """One context's extra client and how the last tries went."""

    client: DaemonClient | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    error: str = ""
    failures: int = 0
    retry_at: float = 0.0

    def failed(self, reason: str, now: float) -> None:
        self.error = reason
        self.failures += 1
        self.retry_at = now + min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (self.failures - 1))

    def reached(self) -> None:
        self.error, self.failures, self.retry_at = "", 0, 0.0


class FanOut:
    """One client per context (lazily), asked concurrently; see the module's docstring."""

    def __init__(
        self,
        contexts: Callable[[], Sequence[HostContext]],
        current: Callable[[], tuple[str, DaemonClient | None]],
        opener: Opener,
        *,
        timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.contexts = contexts
        """The contexts to ask, as the App knows them now."""
        self.current = current
        """The current context's name and the App's client for it (None while not connected)."""
        self.opener = opener
        self.timeout = HOST_TIMEOUT if timeout is None else timeout
        """Seconds each host has to connect and answer (:data:`HOST_TIMEOUT` unless given)."""
        self.clock = clock
        """Seconds, for the backoff (tests drive it by hand)."""
        self.hosts: dict[str, _Host] = {}
        """Extra clients and backoff, by context name."""
        self._asking: set[tuple[int, str, str]] = set()
        self._users: set[int] = set()

    def register(self, screen: object) -> None:
        """A view asks: the extra clients stay open until it is released. The App calls this when the call
        arrives, not in the ask's worker: a release handled before the worker starts must not be undone."""
        self._users.add(id(screen))

    async def ask(self, message: FanOutCall[Any]) -> None:
        """Ask every context (or ``message.only``) concurrently; each answer goes to ``message.reply`` as
        soon as it comes, while the screen is still mounted. A view already released is not asked for."""
        if not self._uses(message):
            return
        wanted = [c for c in self.contexts() if message.only is None or c.name in message.only]
        await asyncio.gather(*(self._ask_one(context, message) for context in wanted))

    async def _ask_one(self, context: HostContext, message: FanOutCall[Any]) -> None:
        key = (id(message.screen), message.group or "", context.name)
        if key in self._asking:
            return
        self._asking.add(key)
        try:
            answer = await self._answer(context, message)
        finally:
            self._asking.discard(key)
        if self._uses(message):
            message.reply(answer)

    def _uses(self, message: FanOutCall[Any]) -> bool:
        """Whether the view that asked is still shown and registered (not released)."""
        return bool(message.screen.is_attached) and id(message.screen) in self._users

    async def _answer(self, context: HostContext, message: FanOutCall[Any]) -> HostAnswer[Any]:
        name = context.name
        current, own = self.current()
        if name == current:
            if own is None or own.closed.is_set():
                return HostAnswer(name, error="not connected to the daemon", reachable=False)
            return await self._call(name, own, message, None)
        if not self._uses(message):  # released while the others were asked: open nothing more
            return HostAnswer(name, error=RELEASED, reachable=False)
        host = self.hosts.setdefault(name, _Host())
        if host.client is None and self.clock() < host.retry_at:
            return HostAnswer(name, error=host.error, reachable=False)
        try:
            async with asyncio.timeout(self.timeout):
                client = await self._client(context, host)
        except _Released:
            return HostAnswer(name, error=RELEASED, reachable=False)
        except TimeoutError:
            host.failed(f"no answer within {self.timeout:g}s", self.clock())
            return HostAnswer(name, error=host.error, reachable=False)
        except ProtocolError as exc:
            host.failed(exc.message, self.clock())
            return HostAnswer(name, error=host.error, reachable=False)
        except OSError as exc:
            host.failed(exc.strerror or str(exc), self.clock())
            return HostAnswer(name, error=host.error, reachable=False)
        return await self._call(name, client, message, host)

    async def _client(self, context: HostContext, host: _Host) -> DaemonClient:
        async with host.lock:  # two views asking at once open one client
            if host.client is not None and host.client.closed.is_set():
                await self._drop(host)
            if host.client is None:
                if self.hosts.get(context.name) is not host:  # closed while waiting for the lock
                    raise _Released
                client = await self.opener(context)
                if self.hosts.get(context.name) is not host:  # closed while connecting: nobody would close it
                    with contextlib.suppress(Exception):
                        await client.close()
                    raise _Released
                host.client = client
            return host.client

    async def _call(
        self, name: str, client: DaemonClient, message: FanOutCall[Any], host: _Host | None
    ) -> HostAnswer[Any]:
        try:
            async with asyncio.timeout(self.timeout):
                result = await client.call(message.request)
        except TimeoutError:
            return await self._lost(name, host, f"no answer within {self.timeout:g}s")
        except DaemonUnavailable as exc:
            return await self._lost(name, host, exc.message)
        except ProtocolError as exc:
            if client.closed.is_set():
                return await self._lost(name, host, exc.message)
            return HostAnswer(name, error=exc.message)  # the host answered: a refusal, not an outage
        if host is not None:
            host.reached()
        return HostAnswer(name, result=result)

    async def _lost(self, name: str, host: _Host | None, reason: str) -> HostAnswer[Any]:
        if host is not None:
            host.failed(reason, self.clock())
            await self._drop(host)
        return HostAnswer(name, error=reason, reachable=False)

    async def _drop(self, host: _Host) -> None:
        client, host.client = host.client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()

    async def release(self, screen: object) -> None:
        """A view that asked has gone: once none is left, close the extra clients."""
        self._users.discard(id(screen))
        if not self._users:
            await self.close()

    async def close(self) -> None:
        """Close every extra client (the App's own is the App's) and forget the hosts: an ask still running
        fails on the closed client, and that must not count against the host the next time a view asks."""
        self._users.clear()
        hosts, self.hosts = list(self.hosts.values()), {}
        for host in hosts:
            await self._drop(host)
