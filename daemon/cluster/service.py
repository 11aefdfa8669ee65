"""The cluster as the daemon sees it: one ZooKeeper session, the registry mirror, presence and elections.

Started after the registry and the deployment manager, stopped before them. Nothing here blocks the event
loop: kazoo calls run in threads, its listeners only schedule work on the loop. When ZooKeeper is away the
daemon keeps serving from its cache; ``status`` says how stale it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from daemon.protocol import results as r
from daemon.protocol.deploy import DeploymentInfo
from daemon.registry.service import Registry
from daemon.settings import Settings

from .artifacts import ArtifactStore
from .layout import DeploymentNode, HostNode, Paths
from .mirror import Mirror
from .presence import Presence
from .zk import Zk

log = logging.getLogger("modeltuid.cluster")

#: The election every daemon stands in, for work that must run once in the cluster; besides it, one per model
#: the daemon has deployments of (``model-<name>``: that model's maintenance runs on its leader).
JOBS = "jobs"


def elections(deployments: list[DeploymentNode]) -> tuple[str, ...]:
    return (JOBS, *sorted({f"model-{d.model}" for d in deployments}))


#: Presence is refreshed this often (and at each (re)connection).
REFRESH_S = 2.0


def host_id(state_dir: Path, host: str) -> str:
    """This daemon's id in the cluster: its host name and a random suffix kept in the state directory (two
    daemons on one machine are two members; a restarted daemon is the same one)."""
    path = state_dir / "cluster-id"
    try:
        got = path.read_text().strip()
        if re.fullmatch(r"[A-Za-z0-9._-]{1,200}", got):
            return got
    except FileNotFoundError:
        pass
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", host)[:100] or "host"
    new = f"{safe}-{secrets.token_hex(4)}"
    tmp = path.with_name(".cluster-id.tmp")
    tmp.write_text(new + "\n")
    os.replace(tmp, path)
    return new


def deployment_nodes(items: list[DeploymentInfo], host_id: str, host: str) -> list[DeploymentNode]:
    """This daemon's deployments as it registers them (the ones that should run)."""
    return [
        DeploymentNode(
            name=d.name,
            host_id=host_id,
            host=host,
            model=d.model,
            version=d.version,
            ref=d.ref,
            backend=d.backend,
            state=d.state,
            health=d.health,
            endpoint=d.endpoint or "",
        )
        for d in items
        if d.desired == "running"
    ]


def _dt(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, UTC)


class Cluster:
    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        *,
        deployments: Callable[[], list[DeploymentNode]],
        notify: Callable[[str, str, int | None, str | None], None],
        capabilities: list[str],
        version: str,
    ) -> None:
        cfg = settings.cluster
        self.cfg = cfg
        self.settings = settings
        self.host = cfg.host or socket.gethostname()
        self.id = host_id(settings.state_dir, self.host)
        self.paths = Paths(cfg.chroot)
        self.registry_address = cfg.registry or settings.docker.registry
        secret = settings.zk_credentials
        self.zk = Zk(cfg, asyncio.get_running_loop(), credentials=secret.get_secret_value() if secret else None)
        access = settings.registry_access(self.registry_address)
        artifacts = ArtifactStore(self.registry_address, access=access) if self.registry_address else None
        self.mirror = Mirror(self.zk, self.paths, registry, artifacts, host=self.id, notify=notify)
        started = datetime.now(UTC)
        self.presence = Presence(
            self.zk,
            self.paths,
            self.id,
            lambda: HostNode(
                id=self.id,
                host=self.host,
                pid=os.getpid(),
                socket=str(settings.socket),
                capabilities=capabilities,
                started_at=started,
                version=version,
            ),
            deployments,
            elections,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._refresh = asyncio.Event()
        self.registry = registry

    async def start(self) -> None:
        self.zk.listeners.append(self._state_changed)
        self.zk.start()
        self.registry.shared = self.mirror
        self._tasks = [
            asyncio.create_task(self.mirror.run(), name="cluster-sync"),
            asyncio.create_task(self._presence_loop(), name="cluster-presence"),
        ]
        auth = "digest credential" if self.zk.acl else 'no credential (zk_auth = "none")'
        log.info("cluster: member %s, ZooKeeper %s%s, %s", self.id, self.cfg.zookeeper, self.cfg.chroot, auth)

    def _state_changed(self, state: str, new_session: bool) -> None:
        if state == "connected":
            self.mirror.mark_all()
            self._refresh.set()

    async def _presence_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._refresh.wait(), REFRESH_S)
            self._refresh.clear()
            if not self.zk.connected:
                continue
            try:
                await asyncio.to_thread(self.presence.refresh)
            except Exception as exc:  # away again, or a node we could not write: next round
                log.warning("cluster presence not refreshed: %s", exc)

    async def stop(self) -> None:
        self.registry.shared = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.zk.connected:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.presence.leave)
        self.zk.cancel_check()
        await asyncio.to_thread(self.zk.stop)

    def is_leader(self, job: str) -> bool:
        return self.presence.is_leader(job)

    # -- reading -----------------------------------------------------------------------------------------

    def remote(self) -> tuple[list[r.RemoteDeployment], list[r.ClusterHost], int]:
        """Blocking: every daemon and deployment registered now (empty when ZooKeeper is away)."""
        if not self.zk.connected:
            return [], [], 0
        hosts, deployments, bad = self.presence.hosts()
        return (
            [r.RemoteDeployment(**d.model_dump(exclude={"host_id"}), host_id=d.host_id) for d in deployments],
            [r.ClusterHost(**h.model_dump(exclude={"version"}), this=h.id == self.id) for h in hosts],
            bad,
        )

    def status(self) -> r.ClusterStatus:
        """Blocking (reads ZooKeeper when connected)."""
        deployments, hosts, bad = self.remote()
        if self.zk.connected:
            self.presence.read_leaders()
        leaders = dict(self.presence.leaders) if self.zk.connected else dict.fromkeys(self.presence.leaders)
        return r.ClusterStatus(
            enabled=True,
            zookeeper=self.cfg.zookeeper,
            chroot=self.cfg.chroot,
            state=self.zk.shown_state,
            problem=self.zk.refused if self.zk.shown_state == "refused" else "",
            since=_dt(self.zk.since),
            staleness_seconds=round(self.zk.staleness(), 3),
            session=None if self.zk.session is None else f"{self.zk.session:#x}",
            host_id=self.id,
            host=self.host,
            registry=self.registry_address,
            hosts=sorted(hosts, key=lambda h: h.id),
            deployments=sorted(deployments, key=lambda d: (d.name, d.host_id)),
            leaders=leaders,
            last_sync=_dt(self.mirror.last_sync),
            ignored_nodes=self.mirror.skipped + bad,
        )
