"""Monitoring: a deployment's metrics, its alerts and alert rules."""

from __future__ import annotations

import asyncio

from daemon.deploy.manager import DeploymentManager
from daemon.monitor.alerts import Alerts
from daemon.monitor.service import Monitor
from daemon.protocol import requests as q
from daemon.protocol import results as r
from daemon.protocol.alerts import AlertSpec
from daemon.protocol.errors import ErrorCode, ProtocolError, not_found
from daemon.server import Context

from .dispatch import handles


class MonitoringHandlers:
    """Metrics and alerts of the deployments; a deployment's rules need it to exist here."""

    def __init__(self, monitor: Monitor, alerts: Alerts, deployments: DeploymentManager) -> None:
        self.monitor = monitor
        self.alerts = alerts
        self.deployments = deployments

    def _existing(self, name: str) -> None:
        if not self.deployments.exists(name):
            raise not_found(f"no deployment named {name!r}")

    @handles(q.MetricsRequest)
    async def metrics_get(self, req: q.MetricsRequest, ctx: Context) -> r.DeploymentMetrics:
        """A deployment removed since is still known to the monitor: its metrics are kept."""
        if not self.deployments.exists(req.name) and not await asyncio.to_thread(self.monitor.known, req.name):
            raise not_found(f"no deployment named {req.name!r}")
        return await asyncio.to_thread(self.monitor.metrics, req.name, req.window_seconds)

    @handles(q.AlertsListRequest)
    async def alerts_list(self, req: q.AlertsListRequest, ctx: Context) -> r.AlertList:
        return await asyncio.to_thread(self.alerts.list, req.deployment, req.history)

    @handles(q.AlertRulesRequest)
    async def alerts_rules(self, req: q.AlertRulesRequest, ctx: Context) -> r.AlertRuleList:
        alerts = self.alerts
        if req.deployment is not None:
            self._existing(req.deployment)
            described = {req.deployment: alerts.describe(req.deployment)}
            out = await asyncio.to_thread(alerts.rules, described)
            return r.AlertRuleList(items=[i for i in out.items if i.deployment == req.deployment])
        every = {name: alerts.describe(name) for name in self.deployments.names()}
        return await asyncio.to_thread(alerts.rules, every)

    @handles(q.AlertAdd)
    async def alerts_add(self, req: q.AlertAdd, ctx: Context) -> r.AlertRuleList:
        self._existing(req.deployment)
        try:
            spec = AlertSpec(rule=req.rule, severity=req.severity, name=req.name, window=req.window_seconds)
        except ValueError as exc:
            raise ProtocolError(ErrorCode.INVALID, str(exc)) from None
        described = self.alerts.describe(req.deployment)
        return await asyncio.to_thread(self.alerts.add, req.deployment, described, spec)

    @handles(q.AlertRemove)
    async def alerts_rm(self, req: q.AlertRemove, ctx: Context) -> r.AlertRuleList:
        self._existing(req.deployment)
        described = self.alerts.describe(req.deployment)
        try:
            return await asyncio.to_thread(self.alerts.remove, req.deployment, described, req.name)
        except KeyError:
            raise not_found(f"deployment {req.deployment!r} has no alert rule named {req.name!r}") from None
