"""The registry service: push, log, show, diff, checkout, tags and aliases, on top of :mod:`daemon.store`.

Synchronous and thread-safe: the daemon calls each method through ``asyncio.to_thread``, possibly
concurrently. Reads run in their own deferred SQLite transaction (WAL: they never block writers); writes are
serialized by an in-process lock plus ``BEGIN IMMEDIATE`` (other processes wait on the busy timeout). Every
failure is a :class:`ProtocolError` with a code; database exceptions never escape.

Frequent operations (push, log, show, model listings, alias moves) and GC use hand-written SQL
(:mod:`daemon.registry.sql`, :mod:`daemon.registry.objects`); rare ones (tag, diff, checkout, removal of a model,
history) use the ORM, where brevity beats speed.

Lock order: the registry's write lock (``_lock``), then the object store's lock (``objects.lock``); never the
reverse (an upload records its stat-cache entry under the registry's lock only after releasing the store's).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import io
import json
import os
import shutil
import sqlite3
import tempfile
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path
from typing import Any, BinaryIO, ParamSpec, Protocol, TypeVar

from sqlalchemy import Engine, delete, func
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlmodel import Session, col, select

from daemon.protocol import requests as q
from daemon.protocol import results as r
from daemon.protocol.errors import ErrorCode, ProtocolError, conflict, invalid, not_found
from daemon.protocol.manifest import MANIFEST_FILE, MAX_MANIFEST_BYTES, Manifest, parse_manifest
from daemon.protocol.names import Ref, check_alias, check_model_name, check_tag_key, check_tag_value, parse_ref
from daemon.registry import convert, queries, sql
from daemon.registry.codescan import code_info
from daemon.registry.diff import diff_versions
from daemon.registry.model_index import ModelIndex, compile_pattern
from daemon.registry.objects import Ingested, ObjectStore, Progress
from daemon.registry.queries import model_id
from daemon.registry.statcache import StatCache
from daemon.store.credentials import CredentialStore
from daemon.store.db import Db
from daemon.store.deployments import DeploymentStore, deployed_versions
from daemon.store.engine import DB_NAME, make_engine, read_session, write_session
from daemon.store.faults import Faults
from daemon.store.migrations import migrate
from daemon.store.tables import AliasEventRow, AliasRow, FileRow, ModelRow, VersionRow, utcnow
from daemon.store.version_code import CodeStore

__all__ = ["Ingested", "Registry", "SharedRegistry", "version_digest"]


class SharedRegistry(Protocol):
    """The registry shared with other hosts (ZooKeeper, ``daemon/cluster/``). Its methods block and raise
    :class:`ProtocolError` (``UNAVAILABLE`` when it cannot be reached in time, ``CONFLICT`` when another host
    got there first); ``publish_version`` and ``publish_move`` run inside the local transaction, so a refusal
    leaves the local registry unchanged."""

    def require(self, what: str) -> None: ...

    def upload(
        self, model: str, digest: str, files: list[q.PushFile], open_file: Callable[[str], BinaryIO]
    ) -> None: ...

    def publish_version(self, model: str, number: int, values: dict[str, Any], files: list[q.PushFile]) -> int: ...

    def publish_move(self, event: r.AliasEventInfo) -> None: ...

    def publish_change(self, model: str, change: dict[str, Any]) -> None: ...

    def fetch(self, model: str, digest: str, files: list[r.FileInfo], ingest: Callable[[int, int], str]) -> None: ...


MANIFEST_CACHE_ENTRIES = 256
MANIFEST_CACHE_MAX_BYTES = 16 << 10

P = ParamSpec("P")
T = TypeVar("T")


NO_SPACE = "no space left on the registry's disk; free some space (or run `modeltui gc`) and try again"


def _disk_full(exc: BaseException | None) -> bool:
    """SQLite's SQLITE_FULL ("database or disk is full"): the disk, or the file system's quota, is full."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code == sqlite3.SQLITE_FULL or "database or disk is full" in str(exc)


def _guarded(fn: Callable[P, T]) -> Callable[P, T]:
    """Translate database and OS failures into ProtocolErrors (the cause stays chained for the log)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except ProtocolError:
            raise
        except (OperationalError, sqlite3.OperationalError) as exc:
            orig = exc.orig if isinstance(exc, OperationalError) else exc
            text = str(orig) if orig is not None else str(exc)
            if "locked" in text or "busy" in text:
                raise ProtocolError(ErrorCode.UNAVAILABLE, "the registry is busy; try again") from exc
            if _disk_full(orig):
                raise ProtocolError(ErrorCode.UNAVAILABLE, NO_SPACE) from exc
            raise ProtocolError(ErrorCode.INTERNAL, f"registry database error: {text}") from exc
        except (IntegrityError, sqlite3.IntegrityError) as exc:
            raise conflict("a concurrent change conflicted with this one; try again") from exc
        except (SQLAlchemyError, sqlite3.Error) as exc:
            raise ProtocolError(ErrorCode.INTERNAL, f"registry database error: {type(exc).__name__}") from exc
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise ProtocolError(ErrorCode.UNAVAILABLE, NO_SPACE) from exc
            raise ProtocolError(ErrorCode.INTERNAL, f"registry storage error: {exc.strerror}") from exc

    return wrapper


def version_digest(files: list[q.PushFile]) -> str:
    """sha256 of the canonical JSON list of sorted ``[path, sha256, executable]``: same content, same digest."""
    canonical = sorted([f.path, f.sha256, bool(f.executable)] for f in files)
    data = json.dumps(canonical, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def _ref(value: str) -> Ref:
    try:
        return parse_ref(value)
    except ValueError as exc:
        raise invalid(str(exc)) from None


def _push_reason(req: q.Push, number: int) -> str:
    """Alias-event reason for ``push --alias``: one line, within the 512-character limit of reasons."""
    first = req.message.strip().splitlines()[0] if req.message.strip() else ""
    return f"push of version {number}" + (f": {first}" if first else "")[:480]


def _check_no_file_is_a_directory(paths: Collection[str]) -> None:
    """``a`` and ``a/b`` cannot both be files of one directory: such a version could never be checked out
    or deployed, so it is refused at push."""
    for path in paths:
        cut = path.rfind("/")
        while cut > 0:
            parent = path[:cut]
            if parent in paths:
                raise invalid(f"path {parent} is also a directory (of {path})", path=parent)
            cut = path.rfind("/", 0, cut)


def _checked(check: Callable[[str], str], value: str) -> str:
    try:
        return check(value)
    except ValueError as exc:
        raise invalid(str(exc)) from None


class Registry:
    """Models, their immutable versions and their aliases, stored under ``state_dir``."""

    def __init__(self, state_dir: Path, *, busy_timeout_s: float = 5.0, gc_grace_seconds: int = 3600) -> None:
        self.state_dir = Path(state_dir)
        self.gc_grace_seconds = gc_grace_seconds
        self._faults = Faults.from_env()
        self._lock = threading.Lock()
        #: Parsed manifests by digest (parsing costs ~25 µs; pipelines often push the same manifest again).
        self._manifests: OrderedDict[str, tuple[int, Manifest, str]] = OrderedDict()
        self._manifests_lock = threading.Lock()
        self._engine: Engine = make_engine(self.state_dir, busy_timeout_s=busy_timeout_s)
        try:
            migrate(self._engine)
        except SQLAlchemyError as exc:
            self._engine.dispose()
            raise ProtocolError(ErrorCode.UNAVAILABLE, f"cannot open the registry database: {exc}") from exc
        self._db = Db(self._engine)
        self._stat_cache = StatCache(self.state_dir / DB_NAME, self._lock, busy_timeout_s=busy_timeout_s)
        self.deployments = DeploymentStore(self._db, self._lock)
        self.credentials = CredentialStore(self._db, self._lock)
        #: The run-code policy's records (pickle scans, approvals): daemon/registry/codepolicy.py.
        self.code = CodeStore(self._db, self._lock, self._faults)
        #: Every model's summary in memory for models.list (sort and filter on any column at 10,000 models).
        self.model_index = ModelIndex(self._model_summaries)
        #: Set by the daemon when a cluster is configured: pushes and alias moves go there too.
        self.shared: SharedRegistry | None = None
        self.objects = ObjectStore(
            self.state_dir,
            self._stat_cache,
            self._db,
            faults=self._faults,
            grace_seconds=gc_grace_seconds,
            busy_timeout_s=busy_timeout_s,
        )

    def close(self) -> None:
        self.objects.close()
        self._stat_cache.close()
        self._db.close()
        self._engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with self._lock, write_session(self._engine, self._faults) as s:
            yield s

    @contextmanager
    def _write_sql(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._db.write(self._faults) as conn:
            yield conn

    # -- objects -------------------------------------------------------------------------------------------

    @_guarded
    def ingest(self, fd: int, expected_size: int, progress: Progress | None = None) -> Ingested:
        """Stream an open regular file into the object store; ``copied`` is False when nothing was stored."""
        if expected_size < 0:
            raise invalid("size must be >= 0")
        try:
            return self.objects.ingest(fd, expected_size, progress)
        except OSError as exc:
            if exc.errno == errno.EBADF:
                raise invalid("the passed file descriptor is not open for reading") from None
            raise

    # -- push ----------------------------------------------------------------------------------------------

    def _read_manifest(self, files: list[q.PushFile]) -> tuple[Manifest, str]:
        entry = next((f for f in files if f.path == MANIFEST_FILE), None)
        if entry is None:
            raise invalid(f"{MANIFEST_FILE} is missing: every version needs a manifest")
        if entry.size > MAX_MANIFEST_BYTES:
            raise invalid(f"{MANIFEST_FILE} is {entry.size} bytes; the limit is {MAX_MANIFEST_BYTES}")
        with self._manifests_lock:
            cached = self._manifests.get(entry.sha256)
        # A parse is a function of the content, so it can be remembered by digest; whether the object is still
        # stored is checked under the write lock (_check_objects), as for every other file.
        if cached is not None and cached[0] == entry.size:
            return cached[1], cached[2]
        # Read through one descriptor, outside the write lock: GC may remove the object meanwhile, but then
        # we either read it whole or not at all, and _check_objects re-checks it under the lock.
        data = self.objects.read_object(entry.sha256, MAX_MANIFEST_BYTES)
        if data is None or len(data) != entry.size:
            raise invalid(f"{MANIFEST_FILE} was not uploaded (object {entry.sha256[:12]}…); upload it first")
        try:
            manifest = parse_manifest(data)
        except ValueError as exc:
            raise invalid(str(exc)) from None
        text = data.decode("utf-8")
        if len(data) <= MANIFEST_CACHE_MAX_BYTES:
            with self._manifests_lock:
                self._manifests[entry.sha256] = (len(data), manifest, text)
                if len(self._manifests) > MANIFEST_CACHE_ENTRIES:
                    self._manifests.popitem(last=False)
        return manifest, text

    @staticmethod
    def _check_files(files: list[q.PushFile], manifest: Manifest) -> None:
        counts = Counter(f.path for f in files)  # one pass: versions may have tens of thousands of files
        if len(counts) != len(files):
            dupes = sorted(p for p, n in counts.items() if n > 1)[:5]
            raise invalid(f"duplicate file paths: {', '.join(dupes)}")
        paths = counts.keys()
        _check_no_file_is_a_directory(paths)
        if manifest.model_path not in paths:
            raise invalid(f"{MANIFEST_FILE}: model_file {manifest.model_path!r} is not among the pushed files")
        if manifest.evaluation is not None and manifest.evaluation.data not in paths:
            raise invalid(
                f"{MANIFEST_FILE}: evaluation.data {manifest.evaluation.data!r} is not among the pushed files"
            )

    def _check_objects(self, conn: sqlite3.Connection, files: list[q.PushFile]) -> dict[str, bytes]:
        """Every file's object must be stored or pending with its size; returns the pending content to store."""
        sizes, inline = self.objects.locate(conn, {f.sha256 for f in files})
        for f in files:
            if sizes.get(f.sha256) != f.size:
                raise invalid(
                    f"{f.path}: object {f.sha256[:12]}… of {f.size} bytes is not in the store; upload it first",
                    path=f.path,
                    sha256=f.sha256,
                )
        return inline

    @_guarded
    def push(self, req: q.Push, user: str, *, parent: int | None = None) -> r.PushResult:
        """Create the next version of a model from uploaded objects, in one transaction.

        The model name is ``req.name`` if given, else the manifest's. Identical content (same digest) returns
        the existing version with ``created=False``: its message and tags are left alone, but ``req.alias``
        is still applied to it, because "make this content production" is what the caller asked for.
        """
        files = list(req.files)
        if not files:
            raise invalid("a version needs at least one file")
        manifest, manifest_text = self._read_manifest(files)
        name = _checked(check_model_name, req.name or manifest.name)
        alias = _checked(check_alias, req.alias) if req.alias is not None else None
        self._check_files(files, manifest)
        digest = version_digest(files)
        shared = self.shared
        if shared is not None:
            shared.require("push to the shared registry")
            shared.upload(name, digest, files, self._open_for_upload)
        with self._write_sql() as conn:
            # Checked under the write lock: GC holds it too, so these objects cannot vanish before commit.
            inline = self._check_objects(conn, files)
            now = utcnow()
            model = sql.find_model(conn, name) or sql.create_model(conn, name, manifest.description, now)
            number = sql.version_by_digest(conn, model.id, digest)
            created = number is None
            if number is None:
                # Pending uploads become blobs in this transaction: one commit makes them and the version durable.
                self.objects.store_blobs(conn, inline, now)
                values = {
                    "digest": digest,
                    "parent": sql.latest_number(conn, model.id) if parent is None else parent,
                    "flavor": manifest.flavor,
                    "message": req.message,
                    "tags": dict(req.tags),
                    "params": dict(manifest.params),
                    "metrics": dict(manifest.metrics),
                    "signature": manifest.signature.model_dump(),
                    "requirements": list(manifest.requirements),
                    "description": manifest.description,
                    "model_file": manifest.model_file,
                    "manifest": manifest_text,
                    "source": req.source.model_dump() if req.source else {},
                    "created_by": user,
                    "created_at": now,
                    "size": sum(f.size for f in files),
                    "file_count": len(files),
                }
                # In a cluster the shared registry gives the number: the first free one from ours up.
                first = None if shared is None else shared.publish_version(name, model.next_number, values, files)
                number = sql.insert_version(conn, model, values, files, number=first)
            if alias is not None:
                moved = sql.move_alias(conn, model, alias, number, user, _push_reason(req, number), now)
                self._publish_move(moved)
            if created:  # no alias but the one just moved can point at a new version: no need to read it back
                summary = sql.new_summary(model, number, values, [alias] if alias is not None else [])
            else:
                summary = sql.summary(conn, model, number)
            result = r.PushResult(version=summary, created=created)
        self.objects.settle({f.sha256 for f in files})  # only after the commit: until then they stay pending
        return result

    # -- models --------------------------------------------------------------------------------------------

    @_guarded
    def list_models(
        self, req: q.ListModels, changed: Collection[str] | None = None, upto: int | None = None
    ) -> r.ModelList:
        """A page of models from the in-memory index, after re-reading the ``changed`` models (all of them
        for None: what a caller that does not track changes gets) as of change count ``upto``."""
        compile_pattern(req.pattern or "")  # a bad regex is refused before anything is read
        self.model_index.refresh(changed, upto)
        return self.model_index.query(req)

    def _model_summaries(self, names: Collection[str] | None) -> list[r.ModelSummary]:
        """The summaries of the named models (every model for None), for the index."""
        with self._db.read() as conn:
            if names is None:
                return sql.model_summaries(conn, "", ())
            found: list[r.ModelSummary] = []
            batch = list(names)
            for start in range(0, len(batch), 500):  # under SQLite's limit on bound parameters
                chunk = batch[start : start + 500]
                marks = ",".join("?" * len(chunk))
                found += sql.model_summaries(conn, f"WHERE m.name IN ({marks})", tuple(chunk))
            return found

    @_guarded
    def get_model(self, req: q.GetModel) -> r.ModelDetail:
        with self._db.read() as conn:
            return r.ModelDetail(model=sql.model_summary(conn, sql.get_model(conn, req.name).id))

    @_guarded
    def describe_model(self, req: q.DescribeModel, user: str) -> r.ModelDetail:
        """Set a model's description."""
        self._require_shared("describe a model")
        with self._write_sql() as conn:
            model = sql.get_model(conn, req.name)
            now = utcnow()
            sql.describe_model(conn, model.id, req.description, now)
            if self.shared is not None:
                self.shared.publish_change(model.name, {"kind": "describe", "description": req.description,
                                                        "by": user, "at": now})  # fmt: skip
            return r.ModelDetail(model=sql.model_summary(conn, model.id))

    @_guarded
    def remove_model(self, req: q.RemoveModel, user: str) -> r.RemoveResult:
        """Remove a model with all its versions and alias history; refused while aliases exist unless force.

        Objects stay until GC. Pushing the name again later starts a new model at version 1.
        """
        self._refuse_in_cluster("remove a model")
        with self._db.read() as conn:
            serving = deployed_versions(conn, req.name)
        if serving:
            names = sorted({n for ns in serving.values() for n in ns})
            raise conflict(f"model {req.name!r} is deployed ({', '.join(names)}); undeploy it first")
        with self._write() as s:
            model = queries.get_model(s, req.name)
            mid = model_id(model)
            aliases = queries.alias_map(s, mid)
            if aliases and not req.force:
                shown = ", ".join(f"{a}→{v}" for a, v in sorted(aliases.items()))
                raise conflict(
                    f"model {model.name!r} has aliases ({shown}); remove them first or use force", aliases=aliases
                )
            numbers = sorted(s.exec(select(VersionRow.number).where(VersionRow.model_id == mid)))
            version_ids = select(VersionRow.id).where(VersionRow.model_id == mid)
            s.exec(delete(FileRow).where(col(FileRow.version_id).in_(version_ids)))
            s.exec(delete(VersionRow).where(col(VersionRow.model_id) == mid))
            s.exec(delete(AliasRow).where(col(AliasRow.model_id) == mid))
            s.exec(delete(AliasEventRow).where(col(AliasEventRow.model_id) == mid))
            s.exec(delete(ModelRow).where(col(ModelRow.id) == mid))
            return r.RemoveResult(model=model.name, removed_versions=numbers)

    # -- versions ------------------------------------------------------------------------------------------

    @_guarded
    def log(self, req: q.Log) -> r.VersionList:
        """Versions of a model, newest first."""
        with self._db.read() as conn:
            return sql.log_page(conn, sql.get_model(conn, req.name), req.offset, req.limit)

    @_guarded
    def show(self, req: q.Show) -> r.VersionDetail:
        """A version with its files (by path), children, and lineage (ancestors that still exist)."""
        with self._db.read() as conn:
            model, number = sql.resolve(conn, _ref(req.ref))
            detail = sql.detail(conn, model, number)
            return detail.model_copy(update={"code": code_info(conn, model.id, number, detail.manifest)})

    @_guarded
    def diff(self, req: q.Diff) -> r.VersionDiff:
        """What changed from ``a`` to ``b`` (they may belong to different models)."""
        with read_session(self._engine) as s:
            ma, va = queries.resolve(s, _ref(req.a))
            mb, vb = queries.resolve(s, _ref(req.b))
            return diff_versions(
                va,
                queries.files_of(s, va),
                queries.summary(s, ma, va),
                vb,
                queries.files_of(s, vb),
                queries.summary(s, mb, vb),
            )

    @_guarded
    def checkout(self, req: q.Checkout) -> tuple[r.CheckoutResult, list[int]]:
        """A page of the version's files (by path) and one open O_RDONLY descriptor per file, same order;
        the caller closes them."""
        with read_session(self._engine) as s:
            model, version = queries.resolve(s, _ref(req.ref))
            all_files = queries.files_of(s, version)
            files = all_files[req.offset : req.offset + req.limit]
            result = r.CheckoutResult(
                version=queries.summary(s, model, version),
                files=[convert.file_info(f) for f in files],
                offset=req.offset,
                total_files=len(all_files),
            )
        self._ensure_objects(model.name, result.version.digest, result.files)
        fds: list[int] = []
        try:
            for f in files:
                fds.append(self.objects.open_object(f.sha256))
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        return result, fds

    @_guarded
    def resolve(self, ref: str) -> tuple[str, int, str]:
        """``NAME``, ``NAME:N`` or ``NAME@ALIAS`` → (model, number, digest) as of now."""
        with self._db.read() as conn:
            model, number = sql.resolve(conn, _ref(ref))
            return model.name, number, sql.summary(conn, model, number).digest

    # -- signatures (checked by daemon/registry/signing.py, outside any transaction) ------------------------

    @_guarded
    def signature_texts(self, model: str, number: int) -> list[tuple[int, str]]:
        """(id, armored text) of each signature of ``model:number``."""
        with self._db.read() as conn:
            key = sql.get_model(conn, model)
            sql.check_version(conn, key, number)
            return sql.signature_texts(conn, key.id, number)

    @_guarded
    def record_signature(self, model: str, number: int, digest: str, values: dict[str, Any]) -> r.SignResult:
        """Record a checked signature of ``model:number``, whose digest must still be ``digest``."""
        with self._write_sql() as conn:
            key = sql.get_model(conn, model)
            sql.check_version(conn, key, number)
            found = sql.summary(conn, key, number)
            if found.digest != digest:
                raise conflict(f"{model}:{number} holds other content than the signed digest {digest[:12]}…")
            sql.put_signature(conn, key.id, number, values)
            best = sql.signatures(conn, key.id, number)
            signed = next(s for s in best if s.fingerprint == values["fingerprint"])
            return r.SignResult(version=found, signature=signed)

    @_guarded
    def all_signatures(self) -> list[tuple[int, str, int, str, str, str, str | None]]:
        """Every recorded signature: (id, model, number, digest, armored text, status, principal)."""
        with self._db.read() as conn:
            return sql.all_signatures(conn)

    @_guarded
    def record_signature_checks(self, checks: list[tuple[int, str, str | None]]) -> None:
        """Store the outcome (status, principal) of checking signatures again, by id."""
        now = utcnow()
        with self._write_sql() as conn:
            for sid, status, principal in checks:
                sql.set_signature_check(conn, sid, status, principal, now)

    # -- the shared registry's changes, applied to this host's cache (no publishing back) ------------------

    @_guarded
    def version_numbers(self, model: str) -> set[int]:
        with self._db.read() as conn:
            key = sql.find_model(conn, model)
            if key is None:
                return set()
            return {int(n) for (n,) in conn.execute("SELECT number FROM versions WHERE model_id = ?", (key.id,))}

    @_guarded
    def apply_remote_versions(
        self, model: str, versions: list[tuple[int, dict[str, Any], list[q.PushFile]]]
    ) -> tuple[list[int], list[int]]:
        """Versions pushed on other hosts (their files stay there until needed), in one transaction; returns
        the numbers added and the numbers taken here by other content (the caller logs those). A number this
        host already has with the same content (its own push, seen back) is neither."""
        added: list[int] = []
        conflicts: list[int] = []
        if not versions:
            return added, conflicts
        with self._write_sql() as conn:
            key = sql.find_model(conn, model)
            if key is None:
                first = versions[0][1]
                key = sql.create_model(conn, model, first["description"], first["created_at"])
            for number, values, files in sorted(versions, key=lambda v: v[0]):
                row = conn.execute(
                    "SELECT digest FROM versions WHERE model_id = ? AND number = ?", (key.id, number)
                ).fetchone()
                if row is None:
                    sql.insert_version(conn, key, values, files, number=number)
                    added.append(number)
                elif row[0] != values["digest"]:
                    conflicts.append(number)
        return added, conflicts

    @_guarded
    def alias_map(self, model: str) -> dict[str, int]:
        with self._db.read() as conn:
            key = sql.find_model(conn, model)
            return {} if key is None else sql.alias_map(conn, key.id)

    @_guarded
    def remote_history_seq(self, model: str) -> int:
        with self._db.read() as conn:
            row = conn.execute("SELECT history_seq FROM cluster_sync WHERE model = ?", (model,)).fetchone()
        return -1 if row is None else int(row[0])

    @_guarded
    def apply_remote_moves(
        self,
        model: str,
        moves: list[r.AliasEventInfo | dict[str, Any]],
        seq: int,
        aliases: dict[str, int],
    ) -> None:
        """Changes made on other hosts up to ``seq`` of the model's shared history, in order: alias moves
        (recorded as they happened), tags (``{"kind": "tag", "version", "set", "unset"}``) and descriptions
        (``{"kind": "describe", "description"}``); then the aliases as the shared registry has them now (it
        is the truth)."""
        with self._write_sql() as conn:
            key = sql.find_model(conn, model)
            if key is None:
                return
            for move in moves:
                if isinstance(move, r.AliasEventInfo):
                    sql.record_move(conn, key, move)
                elif move["kind"] == "describe":
                    sql.describe_model(conn, key.id, move["description"], move["at"])
                else:
                    sql.retag(conn, key.id, move["version"], move["set"], move["unset"])
            conn.execute(
                "INSERT INTO cluster_sync (model, history_seq) VALUES (?, ?) "
                "ON CONFLICT (model) DO UPDATE SET history_seq = max(history_seq, excluded.history_seq)",
                (model, seq),
            )
            have = sql.alias_map(conn, key.id)
            for alias in set(have) - set(aliases):
                conn.execute("DELETE FROM aliases WHERE model_id = ? AND name = ?", (key.id, alias))
            for alias, version in aliases.items():
                if have.get(alias) != version and sql.version_exists(conn, key.id, version):
                    conn.execute(
                        "INSERT INTO aliases (model_id, name, version) VALUES (?, ?, ?) "
                        "ON CONFLICT (model_id, name) DO UPDATE SET version = excluded.version",
                        (key.id, alias, version),
                    )

    def _ensure_objects(self, model: str, digest: str, files: list[r.FileInfo]) -> None:
        """Fetch from the shared registry the objects of a version pushed elsewhere (sha256-verified)."""
        missing = [f for f in files if self.objects.size_of(f.sha256) is None]
        if not missing:
            return
        if self.shared is None:
            raise ProtocolError(ErrorCode.INTERNAL, f"{len(missing)} file(s) of {model} are missing from the store")
        fetched: list[str] = []

        def ingest(fd: int, size: int) -> str:
            got = self.objects.ingest(fd, size)
            fetched.append(got.sha256)
            return got.sha256

        try:
            self.shared.fetch(model, digest, missing, ingest)
            # Small objects wait in memory for a push's commit; these have no push: store them now.
            inline = {sha: data for sha in fetched if (data := self.objects.pending_data(sha)) is not None}
            if inline:
                with self._write_sql() as conn:
                    self.objects.store_blobs(conn, inline, utcnow())
        finally:
            self.objects.settle(fetched)

    @_guarded
    def materialize(self, model: str, number: int, dest: Path) -> Path:
        """The version's files as a read-only directory under ``dest`` (reused when already there): what a
        deployment runs from. Written beside, then renamed, so a crash never leaves half a directory."""
        with self._db.read() as conn:
            key, _ = sql.resolve(conn, Ref(model, number=number))
            digest = sql.summary(conn, key, number).digest
            files = sql.files(conn, key.id, number)
        final = dest / f"{model}-{number}-{digest[:16]}"
        if final.is_dir():
            return final
        self._ensure_objects(model, digest, files)
        dest.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=dest))
        try:
            for f in files:
                target = tmp / f.path
                target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                src = self.objects.open_object(f.sha256)
                try:
                    with open(target, "wb") as out:
                        while chunk := os.pread(src, 1 << 20, out.tell()):
                            out.write(chunk)
                finally:
                    os.close(src)
                os.chmod(target, 0o500 if f.executable else 0o400)
            try:
                os.rename(tmp, final)
            except OSError as exc:  # materialized meanwhile by another caller
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not final.is_dir():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    @_guarded
    def tag(self, req: q.Tag, user: str) -> r.VersionSummary:
        """Set and unset tags of a version (a key in both is refused)."""
        both = set(req.set) & set(req.unset)
        if both:
            raise invalid(f"tags both set and unset: {', '.join(sorted(both))}")
        for key, value in req.set.items():
            _checked(check_tag_key, key)
            _checked(check_tag_value, value)
        self._require_shared("tag a version")
        with self._write() as s:
            model, version = queries.resolve(s, _ref(req.ref))
            tags = {**version.tags, **req.set}
            for key in req.unset:
                tags.pop(key, None)
            version.tags = tags  # a new dict: JSON columns do not track in-place mutation
            s.add(version)
            s.flush()
            if self.shared is not None:
                change = {"kind": "tag", "version": version.number, "set": dict(req.set), "unset": list(req.unset),
                          "by": user, "at": utcnow()}  # fmt: skip
                self.shared.publish_change(model.name, change)
            return queries.summary(s, model, version)

    @_guarded
    def remove_version(self, req: q.RemoveVersion, user: str) -> r.RemoveResult:
        """Remove one version; refused while an alias holds it, unless force (which also removes the aliases,
        recording events). Its number is never reused; its objects are left for GC."""
        self._refuse_in_cluster("remove a version")
        with self._write_sql() as conn:
            model, number = sql.resolve(conn, _ref(req.ref))
            serving = deployed_versions(conn, model.name).get(number)
            if serving:
                raise conflict(f"{model.name}:{number} is deployed ({', '.join(serving)}); undeploy it first")
            holding = sql.aliases_of(conn, model.id, number)
            if holding and not req.force:
                raise conflict(
                    f"{model.name}:{number} is held by alias(es) {', '.join(holding)}; "
                    "move or remove them first, or use force",
                    aliases=holding,
                )
            now = utcnow()
            for alias in holding:
                sql.move_alias(conn, model, alias, None, user, f"version {number} removed", now)
            sql.remove_version(conn, model.id, number, now)
            return r.RemoveResult(model=model.name, removed_versions=[number])

    # -- aliases -------------------------------------------------------------------------------------------

    def _open_for_upload(self, sha256: str) -> BinaryIO:
        """An object's content for the shared registry: a small upload still pending, or the stored object."""
        data = self.objects.pending_data(sha256)
        if data is not None:
            return io.BytesIO(data)
        return os.fdopen(self.objects.open_object(sha256), "rb")

    def _publish_move(self, event: r.AliasEventInfo | None) -> None:
        """Inside the move's transaction: the shared registry first (compare-and-set); a refusal undoes it."""
        if event is not None and self.shared is not None:
            self.shared.publish_move(event)

    def _refuse_in_cluster(self, what: str) -> None:
        """Removal is not shared across hosts yet: done on one host, the others would keep (and give back)
        what it removed. Refused, rather than half done."""
        if self.shared is not None:
            raise invalid(f"cannot {what} in a cluster: removal is not shared across hosts yet (docs/cluster.md)")

    def _require_shared(self, what: str) -> None:
        if self.shared is not None:
            self.shared.require(what)

    @_guarded
    def alias_set(self, req: q.AliasSet, user: str) -> r.AliasEventInfo:
        """Point an alias at a version. Already pointing there: a no-op returning the move that did it, marked
        ``changed = False`` (so nobody reads an old move, with its author's reason, as one just made)."""
        alias = _checked(check_alias, req.alias)
        self._require_shared("move an alias")
        with self._write_sql() as conn:
            model = sql.get_model(conn, req.name)
            sql.check_version(conn, model, req.version)
            now = utcnow()
            event = sql.move_alias(conn, model, alias, req.version, user, req.reason, now)
            self._publish_move(event)
            if event is not None:
                return event
            last = sql.latest_event(conn, model, alias)
            if last is None:  # alias rows are only written with an event; be safe anyway
                last = r.AliasEventInfo(
                    model=model.name,
                    alias=alias,
                    from_version=req.version,
                    to_version=req.version,
                    by=user,
                    at=now,
                    reason=req.reason,
                )
            return last.model_copy(update={"changed": False})

    @_guarded
    def alias_remove(self, req: q.AliasRemove, user: str) -> r.AliasEventInfo:
        self._require_shared("remove an alias")
        with self._write_sql() as conn:
            model = sql.get_model(conn, req.name)
            event = sql.move_alias(conn, model, req.alias, None, user, req.reason, utcnow())
            if event is None:
                raise not_found(f"model {model.name!r} has no alias {req.alias!r}", model=model.name)
            self._publish_move(event)
            return event

    @_guarded
    def rollback(
        self, req: q.Rollback, user: str, *, checked: bool = False, expect: int | None = None
    ) -> r.AliasEventInfo:
        """Move an alias back to where its latest move took it from (so two rollbacks toggle, like ``cd -``);
        this also restores an alias that was removed. ``checked``: the caller checked ``expect`` as the target
        (signing, run code); CONFLICT if the alias moved meanwhile and the rollback would now go elsewhere."""
        self._require_shared("roll an alias back")
        with self._write_sql() as conn:
            model = sql.get_model(conn, req.name)
            last = sql.latest_event(conn, model, req.alias)
            if last is None:
                raise not_found(f"model {model.name!r} has no alias {req.alias!r}", model=model.name)
            target = last.from_version
            if target is None:
                raise conflict(
                    f"{model.name}@{req.alias} has no previous version to roll back to "
                    f"(its last move created it at version {last.to_version})"
                )
            if checked and target != expect:
                raise conflict(f"{model.name}@{req.alias} moved while its rollback was checked; roll back again")
            if not sql.version_exists(conn, model.id, target):
                raise conflict(
                    f"cannot roll {model.name}@{req.alias} back to version {target}: that version was removed"
                )
            reason = req.reason or f"rollback from {last.to_version if last.to_version else 'removed'}"
            event = sql.move_alias(conn, model, req.alias, target, user, reason, utcnow())
            assert event is not None, "target differs from the current version by construction"
            self._publish_move(event)
            return event

    @_guarded
    def alias_history(self, req: q.AliasHistoryRequest) -> r.AliasHistory:
        """Alias moves newest first; with ``at``, also what each alias pointed to at that time."""
        with read_session(self._engine) as s:
            model = queries.get_model(s, req.name)
            base = select(AliasEventRow).where(AliasEventRow.model_id == model_id(model))
            if req.alias is not None:
                base = base.where(AliasEventRow.alias == req.alias)
            events = s.exec(base.order_by(col(AliasEventRow.at).desc(), col(AliasEventRow.id).desc()).limit(req.limit))
            infos = [convert.alias_event(e, model=model.name) for e in events]
            if req.at is None:
                return r.AliasHistory(model=model.name, events=infos)
            at = req.at if req.at.tzinfo else req.at.replace(tzinfo=UTC)
            targets: dict[str, int | None] = {}
            for e in s.exec(
                base.where(col(AliasEventRow.at) <= at).order_by(col(AliasEventRow.at), col(AliasEventRow.id))
            ):
                targets[e.alias] = e.to_version
            at_targets = {a: v for a, v in sorted(targets.items()) if v is not None}
            return r.AliasHistory(model=model.name, events=infos, at=at, targets_at=at_targets)

    # -- maintenance ---------------------------------------------------------------------------------------

    @_guarded
    def gc(self, req: q.Gc) -> r.GcResult:
        """Remove unreferenced objects and stale staging files older than the grace period."""
        grace = self.gc_grace_seconds if req.grace_seconds is None else req.grace_seconds
        if grace < 0:
            raise invalid("grace_seconds must be >= 0")
        with self._lock:  # no push may start referencing an object while GC decides about it
            stats = self.objects.gc(grace_seconds=grace, dry_run=req.dry_run)
        return r.GcResult(
            objects_removed=stats.objects_removed,
            bytes_removed=stats.bytes_removed,
            staging_removed=stats.staging_removed,
            dry_run=req.dry_run,
        )

    def clear_staging(self) -> tuple[int, int]:
        """Partial uploads a killed daemon left in staging (see :meth:`ObjectStore.clear_staging`)."""
        return self.objects.clear_staging()

    @_guarded
    def model_count(self) -> int:
        """How many models (cheap: the systemd status line asks every minute)."""
        with read_session(self._engine) as s:
            return queries.count(s, ModelRow)

    def counts(self) -> tuple[int, int, int, int]:
        """(models, versions, objects, object_bytes); objects are the distinct ones versions reference."""
        with read_session(self._engine) as s:
            per_object = (
                select(FileRow.sha256, func.max(FileRow.size).label("size")).group_by(col(FileRow.sha256)).subquery()
            )
            n_objects, n_bytes = s.exec(select(func.count(), func.coalesce(func.sum(per_object.c.size), 0))).one()
            return (
                queries.count(s, ModelRow),
                queries.count(s, VersionRow),
                int(n_objects),
                int(n_bytes),
            )
