"""Code-running manifests: who may make a version's code run on the daemon's hosts (``[policy] run_code``),
admins' approvals, and the pickle scan recorded with each version.

A version *runs code* when its manifest says ``flavor = "python"`` (the model's own Python), ``trusted =
true`` on a model file that unpickling could make run code (a pickle the scan refused, or a skops file whose
every type is trusted), or ``[training] command`` (maintenance runs it). Under ``run_code = "admin"`` (the
default) only an admin deploys, rolls out (alias move, rollback), trains or promotes such a version, unless an
admin approved it (``modeltui approve-code``): then operators may, as they may under ``"operators"``. An
admin's own deploy or alias move of the version records the approval too (audited as that request).

The handlers call :meth:`CodePolicy.require` with the caller at each entry point; the deployment manager asks
:meth:`CodePolicy.runtime_env` before any instance of a version starts (deploy, restart, rollout by whoever
moved the alias: a maintenance run, another host of the cluster), so an unapproved version never starts under
``"admin"`` whatever path reached it, and the runtime learns which refused globals it may load.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from daemon.access import Access
from daemon.protocol import results as r
from daemon.protocol.errors import ErrorCode, ProtocolError, conflict
from daemon.protocol.manifest import parse_manifest
from daemon.serving.picklescan import PICKLE_ALLOW_ENV, is_pickle_name, scan_stream

from .codescan import code_info, runs_code

if TYPE_CHECKING:
    from daemon.registry.service import Registry
    from daemon.settings import Settings

SETTING = '[policy] run_code = "admin"'


class CallerLike(Protocol):
    @property
    def uid(self) -> int: ...
    @property
    def user(self) -> str: ...
    @property
    def groups(self) -> frozenset[str]: ...


@dataclass(frozen=True)
class VersionCode:
    """What one version's manifest and model file make run."""

    model: str
    number: int
    version_id: int
    digest: str
    runs_code: list[str]
    """The manifest keys that make code run, each with why: ``flavor = "python"``, ``trusted = true (…)``."""
    training: str | None
    """``[training] command`` of the manifest (maintenance runs it), when there is one."""
    scan: dict[str, Any] | None
    approved_by: str | None
    approved_at: float | None

    @property
    def refused_globals(self) -> list[str]:
        return list(self.scan.get("refused", [])) if self.scan else []


class CodePolicy:
    """``[policy] run_code`` at the entry points, approvals, and the pickle scans of versions."""

    def __init__(self, registry: Registry, settings: Settings) -> None:
        self.registry = registry
        self.run_code = settings.policy.run_code
        #: Refuse starting unapproved code whoever caused it (system mode). In user mode only the owner (an
        #: admin) reaches the socket, so whatever starts was caused by an admin: nothing to refuse there.
        self.gate_starts = settings.mode == "system"
        self.access = Access(settings.access)
        #: Told the model whose recorded scan or approval changed (the daemon drops its cached reads).
        self.on_recorded: Callable[[str], None] | None = None
        #: Whether deployments follow ``model@alias`` (the deployment manager sets it): moving such an alias rolls out.
        self.followed: Callable[[str, str], bool] = lambda model, alias: True

    # -- reading and recording (blocking: call these in a thread) ----------------------------------------------

    def _scan_file(self, version_id: int, path: str) -> dict[str, Any]:
        sha = self.registry.code.file_sha256(version_id, path)
        if sha is None:
            return {"file": path, "globals": [], "refused": [], "refused_count": 0, "error": "the file is missing"}
        try:
            fd = self.registry.objects.open_object(sha)
        except ProtocolError as exc:  # a mirrored version whose objects are not on this host yet: not recorded
            return {"file": path, "globals": [], "refused": [], "refused_count": 0, "error": exc.message[:200],
                    "missing": True}  # fmt: skip
        with os.fdopen(fd, "rb") as fh:
            return scan_stream(fh, path).as_dict()

    def version_code(self, model: str, number: int) -> VersionCode:
        """The version's code facts; scans its pickle (and records the result) when nobody has yet."""
        row = self.registry.code.get(model, number)
        manifest = parse_manifest(row.manifest.encode())
        scan = json.loads(row.scan) if row.scan else None
        if row.scanned_at is None and is_pickle_name(manifest.model_path):
            scan = self.record_scan(model, number)
        return VersionCode(
            model,
            number,
            row.version_id,
            row.digest,
            runs_code(manifest, scan),
            manifest.training.command if manifest.training else None,
            scan,
            row.approved_by,
            row.approved_at,
        )

    def record_scan(self, model: str, number: int) -> dict[str, Any] | None:
        """Scan the version's model file if it is a pickle and record the result (None: no pickle)."""
        row = self.registry.code.get(model, number)
        manifest = parse_manifest(row.manifest.encode())
        if not is_pickle_name(manifest.model_path):
            return None
        scan = self._scan_file(row.version_id, manifest.model_path)
        if scan.pop("missing", False):
            return scan  # refused for now; scanned again once the file is here
        self.registry.code.record_scan(row.version_id, json.dumps(scan), time.time())
        if self.on_recorded is not None:
            self.on_recorded(model)
        return scan

    async def pushed(self, caller: CallerLike, pushed: r.PushResult, alias: str | None) -> None:
        """After a push: scan a new version's pickle and record the result; a push that moved an alias
        deployments follow is an alias move (an admin's approves the version; an operator's refused one is
        stored, but its rollout is refused before anything starts)."""
        v = pushed.version
        if pushed.created:
            await asyncio.to_thread(self.record_scan, v.model, v.number)
        if alias is not None and self.followed(v.model, alias) and self._permits(caller)[0]:
            await self.require(caller, v.model, v.number, f"move {alias}, which deployments follow, to")

    def _approve(self, code: VersionCode, user: str, reason: str) -> float:
        now = time.time()
        self.registry.code.approve(code.version_id, user, now, reason)
        if self.on_recorded is not None:
            self.on_recorded(code.model)
        return now

    # -- the policy -----------------------------------------------------------------------------------------------

    def _permits(self, caller: CallerLike) -> tuple[bool, bool]:
        """(may run code, is admin) for ``caller``."""
        role = self.access.role(caller.uid, caller.user, caller.groups)
        admin = role == "admin"
        return admin or (self.run_code == "operators" and role == "operator"), admin

    def _refuse(self, caller: CallerLike, what: str, keys: Iterable[str], ref: str) -> ProtocolError:
        listed = "; ".join(keys)
        return ProtocolError(
            ErrorCode.FORBIDDEN,
            f"{caller.user} may not {what}: its manifest runs code ({listed}), and {SETTING} lets only admins do "
            f"that until an admin approves the version (modeltui approve-code {ref})",
            {"setting": "policy.run_code", "runs_code": list(keys)},
        )

    def check(self, caller: CallerLike, model: str, number: int, what: str, *, training: bool = False) -> None:
        """Refuse (FORBIDDEN) ``caller`` making ``model:number``'s code run, unless the policy or an approval
        lets them; an admin's permitted action records the approval. Blocking: call it in a thread."""
        code = self.version_code(model, number)
        keys = list(code.runs_code)
        if training and code.training is not None:
            keys.append("[training] command")
        if not keys or code.approved_by is not None:
            return
        may, admin = self._permits(caller)
        if not may:
            raise self._refuse(caller, f"{what} {model}:{number}", keys, f"{model}:{number}")
        if admin and self.run_code == "admin":
            self._approve(code, caller.user, f"{what} by an admin")

    async def require(
        self, caller: CallerLike, model: str, number: int | None, what: str, *, training: bool = False
    ) -> None:
        if number is not None:
            await asyncio.to_thread(self.check, caller, model, number, what, training=training)

    async def require_ref(self, caller: CallerLike, ref: str, what: str, *, training: bool = False) -> None:
        """:meth:`require` for ``NAME``, ``NAME:N`` or ``NAME@ALIAS`` as it resolves now."""
        model, number, _ = await asyncio.to_thread(self.registry.resolve, ref)
        await self.require(caller, model, number, what, training=training)

    async def require_move(self, caller: CallerLike, model: str, alias: str, number: int | None) -> None:
        """An alias move to ``number`` that deployments follow rolls its code out: :meth:`require` it."""
        if number is not None and self.followed(model, alias):
            await self.require(caller, model, number, f"move {alias}, which deployments follow, to")

    def require_command(self, caller: CallerLike, model: str, key: str) -> None:
        """A maintenance policy that sets its own training command: only callers who may run code."""
        may, _ = self._permits(caller)
        if not may:
            raise ProtocolError(
                ErrorCode.FORBIDDEN,
                f"{caller.user} may not set the training command of {model}'s maintenance policy ({key}): "
                f"{SETTING} lets only admins choose commands the daemon's hosts run",
                {"setting": "policy.run_code"},
            )

    def rollback_target(self, model: str, alias: str) -> int | None:
        """The version a rollback of ``model@alias`` would move to (None: nothing to check; the registry
        then says why it cannot roll back)."""
        return self.registry.code.last_move_from(model, alias)

    def approve(self, ref: str, digest: str | None, reason: str, user: str) -> r.CodeApprovalInfo:
        """``modeltui approve-code``: an admin's approval, recorded with the version (blocking)."""
        model, number, current = self.registry.resolve(ref)
        if digest is not None and digest != current:
            raise conflict(f"{model}:{number} has digest {current}, not the {digest} you reviewed")
        code = self.version_code(model, number)
        keys = list(code.runs_code) + (["[training] command"] if code.training else [])
        at = self._approve(code, user, reason)
        return r.CodeApprovalInfo(
            model=model,
            version=number,
            approved_by=user,
            approved_at=datetime.fromtimestamp(at, UTC),
            runs_code=keys,
            reason=reason,
        )

    def _unapproved(self, code: VersionCode, keys: list[str]) -> str | None:
        if not keys or code.approved_by is not None or self.run_code != "admin" or not self.gate_starts:
            return None
        return (
            f"version {code.number} of {code.model} runs code ({'; '.join(keys)}) and no admin approved it "
            f"({SETTING}; modeltui approve-code {code.model}:{code.number})"
        )

    def inherit(self, model: str, number: int, parent: int, why: str) -> None:
        """A maintenance run's challenger (made by the run from ``parent``, which the run was allowed to run):
        scan it, and approve it when ``parent`` was approved (its code is the champion's, retrained)."""
        self.record_scan(model, number)
        champion = self.version_code(model, parent)
        if champion.approved_by is not None:
            self._approve(self.version_code(model, number), champion.approved_by, f"{why} of approved version {parent}")

    def start_refusal(self, model: str, number: int, command: str | None) -> str | None:
        """Before a maintenance run evaluates ``model:number`` and runs ``command`` (blocking): why it may not
        under ``"admin"`` (code no admin approved, whoever started the run), or None. A command that is not
        the manifest's own was set with ``maintain set``, which checked its caller."""
        code = self.version_code(model, number)
        manifest_command = command is not None and command == code.training
        return self._unapproved(code, code.runs_code + (["[training] command"] if manifest_command else []))

    def pickle_env(self, model: str, number: int) -> dict[str, str]:
        """What a worker loading ``model:number`` needs (checked already): the refused globals it may load."""
        refused = self.version_code(model, number).refused_globals
        return {PICKLE_ALLOW_ENV: ",".join(refused)} if refused else {}

    def runtime_env(self, model: str, number: int) -> dict[str, str]:
        """Before an instance of ``model:number`` starts (blocking): FORBIDDEN under ``"admin"`` for code that no
        admin approved, whoever caused the start; else what the runtime needs (the refused globals it may load)."""
        code = self.version_code(model, number)
        refusal = self._unapproved(code, code.runs_code)
        if refusal is not None:
            raise ProtocolError(ErrorCode.FORBIDDEN, refusal)
        refused = code.refused_globals
        return {PICKLE_ALLOW_ENV: ",".join(refused)} if refused else {}


__all__ = ["PICKLE_ALLOW_ENV", "CodePolicy", "VersionCode", "code_info", "runs_code"]
