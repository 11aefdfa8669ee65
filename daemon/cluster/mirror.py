"""The registry shared through ZooKeeper: publishing this host's writes, and mirroring the others' into the cache.

Publishing (:class:`SharedRegistry` for ``daemon.registry.service``, blocking, in the registry's worker thread):
a push uploads the version's files to the OCI registry first, then creates its version node inside the local
transaction (a number already taken on another host → ``CONFLICT``); an alias move is one ZooKeeper
transaction that checks the alias node's version (compare-and-set: two hosts moving the same alias at once →
one wins, the other gets ``CONFLICT``) and appends the move to the model's sequential history.

Mirroring: one-shot watches on ``/models``, each model's ``versions`` and ``history`` only mark the model dirty
(kazoo's thread never blocks); the event loop debounces and syncs dirty models in a thread: new versions
into the cache, history entries past the last one applied (recorded in ``cluster_sync``), then the aliases
exactly as ZooKeeper has them. A full sync runs at every (re)connection, so the cache converges without
manual steps. Node data is validated (``layout.decode``); a bad node is skipped with a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError, RolledBackError
from kazoo.protocol.states import WatchedEvent

from daemon.protocol import requests as q
from daemon.protocol import results as r
from daemon.protocol.errors import ErrorCode, ProtocolError, conflict
from daemon.protocol.names import check_model_name
from daemon.registry.service import Registry

from .artifacts import ArtifactError, ArtifactFile, ArtifactStore
from .layout import (
    AliasMoveNode,
    AliasNode,
    BadNode,
    ChangeNode,
    FileNode,
    Paths,
    VersionNode,
    decode,
    decode_history,
    encode,
    history_seq,
    version_number,
)
from .zk import Zk

log = logging.getLogger("modeltuid.cluster")

#: After a sync, the next waits at least this long (a burst of changes becomes one sync; the first change of
#: a quiet spell is synced at once).
DEBOUNCE_S = 0.05
#: A push whose number other hosts keep taking gives up after this many tries (CONFLICT).
MAX_NUMBER_TRIES = 10
#: A model whose sync failed (ZooKeeper away) is retried after this long.
RETRY_S = 1.0


class Mirror:
    def __init__(
        self,
        zk: Zk,
        paths: Paths,
        registry: Registry,
        artifacts: ArtifactStore | None,
        *,
        host: str,
        notify: Callable[[str, str, int | None, str | None], None],
    ) -> None:
        self.zk = zk
        self.paths = paths
        self.registry = registry
        self.artifacts = artifacts
        self.host = host
        self.notify = notify
        """Called on the event loop with (kind, model, version, alias) for each change applied."""
        self.last_sync: float | None = None
        """When the cache last matched ZooKeeper completely (a full sync without error)."""
        self.skipped = 0
        """Nodes ignored as invalid (logged)."""
        self._dirty: set[str] = set()
        self._all = True
        self._wake = asyncio.Event()

    # -- publishing (SharedRegistry) ---------------------------------------------------------------------

    def require(self, what: str) -> None:
        self.zk.require(what)

    def upload(self, model: str, digest: str, files: list[q.PushFile], open_file: Callable[[str], BinaryIO]) -> None:
        if self.artifacts is None:
            return
        arts = [ArtifactFile(f.path, f.sha256, f.size, f.executable) for f in files]
        try:
            self.artifacts.push(model, digest, arts, open_file)
        except ArtifactError as exc:
            raise ProtocolError(ErrorCode.UNAVAILABLE, f"cannot share the version's files: {exc}") from None

    def publish_version(self, model: str, number: int, values: dict[str, Any], files: list[q.PushFile]) -> int:
        """Create the version node at ``number`` or, when another host took it meanwhile, at the first free
        number after every existing one; returns the number used."""
        what = "push to the shared registry"
        client = self.zk.client
        fields = {k: v for k, v in values.items() if k in VersionNode.model_fields and k not in ("files", "host")}
        file_nodes = [FileNode(path=f.path, size=f.size, sha256=f.sha256, executable=f.executable) for f in files]
        for path in (self.paths.versions(model), self.paths.history(model), self.paths.aliases(model)):
            self.zk.call(what, client.ensure_path_async, path)
        for _ in range(MAX_NUMBER_TRIES):
            node = VersionNode(model=model, number=number, files=file_nodes, host=self.host, **fields)
            try:
                self.zk.call(what, client.create_async, self.paths.version(model, number), encode(node))
                return number
            except NodeExistsError:
                taken = self.zk.call(what, client.get_children_async, self.paths.versions(model))
                number = max([number + 1, *((n or 0) + 1 for n in map(version_number, taken))])
        raise conflict(f"{model} is being pushed on other hosts too fast to find a free version number; push again")

    def publish_move(self, event: r.AliasEventInfo) -> None:
        what = f"move {event.model}@{event.alias}"
        client = self.zk.client
        path = self.paths.alias(event.model, event.alias)
        self.zk.call(what, client.ensure_path_async, self.paths.history(event.model))
        try:
            data, stat = self.zk.call(what, client.get_async, path)
            current: int | None = decode(AliasNode, data).version
        except NoNodeError:
            stat, current = None, None
        except BadNode:
            current = -1  # a damaged alias node: any move replaces it
        if current != -1 and current != event.from_version:
            where = f"version {current}" if current is not None else "nowhere (removed)"
            raise conflict(f"{event.model}@{event.alias} was moved on another host to {where}; look again and retry")
        txn = client.transaction()
        if event.to_version is None:
            if stat is not None:
                txn.delete(path, version=stat.version)
        else:
            data = encode(AliasNode(version=event.to_version, by=event.by, at=event.at, reason=event.reason))
            if stat is None:
                txn.create(path, data)
            else:
                txn.set_data(path, data, version=stat.version)
        move = AliasMoveNode(alias=event.alias, from_version=event.from_version, to_version=event.to_version,
                             by=event.by, at=event.at, reason=event.reason, host=self.host)  # fmt: skip
        txn.create(f"{self.paths.history(event.model)}/ev-", encode(move), sequence=True)
        results = self.zk.call(what, txn.commit_async)
        failed = [x for x in results if isinstance(x, Exception) and not isinstance(x, RolledBackError)]
        if failed:
            if isinstance(failed[0], BadVersionError | NodeExistsError | NoNodeError):
                raise conflict(f"{event.model}@{event.alias} was moved on another host at the same time; retry")
            raise ProtocolError(ErrorCode.UNAVAILABLE, f"cannot {what}: {type(failed[0]).__name__}")

    def publish_change(self, model: str, change: dict[str, Any]) -> None:
        what = f"change {model}"
        node = ChangeNode(host=self.host, **change)
        self.zk.call(what, self.zk.client.ensure_path_async, self.paths.history(model))
        self.zk.call(what, self.zk.client.create_async, f"{self.paths.history(model)}/ev-", encode(node),
                     sequence=True)  # fmt: skip

    def fetch(self, model: str, digest: str, files: list[r.FileInfo], ingest: Callable[[int, int], str]) -> None:
        if self.artifacts is None:
            raise ProtocolError(ErrorCode.UNAVAILABLE, f"{model}'s files are on another host and no registry is set")
        staging = Path(self.registry.state_dir)
        for f in files:
            with tempfile.TemporaryFile(dir=staging) as tmp:

                def write(chunk: bytes) -> None:
                    tmp.write(chunk)

                try:
                    self.artifacts.fetch(model, f.sha256, f.size, write)
                except ArtifactError as exc:
                    raise ProtocolError(ErrorCode.UNAVAILABLE, f"cannot fetch {f.path} of {model}: {exc}") from None
                tmp.flush()
                tmp.seek(0)
                got = ingest(tmp.fileno(), f.size)
                if got != f.sha256:  # the store hashed it again on the way in
                    raise ProtocolError(ErrorCode.INTERNAL, f"{f.path} of {model} arrived damaged (sha256 {got})")

    # -- mirroring ---------------------------------------------------------------------------------------

    def mark_all(self) -> None:
        """Sync everything (at a (re)connection); on the loop."""
        self._all = True
        self._wake.set()

    def _mark(self, model: str | None) -> None:
        if model is None:
            self._all = True
        else:
            self._dirty.add(model)
        self._wake.set()

    def _watch(self, model: str | None) -> Callable[[WatchedEvent], None]:
        """A one-shot watch callback (kazoo's thread): hand the model to the loop, nothing else."""
        loop = self.zk.loop

        def fired(_event: WatchedEvent) -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._mark, model)

        return fired

    async def run(self) -> None:
        """The sync loop (a task for the daemon's lifetime)."""
        loop = asyncio.get_running_loop()
        last = -DEBOUNCE_S
        while True:
            await self._wake.wait()
            await asyncio.sleep(max(0.0, last + DEBOUNCE_S - loop.time()))
            self._wake.clear()
            last = loop.time()
            if not self.zk.connected:
                continue  # a (re)connection marks everything again
            everything, self._all = self._all, False
            models, self._dirty = self._dirty, set()
            try:
                changes = await asyncio.to_thread(self.sync, None if everything else models)
            except Exception as exc:  # ZooKeeper away mid-sync, the database busy: try again soon
                log.warning("cluster sync failed (%s); retrying", exc)
                self._all = self._all or everything
                self._dirty |= models
                await asyncio.sleep(RETRY_S)
                self._wake.set()
                continue
            for change in changes:
                self.notify(*change)

    def sync(self, models: set[str] | None) -> list[tuple[str, str, int | None, str | None]]:
        """Blocking: bring the cache up to ZooKeeper for ``models`` (None: every model, re-arming the watch on
        the model list). Returns the changes applied as (kind, model, version, alias)."""
        client = self.zk.client
        changes: list[tuple[str, str, int | None, str | None]] = []
        if models is None:
            self.zk.call("read the shared registry", client.ensure_path_async, self.paths.models)
            models = set(self.zk.call("read the shared registry", client.get_children_async, self.paths.models,
                                      self._watch(None)))  # fmt: skip
            full = True
        else:
            full = False
        for model in sorted(models):
            try:
                changes += self._sync_model(model)
            except BadNode as exc:
                self.skipped += 1
                log.warning("ignoring shared model %r: %s", model[:200], exc)
        if full:
            self.last_sync = self.zk.clock()
        return changes

    def _sync_model(self, model: str) -> list[tuple[str, str, int | None, str | None]]:
        try:
            check_model_name(model)
        except ValueError as exc:
            raise BadNode(str(exc)) from None
        client = self.zk.client
        what = "read the shared registry"
        changes: list[tuple[str, str, int | None, str | None]] = []
        children = self._children(self.paths.versions(model), model)
        if children is None:
            return changes
        have = self.registry.version_numbers(model)
        wanted = [n for c in children if (n := version_number(c)) is not None and n not in have]
        # All reads in flight at once (one round trip for the lot, not one per version).
        pending = [(n, client.get_async(self.paths.version(model, n))) for n in wanted]
        versions: list[tuple[int, dict[str, Any], list[q.PushFile]]] = []
        for number, result in pending:
            try:
                data, _ = self.zk.wait(what, result)
                node = decode(VersionNode, data)
                if node.model != model or node.number != number:
                    raise BadNode(f"holds {node.model}:{node.number}")
            except (BadNode, NoNodeError) as exc:
                self.skipped += 1
                log.warning("ignoring shared version %s:%s: %s", model, number, exc)
                continue
            values = node.model_dump(exclude={"model", "number", "files", "host"})
            values["file_count"] = len(node.files)
            files = [  # validated as FileNodes already
                q.PushFile.model_construct(path=f.path, sha256=f.sha256, size=f.size, executable=f.executable)
                for f in node.files
            ]
            versions.append((number, values, files))
        added, conflicts = self.registry.apply_remote_versions(model, versions)
        for number in conflicts:
            log.warning("shared version %s:%d conflicts with this host's own version %d", model, number, number)
        changes += [("version", model, n, None) for n in added]
        changes += self._sync_aliases(model)
        return changes

    def _children(self, path: str, model: str) -> list[str] | None:
        """The children of ``path`` with a watch on them; a path that does not exist yet (a push on another
        host is creating it) gets a watch on its creation instead, so its first children are not missed."""
        what = "read the shared registry"
        client = self.zk.client
        for _ in range(2):
            try:
                children: list[str] = self.zk.call(what, client.get_children_async, path, self._watch(model))
                return children
            except NoNodeError:
                if self.zk.call(what, client.exists_async, path, self._watch(model)) is None:
                    return None  # the watch fires when it appears
        return None

    def _sync_aliases(self, model: str) -> list[tuple[str, str, int | None, str | None]]:
        client = self.zk.client
        call = self.zk.call
        what = "read the shared registry"
        entries = self._children(self.paths.history(model), model) or []
        done = self.registry.remote_history_seq(model)
        moves: list[r.AliasEventInfo | dict[str, Any]] = []
        last = done
        for seq, child in sorted((s, c) for c in entries if (s := history_seq(c)) is not None and s > done):
            last = seq
            try:
                data, _ = call(what, client.get_async, f"{self.paths.history(model)}/{child}")
                m = decode_history(data)
            except (BadNode, NoNodeError) as exc:
                self.skipped += 1
                log.warning("ignoring shared history entry %s/%s: %s", model, child, exc)
                continue
            if m.host == self.host:  # this host's own changes are in the cache already
                continue
            if isinstance(m, ChangeNode):
                moves.append(m.model_dump(exclude={"host", "by"}))
                continue
            moves.append(r.AliasEventInfo(model=model, alias=m.alias, from_version=m.from_version,
                                          to_version=m.to_version, by=m.by, at=m.at, reason=m.reason))  # fmt: skip
        aliases: dict[str, int] = {}
        try:
            names = call(what, client.get_children_async, self.paths.aliases(model))
        except NoNodeError:
            names = []
        for alias in names:
            try:
                data, _ = call(what, client.get_async, self.paths.alias(model, alias))
                aliases[alias] = decode(AliasNode, data).version
            except (BadNode, NoNodeError) as exc:
                self.skipped += 1
                log.warning("ignoring shared alias %s@%s: %s", model, alias[:64], exc)
        before = self.registry.alias_map(model)
        if last == done and not moves and before == aliases:
            return []
        self.registry.apply_remote_moves(model, moves, last, aliases)
        after = self.registry.alias_map(model)
        changed = sorted(a for a in before.keys() | after.keys() if before.get(a) != after.get(a))
        out: list[tuple[str, str, int | None, str | None]] = [("alias", model, after.get(a), a) for a in changed]
        for change in moves:
            if isinstance(change, dict):
                kind = "tag" if change["kind"] == "tag" else "describe"
                out.append((kind, model, change["version"] if kind == "tag" else None, None))
        return out or [("history", model, None, None)]
