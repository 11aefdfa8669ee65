"""Maintenance: policies, runs (start, list, show, approve or reject, cancel) and pausing."""

from __future__ import annotations

import asyncio

from daemon.maintain.engine import Maintenance
from daemon.protocol import requests as q
from daemon.protocol import results as r
from daemon.protocol.errors import not_found
from daemon.registry.codepolicy import CodePolicy
from daemon.server import Context

from .dispatch import handles


class MaintenanceHandlers:
    def __init__(self, maintenance: Maintenance, code_policy: CodePolicy) -> None:
        self.maintenance = maintenance
        self.code_policy = code_policy

    @handles(q.MaintainSet)
    async def maintain_set(self, req: q.MaintainSet, ctx: Context) -> r.MaintainPolicyInfo:
        if "command" in req.set:  # [policy] run_code: who chooses a command the daemon's hosts run
            self.code_policy.require_command(ctx.caller, req.name, "command")
        info = await asyncio.to_thread(self.maintenance.set_policy, req, ctx.caller.user)
        self.maintenance.reschedule(info)
        return info

    @handles(q.MaintainPolicyRequest)
    async def maintain_policy(self, req: q.MaintainPolicyRequest, ctx: Context) -> r.MaintainPolicyInfo:
        return await asyncio.to_thread(self.maintenance.policy, req.name)

    @handles(q.MaintainRunNow)
    async def maintain_run_now(self, req: q.MaintainRunNow, ctx: Context) -> r.MaintainRunInfo:
        champion = (await asyncio.to_thread(self.maintenance.policy, req.name)).champion  # [policy] run_code
        await self.code_policy.require(ctx.caller, req.name, champion, "train", training=True)
        return await self.maintenance.run_now(req.name, trigger=f"manual ({ctx.caller.user})")

    @handles(q.MaintainRuns)
    async def maintain_runs(self, req: q.MaintainRuns, ctx: Context) -> r.MaintainRunList:
        items = await asyncio.to_thread(self.maintenance.store.list, req.name, req.limit)
        return r.MaintainRunList(items=items)

    @handles(q.MaintainShow)
    async def maintain_show(self, req: q.MaintainShow, ctx: Context) -> r.MaintainRunInfo:
        run = await asyncio.to_thread(self.maintenance.store.get, req.run)
        if run is None:
            raise not_found(f"no maintenance run {req.run}")
        return run

    @handles(q.MaintainDecide)
    async def maintain_decide(self, req: q.MaintainDecide, ctx: Context) -> r.MaintainRunInfo:
        run = await asyncio.to_thread(self.maintenance.store.get, req.run) if req.approve else None
        if run is not None:  # [policy] run_code: promoting rolls the challenger's code out
            await self.code_policy.require(ctx.caller, run.model, run.challenger, "promote")
        return await self.maintenance.decide(req, ctx.caller.user)

    @handles(q.MaintainCancel)
    async def maintain_cancel(self, req: q.MaintainCancel, ctx: Context) -> r.MaintainRunInfo:
        return await self.maintenance.cancel(req, ctx.caller.user)

    @handles(q.MaintainPause)
    async def maintain_pause(self, req: q.MaintainPause, ctx: Context) -> r.MaintainPauseInfo:
        return await asyncio.to_thread(self.maintenance.pause, req, ctx.caller.user)
