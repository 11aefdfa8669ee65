"""The daemon itself: ping, status, stop, event subscriptions, the audit trail and the doctor."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from daemon import __version__
from daemon.audit import AuditStore
from daemon.deploy.manager import DeploymentManager
from daemon.doctor import run_checks
from daemon.protocol import requests as q
from daemon.protocol import results as r
from daemon.protocol.frames import PROTOCOL_VERSION
from daemon.registry.service import Registry
from daemon.server import Context, EventHub
from daemon.settings import Settings

from .dispatch import handles

if TYPE_CHECKING:
    from daemon.cluster.service import Cluster


class OpsHandlers:
    """``started``: when the daemon started (``time.monotonic()``); ``exporter_url``: None when the exporter
    does not serve; ``cluster``: None when no cluster is configured."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        hub: EventHub,
        audit: AuditStore,
        deployments: DeploymentManager,
        cluster: Cluster | None,
        exporter_url: str | None,
        started: float,
        request_stop: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.hub = hub
        self.audit = audit
        self.deployments = deployments
        self.cluster = cluster
        self.exporter_url = exporter_url
        self.started = started
        self.request_stop = request_stop

    @handles(q.Ping)
    async def ping(self, req: q.Ping, ctx: Context) -> r.Pong:
        return r.Pong(daemon_version=__version__, pid=os.getpid())

    @handles(q.DaemonStatusRequest)
    async def status(self, req: q.DaemonStatusRequest, ctx: Context) -> r.DaemonStatus:
        models, versions, objects, size = await asyncio.to_thread(self.registry.counts)
        s = self.settings
        return r.DaemonStatus(
            daemon_version=__version__,
            protocol=PROTOCOL_VERSION,
            pid=os.getpid(),
            mode=s.mode,
            uptime_seconds=round(time.monotonic() - self.started, 3),
            socket=str(s.socket),
            state_dir=str(s.state_dir),
            database=str(s.state_dir / "registry.db"),
            models=models,
            versions=versions,
            objects=objects,
            object_bytes=size,
            clients=len(self.hub.connections),
            exporter=self.exporter_url,
        )

    @handles(q.DaemonStop)
    async def stop(self, req: q.DaemonStop, ctx: Context) -> r.Ack:
        asyncio.get_running_loop().call_later(0.05, self.request_stop)
        return r.Ack()

    @handles(q.Subscribe)
    async def subscribe(self, req: q.Subscribe, ctx: Context) -> r.Ack:
        ctx.subscribe(set(req.topics))
        return r.Ack()

    @handles(q.AuditRequest)
    async def audit_list(self, req: q.AuditRequest, ctx: Context) -> r.AuditList:
        return r.AuditList(items=await asyncio.to_thread(self.audit.list, req.since, req.user, req.limit))

    @handles(q.DoctorRequest)
    async def doctor(self, req: q.DoctorRequest, ctx: Context) -> r.DoctorReport:
        checks = await run_checks(self.settings, self.deployments, self.cluster, self.exporter_url)
        return r.DoctorReport(checks=checks)
