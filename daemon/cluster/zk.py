"""The daemon's ZooKeeper session (kazoo), its state as the event loop sees it, and bounded calls.

kazoo calls state listeners on its own connection thread and they must not block: the listener only hands
the new state to the event loop (``call_soon_threadsafe``). Everything else here is blocking and runs in a
worker thread. A write that needs ZooKeeper checks the state first and fails at once with ``UNAVAILABLE``
when the session is not connected, and any call is bounded by ``write_timeout_seconds``.

Credentials (``[cluster] zk_auth = "digest"``): the session authenticates as ``user:password`` and every node
it creates (through kazoo's ``default_acl``: ``create``, ``ensure_path``, ``makepath`` parents, transactions)
carries one ACL, all permissions for that digest identity and nothing for anyone else. ZooKeeper accepts any
digest credential (a wrong password is just another identity), so after each connection the session checks
that it may read and write the chroot before anything uses it: refused (``NoAuth``), the cluster says so
naming the setting and the daemon serves from its cache as when ZooKeeper is away. A world-open tree (made
before credentials were set) is locked on the way: every node under the chroot gets the ACL, top-down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kazoo.client import KazooClient
from kazoo.exceptions import (
    AuthFailedError,
    ConnectionLoss,
    KazooException,
    NoAuthError,
    NoNodeError,
    OperationTimeoutError,
    SessionClosedRequireSaslError,
    SessionExpiredError,
)
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import KazooState
from kazoo.retry import KazooRetry
from kazoo.security import ACL, make_digest_acl

from daemon.protocol.errors import ErrorCode, ProtocolError
from daemon.settings import ClusterSection

log = logging.getLogger("modeltuid.cluster")

T = TypeVar("T")

#: States as reported by ``cluster status``.
CONNECTING, CONNECTED, SUSPENDED, LOST = "connecting", "connected", "suspended", "lost"
#: Connected, but ZooKeeper refuses this daemon's credential (or its lack of one) on the chroot.
REFUSED = "refused"
#: How often a refused or failed access check is tried again while connected.
RECHECK_S = 10.0


def digest_acl(credentials: str) -> list[ACL]:
    """All permissions for the digest identity of ``user:password``, nothing for anyone else."""
    user, _, password = credentials.partition(":")
    return [make_digest_acl(user, password, all=True)]


def tls_options(cfg: ClusterSection) -> dict[str, Any]:
    """kazoo's TLS arguments for ``[cluster] zk_tls``: the server's certificate and host name are verified."""
    if not cfg.zk_tls:
        return {}
    return {"use_ssl": True, "verify_certs": True, "check_hostname": True, "ca": cfg.zk_ca_file or None}


def is_world_open(acls: list[ACL]) -> bool:
    return any(a.id.scheme == "world" and a.id.id == "anyone" for a in acls)


class Zk:
    def __init__(
        self,
        cfg: ClusterSection,
        loop: asyncio.AbstractEventLoop,
        *,
        credentials: str | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.cfg = cfg
        self.loop = loop
        self.clock = clock
        self.acl = digest_acl(credentials) if credentials else None
        """The ACL of every node this daemon creates (None: ``zk_auth = "none"``, world-open as ZooKeeper makes)."""
        self.client = KazooClient(
            hosts=cfg.zookeeper,
            timeout=cfg.session_timeout_seconds,
            connection_retry=KazooRetry(max_tries=-1, delay=0.2, max_delay=2.0),
            command_retry=KazooRetry(max_tries=2, delay=0.1, deadline=cfg.write_timeout_seconds),
            auth_data=[("digest", credentials)] if credentials else None,
            default_acl=self.acl,
            **tls_options(cfg),
        )
        self.refused = ""
        """Why ZooKeeper refuses this daemon's access to the chroot ("" = it does not, or not checked yet)."""
        self.closes_sessions = False
        """The refusal is SASL enforcement: the server closes every session at its first request, so the
        suspensions that follow are its answer, not an outage (status keeps saying refused, logs stay quiet)."""
        self.verified: int | None = None
        """The session whose access check passed (the session is usable only once it has)."""
        self._generation = 0
        self._checking: asyncio.Task[None] | None = None
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
            level = logging.DEBUG if self.closes_sessions else logging.INFO
            log.log(level, "ZooKeeper %s%s", new, " (new session)" if new_session else "")
            self.state, self.since = new, self.clock()
        self._generation += 1
        self.verified = None
        if new == CONNECTED:  # the listeners hear of it once the access check passed
            self._checking = self.loop.create_task(self._check(self._generation, new_session), name="cluster-access")
            return
        self._tell(new, new_session)

    async def _check(self, generation: int, new_session: bool) -> None:
        """Check (and keep checking while refused) this session's access; then tell the listeners."""
        failures = 0
        while generation == self._generation:
            try:
                await asyncio.to_thread(self.check_access)
            except (NoAuthError, AuthFailedError, SessionClosedRequireSaslError) as exc:
                refused = self._refusal(exc)
                self.closes_sessions = isinstance(exc, SessionClosedRequireSaslError)
                if refused != self.refused:
                    log.error("%s", refused)
                self.refused = refused
            except Exception as exc:  # a connection loss mid-check (a state change follows), a timeout
                failures += 1
                log.log(logging.WARNING if failures == 1 else logging.DEBUG,
                        "ZooKeeper access check failed (%s); trying again", exc)  # fmt: skip
            else:
                if generation == self._generation:
                    if self.refused:
                        log.info("ZooKeeper now grants access to %s", self.cfg.chroot)
                    self.refused, self.verified, self.closes_sessions = "", self.session, False
                    self._tell(CONNECTED, new_session)
                return
            await asyncio.sleep(RECHECK_S if self.refused else 1.0)

    def _refusal(self, exc: Exception) -> str:
        if isinstance(exc, SessionClosedRequireSaslError):
            return (
                "ZooKeeper requires SASL authentication (enforce.auth.schemes) and closes this session: modeltui "
                'authenticates with digest ([cluster] zk_auth = "digest"): let the ensemble accept digest too; '
                "serving from this host's cache"
            )
        if isinstance(exc, AuthFailedError):
            return (
                "ZooKeeper rejected the credential of [cluster] zk_credentials_file (or MODELTUI_ZK_CREDENTIALS) "
                "(AUTH_FAILED); serving from this host's cache"
            )
        if self.acl is None:
            how = (
                '[cluster] zk_auth = "none" but its nodes need a credential: set zk_auth = "digest" and '
                "zk_credentials_file (or MODELTUI_ZK_CREDENTIALS) to the cluster's credential"
            )
        else:
            how = (
                "its nodes were made with another credential than this daemon's [cluster] zk_credentials_file "
                "(or MODELTUI_ZK_CREDENTIALS): every daemon of a cluster needs the same user:password"
            )
        return f"ZooKeeper refuses access to {self.cfg.chroot} (NoAuth): {how}; serving from this host's cache"

    def check_access(self) -> None:
        """Blocking: make the chroot if missing, prove this session may read and write it (NoAuthError if not),
        and lock a world-open tree when this daemon has a credential."""
        client, root = self.client, self.cfg.chroot
        self.wait("check access", client.ensure_path_async(root))
        acls, _ = self.wait("check access", client.get_acls_async(root))
        self.wait("check access", client.get_children_async(root))
        if self.acl is not None and is_world_open(acls):
            log.warning("ZooKeeper nodes under %s are open to anyone: setting this credential's ACL on them", root)
            locked = self.lock_tree(root)
            log.info("ZooKeeper: %d nodes under %s locked to this cluster's credential", locked, root)

    def lock_tree(self, root: str) -> int:
        """Blocking: give every node under ``root`` this daemon's ACL, each subtree parents before children (a
        node made meanwhile under a node already locked needs the credential), and ``root`` last, so that an
        interrupted run leaves it world-open and the next start does it again. Returns how many were set."""
        count = sum(self._lock_subtree(f"{root}/{c}") for c in self._children(root))
        self.wait("lock the cluster's nodes", self.client.set_acls_async(root, self.acl))
        for child in self._children(root):  # made meanwhile directly under the root
            acls, _ = self.wait("lock the cluster's nodes", self.client.get_acls_async(f"{root}/{child}"))
            if is_world_open(acls):
                count += self._lock_subtree(f"{root}/{child}")
        return count + 1

    def _children(self, path: str) -> list[str]:
        try:
            return list(self.wait("lock the cluster's nodes", self.client.get_children_async(path)))
        except NoNodeError:
            return []

    def _lock_subtree(self, top: str) -> int:
        count, todo = 0, [top]
        while todo:
            path = todo.pop()
            try:
                self.wait("lock the cluster's nodes", self.client.set_acls_async(path, self.acl))
            except NoNodeError:  # an ephemeral node gone meanwhile
                continue
            count += 1
            todo.extend(f"{path}/{c}" for c in self._children(path))
        return count

    def _tell(self, new: str, new_session: bool) -> None:
        for fn in list(self.listeners):
            try:
                fn(new, new_session)
            except Exception:
                log.exception("cluster state listener failed")

    def start(self) -> None:
        """Connect in the background: the daemon serves from its cache until ZooKeeper answers."""
        self.client.start_async()

    def cancel_check(self) -> None:
        """On the event loop, before :meth:`stop`: no access check runs on."""
        self._generation += 1
        if self._checking is not None:
            self._checking.cancel()

    def stop(self) -> None:
        """Blocking: close the session (ephemeral nodes go at once)."""
        self._generation += 1  # a check in flight gives up
        try:
            self.client.stop()
            self.client.close()
        except KazooException:
            log.debug("closing the ZooKeeper session failed", exc_info=True)

    @property
    def connected(self) -> bool:
        """Connected, and this session's access check passed: the shared registry can be used."""
        return self.state == CONNECTED and self.client.connected and self.verified == self.session

    @property
    def shown_state(self) -> str:
        """The state ``cluster status`` reports: ``refused`` while ZooKeeper refuses the credential."""
        return REFUSED if self._refusing else self.state

    @property
    def _refusing(self) -> bool:
        return bool(self.refused) and (self.state == CONNECTED or (self.state == SUSPENDED and self.closes_sessions))

    def staleness(self) -> float:
        """Seconds the cache may be behind ZooKeeper: 0 while connected, else since the connection was lost."""
        return 0.0 if self.connected else max(0.0, self.clock() - self.since)

    def require(self, what: str) -> None:
        """Fail at once with UNAVAILABLE when the shared registry cannot be written."""
        if self._refusing:
            raise ProtocolError(ErrorCode.UNAVAILABLE, f"cannot {what}: {self.refused}")
        if self.state == CONNECTED and not self.connected:
            raise ProtocolError(
                ErrorCode.UNAVAILABLE,
                f"cannot {what}: ZooKeeper ({self.cfg.zookeeper}) is checking this daemon's access; try again",
            )
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
