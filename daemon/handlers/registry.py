"""Models, versions, objects (upload, push, checkout), tags, aliases and gc.

Blocking work (SQLite, hashing, file I/O) runs in threads so the event loop keeps serving other clients.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from daemon.deploy.base import BackendError
from daemon.deploy.manager import DeploymentManager
from daemon.protocol import requests as q
from daemon.protocol import results as r
from daemon.protocol.names import parse_ref
from daemon.readcache import ReadCache
from daemon.registry.inline import InlineUploads
from daemon.registry.service import Registry
from daemon.server import Context, Serialized

from .changes import RegistryChanges
from .dispatch import handles
from .shared import cached_read, check_readable


class RegistryHandlers:
    """The registry's requests; every change ends in :class:`RegistryChanges`."""

    def __init__(
        self,
        registry: Registry,
        changes: RegistryChanges,
        cache: ReadCache,
        ingest_pool: ThreadPoolExecutor,
        deployments: DeploymentManager,
    ) -> None:
        self.registry = registry
        self.changes = changes
        self.cache = cache
        self.ingest_pool = ingest_pool
        self.deployments = deployments
        """gc also prunes the images deployments no longer use."""
        self.inline = InlineUploads(registry.objects.staging_dir, registry.ingest, registry.objects.reuse)
        """objects.put uploads in progress (clients over SSH, which cannot pass descriptors)."""

    # -- models ----------------------------------------------------------------------------------------------
    @handles(q.ListModels)
    async def list_models(self, req: q.ListModels, ctx: Context) -> Serialized:
        index = self.registry.model_index  # caught up on the models changed since it last read
        upto, changed = self.cache.changes, self.cache.changed_since(index.mark)
        return await cached_read(self.cache, req, None, lambda: self.registry.list_models(req, changed, upto))

    @handles(q.GetModel)
    async def get_model(self, req: q.GetModel, ctx: Context) -> Serialized:
        return await cached_read(self.cache, req, [req.name], lambda: self.registry.get_model(req))

    @handles(q.DescribeModel)
    async def describe_model(self, req: q.DescribeModel, ctx: Context) -> r.ModelDetail:
        out = await asyncio.to_thread(self.registry.describe_model, req, ctx.caller.user)
        self.changes.changed("model.described", req.name)
        return out

    @handles(q.RemoveModel)
    async def remove_model(self, req: q.RemoveModel, ctx: Context) -> r.RemoveResult:
        out = await asyncio.to_thread(self.registry.remove_model, req, ctx.caller.user)
        self.changes.changed("model.removed", req.name)
        return out

    # -- versions --------------------------------------------------------------------------------------------
    @handles(q.Log)
    async def log(self, req: q.Log, ctx: Context) -> Serialized:
        return await cached_read(self.cache, req, [req.name], lambda: self.registry.log(req))

    @handles(q.Show)
    async def show(self, req: q.Show, ctx: Context) -> Serialized:
        return await cached_read(self.cache, req, [parse_ref(req.ref).name], lambda: self.registry.show(req))

    @handles(q.Diff)
    async def diff(self, req: q.Diff, ctx: Context) -> Serialized:
        models = [parse_ref(req.a).name, parse_ref(req.b).name]
        return await cached_read(self.cache, req, models, lambda: self.registry.diff(req))

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
            self.changes.changed("version.pushed", out.version.model, out.version.number)
        if req.alias:
            self.changes.changed("alias.moved", out.version.model, out.version.number, req.alias)
        return out

    @handles(q.Upload)
    async def upload(self, req: q.Upload, ctx: Context) -> r.UploadResult:
        for fd in ctx.fds:
            check_readable(fd)
        loop = asyncio.get_running_loop()
        items = await loop.run_in_executor(self.ingest_pool, self._ingest, req.files, ctx)
        return r.UploadResult(items=items)

    @handles(q.PutObject)
    async def put_object(self, req: q.PutObject, ctx: Context) -> r.PutResult:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.ingest_pool, self.inline.put, ctx.caller.uid, req.sha256, req.size,
                                          req.offset, req.chunk())  # fmt: skip

    @handles(q.Push)
    async def push(self, req: q.Push, ctx: Context) -> r.PushResult:
        self.deployments.signing.check_push_alias(req.alias)
        out = await asyncio.to_thread(self.registry.push, req, ctx.caller.user)
        await self.deployments.code_policy.pushed(ctx.caller, out, req.alias)  # [policy] run_code, pickle scan
        return self._pushed(req, out)

    @handles(q.PushFiles)
    async def push_files(self, req: q.PushFiles, ctx: Context) -> r.PushResult:
        self.deployments.signing.check_push_alias(req.alias)
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
        await self.deployments.code_policy.pushed(ctx.caller, out, req.alias)  # [policy] run_code, pickle scan
        return self._pushed(req, out)

    @handles(q.Checkout)
    async def checkout(self, req: q.Checkout, ctx: Context) -> tuple[r.CheckoutResult, list[int]]:
        return await asyncio.to_thread(self.registry.checkout, req)

    @handles(q.Tag)
    async def tag(self, req: q.Tag, ctx: Context) -> r.VersionSummary:
        out = await asyncio.to_thread(self.registry.tag, req, ctx.caller.user)
        self.changes.changed("version.tagged", out.model, out.number)
        return out

    @handles(q.RemoveVersion)
    async def remove_version(self, req: q.RemoveVersion, ctx: Context) -> r.RemoveResult:
        out = await asyncio.to_thread(self.registry.remove_version, req, ctx.caller.user)
        for number in out.removed_versions:
            self.changes.changed("version.removed", out.model, number)
        return out

    # -- aliases ---------------------------------------------------------------------------------------------
    def _alias_moved(self, move: r.AliasEventInfo) -> r.AliasEventInfo:
        if move.changed:  # a no-op alias set moves nothing: no event, so no deployment rolls out again
            self.changes.changed("alias.moved", move.model, move.to_version, move.alias)
        return move

    @handles(q.AliasSet)
    async def alias_set(self, req: q.AliasSet, ctx: Context) -> r.AliasEventInfo:
        await self.deployments.signing.require(req.name, req.version, "promote")
        await self.deployments.code_policy.require_move(ctx.caller, req.name, req.alias, req.version)
        return self._alias_moved(await asyncio.to_thread(self.registry.alias_set, req, ctx.caller.user))

    @handles(q.AliasRemove)
    async def alias_remove(self, req: q.AliasRemove, ctx: Context) -> r.AliasEventInfo:
        return self._alias_moved(await asyncio.to_thread(self.registry.alias_remove, req, ctx.caller.user))

    @handles(q.Rollback)
    async def rollback(self, req: q.Rollback, ctx: Context) -> r.AliasEventInfo:
        # The version the alias moves back to passes what alias_set checks ([signing] require = "promote",
        # [policy] run_code), and the registry moves it there only if that is still the target.
        policy = self.deployments.code_policy
        target = await asyncio.to_thread(policy.rollback_target, req.name, req.alias)
        if target is not None:
            await self.deployments.signing.require(req.name, target, "promote")
        await policy.require_move(ctx.caller, req.name, req.alias, target)
        move = await asyncio.to_thread(self.registry.rollback, req, ctx.caller.user, checked=True, expect=target)
        return self._alias_moved(move)

    @handles(q.AliasHistoryRequest)
    async def alias_history(self, req: q.AliasHistoryRequest, ctx: Context) -> Serialized:
        return await cached_read(self.cache, req, [req.name], lambda: self.registry.alias_history(req))

    # -- store -----------------------------------------------------------------------------------------------
    @handles(q.Gc)
    async def gc(self, req: q.Gc, ctx: Context) -> r.GcResult:
        result = await asyncio.to_thread(self.registry.gc, req)
        try:
            images = await self.deployments.prune_images(dry_run=req.dry_run)
        except BackendError as exc:  # the files are collected: say why images were not
            return result.model_copy(update={"images_note": f"images not checked: {exc}"})
        return result.model_copy(update={"images_removed": images.removed, "image_bytes_removed": images.bytes})
