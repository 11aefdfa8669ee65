"""The daemon's ZooKeeper session (kazoo), its state as the event loop sees it, and bounded calls.

kazoo calls state listeners on its own connection thread and they must not block: the listener only hands
the new state to the event loop (``call_soon_threadsafe``). Everything else here is blocking and runs in a
worker thread. A write that needs ZooKeeper checks the state first and fails at once with ``UNAVAILABLE``
when the session is not connected, and any call is bounded by ``write_timeout_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionLoss, KazooException, OperationTimeoutError, SessionExpiredError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import KazooState
from kazoo.retry import KazooRetry

from daemon.protocol.errors import ErrorCode, ProtocolError
from daemon.settings import ClusterSection

log = logging.getLogger("modeltuid.cluster")

T = TypeVar("T")

#: States as reported by ``cluster status``.
CONNECTING, CONNECTED, SUSPENDED, LOST = "connecting", "connected", "suspended", "lost"


class Zk:
    def __init__(self, cfg: ClusterSection, loop: asyncio.AbstractEventLoop, *, clock: Callable[[], float] = time.time):
        self.cfg = cfg
        self.loop = loop
        self.clock = clock
        self.client = KazooClient(
            hosts=cfg.zookeeper,
            timeout=cfg.session_timeout_seconds,
            connection_retry=KazooRetry(max_tries=-1, delay=0.2, max_delay=2.0),
            command_retry=KazooRetry(max_tries=2, delay=0.1, deadline=cfg.write_timeout_seconds),
        )
        self.state = CONNECTING
        """What the event loop last heard: connecting, connected, suspended or lost."""
        self.since = clock()
        """When ``state`` began."""
        self.session: int | None = None
        """The current session's id (changes after an expiry: ephemeral nodes must be made again)."""
        self.listeners: list[Callable[[str, bool], None]] = []
        """Called on the event loop with (state, new_session) after each change."""
        self.client.add_listener(self._kazoo_state)

    def _kazoo_state(self, state: str) -> None:
        """kazoo's thread: never block, hand over to the loop."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
            self.loop.call_soon_threadsafe(self._changed, state)

    def _changed(self, state: str) -> None:
        new = {KazooState.CONNECTED: CONNECTED, KazooState.SUSPENDED: SUSPENDED, KazooState.LOST: LOST}[state]
        session = self.client.client_id[0] if new == CONNECTED and self.client.client_id else None
        new_session = new == CONNECTED and session != self.session
        if new == CONNECTED:
            self.session = session
        if new != self.state:
            log.info("ZooKeeper %s%s", new, " (new session)" if new_session else "")
            self.state, self.since = new, self.clock()
        for fn in list(self.listeners):
            try:
                fn(new, new_session)
            except Exception:
                log.exception("cluster state listener failed")

    def start(self) -> None:
        """Connect in the background: the daemon serves from its cache until ZooKeeper answers."""
        self.client.start_async()

    def stop(self) -> None:
        """Blocking: close the session (ephemeral nodes go at once)."""
        try:
            self.client.stop()
            self.client.close()
        except KazooException:
            log.debug("closing the ZooKeeper session failed", exc_info=True)

    @property
    def connected(self) -> bool:
        return self.state == CONNECTED and self.client.connected

    def staleness(self) -> float:
        """Seconds the cache may be behind ZooKeeper: 0 while connected, else since the connection was lost."""
        return 0.0 if self.connected else max(0.0, self.clock() - self.since)

    def require(self, what: str) -> None:
        """Fail at once with UNAVAILABLE when the shared registry cannot be written."""
        if not self.connected:
            raise ProtocolError(
                ErrorCode.UNAVAILABLE,
                f"cannot {what}: ZooKeeper ({self.cfg.zookeeper}) is {self.state} since "
                f"{self.staleness():.0f} s; reads still answer from this host's cache",
            )

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn`` (a kazoo ``*_async`` method) within the write timeout; kazoo's errors other than connection
        ones propagate (NodeExists, BadVersion, ... mean something to the caller)."""
        return self.wait(what, fn(*args, **kwargs))

    def wait(self, what: str, result: Any) -> Any:
        """The outcome of a kazoo async call already in flight, within the write timeout."""
        try:
            return result.get(timeout=self.cfg.write_timeout_seconds)
        except (KazooTimeoutError, OperationTimeoutError, ConnectionLoss, SessionExpiredError) as exc:
            raise ProtocolError(
                ErrorCode.UNAVAILABLE,
                f"cannot {what}: ZooKeeper did not answer within {self.cfg.write_timeout_seconds:g} s "
                f"({type(exc).__name__})",
            ) from None
