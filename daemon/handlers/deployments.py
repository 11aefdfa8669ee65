"""Deployments: deploy, undeploy, list (here or on every host of the cluster), get, restart, logs."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from daemon.deploy.manager import DeploymentManager
from daemon.protocol import requests as q
from daemon.protocol import results as r
from daemon.protocol.events import LogEvent
from daemon.server import Context

from .dispatch import handles

if TYPE_CHECKING:
    from daemon.cluster.service import Cluster


class DeploymentHandlers:
    """The deployment manager's requests. ``cluster``: None when no cluster is configured."""

    def __init__(self, deployments: DeploymentManager, cluster: Cluster | None) -> None:
        self.deployments = deployments
        self.cluster = cluster

    @handles(q.Deploy)
    async def deploy(self, req: q.Deploy, ctx: Context) -> r.DeploymentDetail:
        await self.deployments.code_policy.require_ref(ctx.caller, req.ref, "deploy")  # [policy] run_code
        return await self.deployments.deploy(req, lambda line: ctx.progress(0, 0, line), ctx.caller.user)

    @handles(q.Undeploy)
    async def undeploy(self, req: q.Undeploy, ctx: Context) -> r.DeploymentDetail:
        return await self.deployments.undeploy(req.name)

    @handles(q.ListDeployments)
    async def list_deployments(self, req: q.ListDeployments, ctx: Context) -> r.DeploymentList:
        local = self.deployments.list(req.model)
        if not req.all_hosts:
            return local
        cluster = self.cluster
        if cluster is None:
            return local.model_copy(update={"cluster_state": "disabled", "staleness_seconds": 0.0})
        remote, _, _ = await asyncio.to_thread(cluster.remote)
        others = [d for d in remote if d.host_id != cluster.id and (req.model is None or d.model == req.model)]
        zk = cluster.zk
        return local.model_copy(
            update={"remote": others, "cluster_state": zk.state, "staleness_seconds": round(zk.staleness(), 3)}
        )

    @handles(q.GetDeployment)
    async def get_deployment(self, req: q.GetDeployment, ctx: Context) -> r.DeploymentDetail:
        return await self.deployments.get(req.name, req.events)

    @handles(q.RestartDeployment)
    async def restart_deployment(self, req: q.RestartDeployment, ctx: Context) -> r.DeploymentDetail:
        return await self.deployments.restart(req.name)

    @handles(q.DeploymentTokenStatus)
    async def token_status(self, req: q.DeploymentTokenStatus, ctx: Context) -> r.DeploymentToken:
        return await self.deployments.token(req.name, reveal=False)

    @handles(q.RotateDeploymentToken)
    async def rotate_token(self, req: q.RotateDeploymentToken, ctx: Context) -> r.DeploymentToken:
        return await self.deployments.rotate_token(req.name)

    @handles(q.UseDeploymentToken)
    async def use_token(self, req: q.UseDeploymentToken, ctx: Context) -> r.DeploymentToken:
        return await self.deployments.token(req.name, reveal=True)

    @handles(q.Logs)
    async def logs(self, req: q.Logs, ctx: Context) -> r.LogLines:
        if req.follow:
            ctx.subscribe({LogEvent(deployment=req.name, lines=[]).route})
        return await self.deployments.logs(req)
