"""One async handler per request type. No socket code: a handler gets its request and a Context.

Blocking work (SQLite, hashing, file I/O) runs in threads so the event loop keeps serving other clients.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from daemon import __version__
from daemon.access import Access, describe
from daemon.audit import AuditStore
from daemon.deploy.base import BackendError
from daemon.deploy.manager import DeploymentManager
from daemon.doctor import run_checks
from daemon.monitor.alerts import Alerts
from daemon.monitor.service import Monitor
from daemon.protocol import requests as q
from daemon.protocol import results as r
from daemon.protocol.access import allows
from daemon.protocol.alerts import AlertSpec
from daemon.protocol.errors import ErrorCode, ProtocolError, not_found
from daemon.protocol.events import LogEvent, RegistryEvent
from daemon.protocol.frames import MAX_FRAME_BYTES, PROTOCOL_VERSION
from daemon.protocol.names import parse_ref
from daemon.readcache import ReadCache
from daemon.registry.service import Registry
from daemon.server import Context, EventHub, HandlerResult, Serialized
from daemon.settings import Settings

if TYPE_CHECKING:
    from daemon.cluster.service import Cluster
    from daemon.maintain.engine import Maintenance

log = logging.getLogger("modeltuid.handlers")
Q = TypeVar("Q")
O_PATH = getattr(os, "O_PATH", 0o10000000)
Handler = Callable[["Handlers", Any, Context], Awaitable[HandlerResult]]

#: request type → handler; filled by @handles. A test checks it covers every request type exactly once.
HANDLERS: dict[type[Any], Handler] = {}


def handles(kind: type[Q]) -> Callable[[Callable[[Handlers, Q, Context], Awaitable[HandlerResult]]], Handler]:
    def register(fn: Callable[[Handlers, Q, Context], Awaitable[HandlerResult]]) -> Handler:
        if kind in HANDLERS:
            raise RuntimeError(f"two handlers for {kind.__name__}")
        HANDLERS[kind] = fn
        return fn

    return register


def check_readable(fd: int) -> None:
    """Only descriptors opened for reading: an O_PATH or write-only descriptor would let a caller learn
    whether a file it cannot read matches a stored object."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    if flags & O_PATH or flags & os.O_ACCMODE not in (os.O_RDONLY, os.O_RDWR):
        raise ProtocolError(ErrorCode.INVALID, "each uploaded file must be passed open for reading")


class Handlers:
    """The daemon's operations, bound to its services."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        hub: EventHub,
        *,
        client_count: Callable[[], int],
        request_stop: Callable[[], None],
        deployments: DeploymentManager,
    ) -> None:
        self.settings = settings
        self.deployments = deployments
        #: set by the composition root once monitoring runs (None: requests about metrics say it does not)
        self.monitor: Monitor | None = None
        #: the Prometheus exporter's URL while it serves
        self.exporter_url: str | None = None
        #: set by the composition root when a cluster is configured
        self.cluster: Cluster | None = None
        #: set by the composition root (None: maintenance requests say it is not running)
        self.maintenance: Maintenance | None = None
        self.registry = registry
        self.hub = hub
        self.client_count = client_count
        self.request_stop = request_stop
        self.access = Access(settings.access)
        """Roles (``[access]``): the daemon's user and root are admin."""
        #: set by the composition root (None: nothing is audited, as in unit tests of handlers)
        self.audit: AuditStore | None = None
        self.started = time.monotonic()
        self.cache = ReadCache()
        # Long uploads get their own threads, so they never hold up everyone's reads in the default pool.
        self.ingest_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ingest")

    async def _cached(self, req: BaseModel, models: Sequence[str] | None, read: Callable[[], r.Result]) -> Serialized:
        """Serve a read from the cache, or run it in a thread and keep its JSON."""
        key = req.model_dump_json().encode()
        hit = self.cache.get(key, models)
        if hit is not None:
            return Serialized(hit)
        snapshot = self.cache.snapshot(models)
        data = (await asyncio.to_thread(read)).model_dump_json().encode()
        if len(data) < MAX_FRAME_BYTES:  # a result too large to send is refused each time, not kept
            self.cache.put(key, snapshot, data)
        return Serialized(data)

    async def dispatch(self, request: Any, ctx: Context) -> HandlerResult:
        """Authorize (the request type's role against the caller's), run, and audit changes and refusals."""
        handler = HANDLERS.get(type(request))
        if handler is None:
            raise ProtocolError(ErrorCode.UNKNOWN_OP, f"no handler for {type(request).__name__}")
        caller = ctx.caller
        needed = request.role
        role = self.access.role(caller.uid, caller.user, caller.groups)
        if not allows(role, needed):
            message = f"{request.op} needs the {needed} role; {caller.user} has {describe(role)}"
            await self._audit(request, ctx, ErrorCode.FORBIDDEN.value, message)
            raise ProtocolError(ErrorCode.FORBIDDEN, message, {"needs": needed, "role": role})
        if not request.changes_state:
            return await handler(self, request, ctx)
        try:
            result = await handler(self, request, ctx)
        except ProtocolError as exc:
            await self._audit(request, ctx, exc.code.value, exc.message)
            raise
        except Exception as exc:
            await self._audit(request, ctx, ErrorCode.INTERNAL.value, f"{type(exc).__name__}: {exc}")
            raise
        await self._audit(request, ctx, "ok", "")
        return result

    async def _audit(self, request: Any, ctx: Context, result: str, message: str) -> None:
        """Record it; a failing audit write is logged, never turned into the request's failure."""
        if self.audit is None:
            return
        c = ctx.caller
        fields = request.model_dump(mode="json", exclude={"op"})
        try:
            await asyncio.to_thread(self.audit.record, uid=c.uid, user=c.user, pid=c.pid, op=request.op,
                                    fields=fields, result=result, message=message)  # fmt: skip
        except sqlite3.OperationalError as exc:  # a full disk or a busy database: said in one line
            log.warning("could not write the audit entry of %s by %s: %s", request.op, c.user, exc)
        except Exception:
            log.exception("could not write the audit entry of %s by %s", request.op, c.user)

    def event(self, kind: str, model: str, version: int | None = None, alias: str | None = None) -> None:
        """Every change to a model ends here: drop cached reads of it, then tell subscribers."""
        self.cache.invalidate(model)
        event = {"kind": kind, "model": model, "version": version, "alias": alias}
        self.hub.publish(RegistryEvent.model_validate(event))
        if kind == "alias.moved" and alias is not None:
            self.deployments.alias_moved(model, alias, version)

    # -- daemon ----------------------------------------------------------------------------------------------
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
            clients=self.client_count(),
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

    # -- models ----------------------------------------------------------------------------------------------
    @handles(q.ListModels)
    async def list_models(self, req: q.ListModels, ctx: Context) -> Serialized:
        return await self._cached(req, None, lambda: self.registry.list_models(req))

    @handles(q.GetModel)
    async def get_model(self, req: q.GetModel, ctx: Context) -> Serialized:
        return await self._cached(req, [req.name], lambda: self.registry.get_model(req))

    @handles(q.DescribeModel)
    async def describe_model(self, req: q.DescribeModel, ctx: Context) -> r.ModelDetail:
        out = await asyncio.to_thread(self.registry.describe_model, req, ctx.caller.user)
        self.event("model.described", req.name)
        return out

    @handles(q.RemoveModel)
    async def remove_model(self, req: q.RemoveModel, ctx: Context) -> r.RemoveResult:
        out = await asyncio.to_thread(self.registry.remove_model, req, ctx.caller.user)
        self.event("model.removed", req.name)
        return out

    # -- versions --------------------------------------------------------------------------------------------
    @handles(q.Log)
    async def log(self, req: q.Log, ctx: Context) -> Serialized:
        return await self._cached(req, [req.name], lambda: self.registry.log(req))

    @handles(q.Show)
    async def show(self, req: q.Show, ctx: Context) -> Serialized:
        return await self._cached(req, [parse_ref(req.ref).name], lambda: self.registry.show(req))

    @handles(q.Diff)
    async def diff(self, req: q.Diff, ctx: Context) -> Serialized:
        models = [parse_ref(req.a).name, parse_ref(req.b).name]
        return await self._cached(req, models, lambda: self.registry.diff(req))

    def _ingest(self, files: Sequence[q.UploadFile | q.NewFile], ctx: Context) -> list[r.UploadedObject]:
        """Stream each passed descriptor into the store (runs in the ingest pool), reporting progress at
        most ten times a second."""
        total = sum(f.size for f in files)
        done = 0
        last_report = 0.0
        items: list[r.UploadedObject] = []
        for spec, fd in zip(files, ctx.fds, strict=True):
            base = done

            def report(n: int, base: int = base, path: str = spec.path) -> None:
                nonlocal last_report
                now = time.monotonic()
                if now - last_report >= 0.1:
                    last_report = now
                    ctx.progress(base + n, total, path)

            got = self.registry.ingest(fd, spec.size, report)
            done += got.size
            items.append(r.UploadedObject(path=spec.path, sha256=got.sha256, size=got.size, copied=got.copied))
        if total >= 1 << 20:
            ctx.progress(done, total, "")
        return items

    def _pushed(self, req: q.Push | q.PushFiles, out: r.PushResult) -> r.PushResult:
        if out.created:
            self.event("version.pushed", out.version.model, out.version.number)
        if req.alias:
            self.event("alias.moved", out.version.model, out.version.number, req.alias)
        return out

    @handles(q.Upload)
    async def upload(self, req: q.Upload, ctx: Context) -> r.UploadResult:
        for fd in ctx.fds:
            check_readable(fd)
        loop = asyncio.get_running_loop()
        items = await loop.run_in_executor(self.ingest_pool, self._ingest, req.files, ctx)
        return r.UploadResult(items=items)

    @handles(q.Push)
    async def push(self, req: q.Push, ctx: Context) -> r.PushResult:
        return self._pushed(req, await asyncio.to_thread(self.registry.push, req, ctx.caller.user))

    @handles(q.PushFiles)
    async def push_files(self, req: q.PushFiles, ctx: Context) -> r.PushResult:
        for fd in ctx.fds:
            check_readable(fd)

        def ingest_then_push() -> r.PushResult:  # one thread hop for the whole push
            items = self._ingest(req.files, ctx)
            files = [
                q.PushFile(path=i.path, sha256=i.sha256, size=i.size, executable=f.executable)
                for i, f in zip(items, req.files, strict=True)
            ]
            meta = {k: getattr(req, k) for k in q.VersionMeta.model_fields}  # validated already
            out = self.registry.push(q.Push.model_construct(files=files, **meta), ctx.caller.user)
            return out.model_copy(update={"bytes_copied": sum(i.size for i in items if i.copied)})

        out = await asyncio.get_running_loop().run_in_executor(self.ingest_pool, ingest_then_push)
        return self._pushed(req, out)

    @handles(q.Checkout)
    async def checkout(self, req: q.Checkout, ctx: Context) -> tuple[r.CheckoutResult, list[int]]:
        return await asyncio.to_thread(self.registry.checkout, req)

    @handles(q.Tag)
    async def tag(self, req: q.Tag, ctx: Context) -> r.VersionSummary:
        out = await asyncio.to_thread(self.registry.tag, req, ctx.caller.user)
        self.event("version.tagged", out.model, out.number)
        return out

    @handles(q.RemoveVersion)
    async def remove_version(self, req: q.RemoveVersion, ctx: Context) -> r.RemoveResult:
        out = await asyncio.to_thread(self.registry.remove_version, req, ctx.caller.user)
        for number in out.removed_versions:
            self.event("version.removed", out.model, number)
        return out

    # -- aliases ---------------------------------------------------------------------------------------------
    def _alias_moved(self, move: r.AliasEventInfo) -> r.AliasEventInfo:
        if move.changed:  # a no-op alias set moves nothing: no event, so no deployment rolls out again
            self.event("alias.moved", move.model, move.to_version, move.alias)
        return move

    @handles(q.AliasSet)
    async def alias_set(self, req: q.AliasSet, ctx: Context) -> r.AliasEventInfo:
        return self._alias_moved(await asyncio.to_thread(self.registry.alias_set, req, ctx.caller.user))

    @handles(q.AliasRemove)
    async def alias_remove(self, req: q.AliasRemove, ctx: Context) -> r.AliasEventInfo:
        return self._alias_moved(await asyncio.to_thread(self.registry.alias_remove, req, ctx.caller.user))

    @handles(q.Rollback)
    async def rollback(self, req: q.Rollback, ctx: Context) -> r.AliasEventInfo:
        return self._alias_moved(await asyncio.to_thread(self.registry.rollback, req, ctx.caller.user))

    @handles(q.AliasHistoryRequest)
    async def alias_history(self, req: q.AliasHistoryRequest, ctx: Context) -> Serialized:
        return await self._cached(req, [req.name], lambda: self.registry.alias_history(req))

    # -- store -----------------------------------------------------------------------------------------------
    @handles(q.Gc)
    async def gc(self, req: q.Gc, ctx: Context) -> r.GcResult:
        result = await asyncio.to_thread(self.registry.gc, req)
        try:
            images = await self.deployments.prune_images(dry_run=req.dry_run)
        except BackendError as exc:  # the files are collected: say why images were not
            return result.model_copy(update={"images_note": f"images not checked: {exc}"})
        return result.model_copy(update={"images_removed": images.removed, "image_bytes_removed": images.bytes})

    # -- deployments -----------------------------------------------------------------------------------------
    @handles(q.Deploy)
    async def deploy(self, req: q.Deploy, ctx: Context) -> r.DeploymentDetail:
        return await self.deployments.deploy(req, lambda line: ctx.progress(0, 0, line))

    @handles(q.Undeploy)
    async def undeploy(self, req: q.Undeploy, ctx: Context) -> r.DeploymentDetail:
        return await self.deployments.undeploy(req.name)

    @handles(q.ListDeployments)
    async def list_deployments(self, req: q.ListDeployments, ctx: Context) -> r.DeploymentList:
        local = self.deployments.list(req.model)
        if not req.all_hosts:
            return local
        if self.cluster is None:
            return local.model_copy(update={"cluster_state": "disabled", "staleness_seconds": 0.0})
        remote, _, _ = await asyncio.to_thread(self.cluster.remote)
        others = [d for d in remote if d.host_id != self.cluster.id and (req.model is None or d.model == req.model)]
        zk = self.cluster.zk
        return local.model_copy(
            update={"remote": others, "cluster_state": zk.state, "staleness_seconds": round(zk.staleness(), 3)}
        )

    @handles(q.ClusterStatusRequest)
    async def cluster_status(self, req: q.ClusterStatusRequest, ctx: Context) -> r.ClusterStatus:
        if self.cluster is None:
            return r.ClusterStatus(enabled=False)
        return await asyncio.to_thread(self.cluster.status)

    @handles(q.GetDeployment)
    async def get_deployment(self, req: q.GetDeployment, ctx: Context) -> r.DeploymentDetail:
        return await self.deployments.get(req.name, req.events)

    @handles(q.RestartDeployment)
    async def restart_deployment(self, req: q.RestartDeployment, ctx: Context) -> r.DeploymentDetail:
        return await self.deployments.restart(req.name)

    @handles(q.Logs)
    async def logs(self, req: q.Logs, ctx: Context) -> r.LogLines:
        if req.follow:
            ctx.subscribe({LogEvent(deployment=req.name, lines=[]).route})
        return await self.deployments.logs(req)


# -- monitoring ----------------------------------------------------------------------------------------------
@handles(q.MetricsRequest)
async def metrics_get(self: Handlers, req: q.MetricsRequest, ctx: Context) -> r.DeploymentMetrics:
    monitor = self.monitor
    if monitor is None:
        raise ProtocolError(ErrorCode.UNAVAILABLE, "monitoring is not running in this daemon")
    if req.name not in self.deployments.supervisors and not await asyncio.to_thread(monitor.known, req.name):
        raise not_found(f"no deployment named {req.name!r}")
    return await asyncio.to_thread(monitor.metrics, req.name, req.window_seconds)


# -- alerts ----------------------------------------------------------------------------------------------------


def _alerts(self: Handlers) -> Alerts:
    monitor = self.monitor
    alerts = getattr(monitor, "alerts", None)
    if alerts is None:
        raise ProtocolError(ErrorCode.UNAVAILABLE, "alerting is not running in this daemon")
    return alerts  # type: ignore[no-any-return]


def _described(self: Handlers, alerts: Alerts) -> dict[str, tuple[str, int] | None]:
    return {name: alerts.describe(name) for name in list(self.deployments.supervisors)}


def _existing(self: Handlers, name: str) -> None:
    if name not in self.deployments.supervisors:
        raise not_found(f"no deployment named {name!r}")


@handles(q.AlertsListRequest)
async def alerts_list(self: Handlers, req: q.AlertsListRequest, ctx: Context) -> r.AlertList:
    alerts = _alerts(self)
    return await asyncio.to_thread(alerts.list, req.deployment, req.history)


@handles(q.AlertRulesRequest)
async def alerts_rules(self: Handlers, req: q.AlertRulesRequest, ctx: Context) -> r.AlertRuleList:
    alerts = _alerts(self)
    if req.deployment is not None:
        _existing(self, req.deployment)
        described = {req.deployment: alerts.describe(req.deployment)}
        out = await asyncio.to_thread(alerts.rules, described)
        return r.AlertRuleList(items=[i for i in out.items if i.deployment == req.deployment])
    return await asyncio.to_thread(alerts.rules, _described(self, alerts))


@handles(q.AlertAdd)
async def alerts_add(self: Handlers, req: q.AlertAdd, ctx: Context) -> r.AlertRuleList:
    alerts = _alerts(self)
    _existing(self, req.deployment)
    try:
        spec = AlertSpec(rule=req.rule, severity=req.severity, name=req.name, window=req.window_seconds)
    except ValueError as exc:
        raise ProtocolError(ErrorCode.INVALID, str(exc)) from None
    return await asyncio.to_thread(alerts.add, req.deployment, alerts.describe(req.deployment), spec)


@handles(q.AlertRemove)
async def alerts_rm(self: Handlers, req: q.AlertRemove, ctx: Context) -> r.AlertRuleList:
    alerts = _alerts(self)
    _existing(self, req.deployment)
    try:
        return await asyncio.to_thread(alerts.remove, req.deployment, alerts.describe(req.deployment), req.name)
    except KeyError:
        raise not_found(f"deployment {req.deployment!r} has no alert rule named {req.name!r}") from None


def _maintenance(self: Handlers) -> Maintenance:
    if self.maintenance is None:
        raise ProtocolError(ErrorCode.UNAVAILABLE, "maintenance is not running in this daemon")
    return self.maintenance


@handles(q.MaintainSet)
async def maintain_set(self: Handlers, req: q.MaintainSet, ctx: Context) -> r.MaintainPolicyInfo:
    maintenance = _maintenance(self)
    info = await asyncio.to_thread(maintenance.set_policy, req, ctx.caller.user)
    maintenance.reschedule(info)
    return info


@handles(q.MaintainPolicyRequest)
async def maintain_policy(self: Handlers, req: q.MaintainPolicyRequest, ctx: Context) -> r.MaintainPolicyInfo:
    return await asyncio.to_thread(_maintenance(self).policy, req.name)


@handles(q.MaintainRunNow)
async def maintain_run_now(self: Handlers, req: q.MaintainRunNow, ctx: Context) -> r.MaintainRunInfo:
    return await _maintenance(self).run_now(req.name, trigger=f"manual ({ctx.caller.user})")


@handles(q.MaintainRuns)
async def maintain_runs(self: Handlers, req: q.MaintainRuns, ctx: Context) -> r.MaintainRunList:
    items = await asyncio.to_thread(_maintenance(self).store.list, req.name, req.limit)
    return r.MaintainRunList(items=items)


@handles(q.MaintainShow)
async def maintain_show(self: Handlers, req: q.MaintainShow, ctx: Context) -> r.MaintainRunInfo:
    run = await asyncio.to_thread(_maintenance(self).store.get, req.run)
    if run is None:
        raise not_found(f"no maintenance run {req.run}")
    return run


@handles(q.MaintainDecide)
async def maintain_decide(self: Handlers, req: q.MaintainDecide, ctx: Context) -> r.MaintainRunInfo:
    return await _maintenance(self).decide(req, ctx.caller.user)


@handles(q.MaintainCancel)
async def maintain_cancel(self: Handlers, req: q.MaintainCancel, ctx: Context) -> r.MaintainRunInfo:
    return await _maintenance(self).cancel(req, ctx.caller.user)


@handles(q.MaintainPause)
async def maintain_pause(self: Handlers, req: q.MaintainPause, ctx: Context) -> r.MaintainPauseInfo:
    return await asyncio.to_thread(_maintenance(self).pause, req, ctx.caller.user)


@handles(q.AuditRequest)
async def audit_list(self: Handlers, req: q.AuditRequest, ctx: Context) -> r.AuditList:
    if self.audit is None:
        raise ProtocolError(ErrorCode.UNAVAILABLE, "the audit trail is not kept by this daemon")
    return r.AuditList(items=await asyncio.to_thread(self.audit.list, req.since, req.user, req.limit))


@handles(q.DoctorRequest)
async def doctor(self: Handlers, req: q.DoctorRequest, ctx: Context) -> r.DoctorReport:
    checks = await run_checks(self.settings, self.deployments, self.cluster, self.exporter_url)
    return r.DoctorReport(checks=checks)
