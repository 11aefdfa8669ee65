"""Supervises every deployment: one asyncio task per deployment owns its instance and takes commands
(roll out a version, restart, stop) one at a time, so an instance is never started or stopped twice.

Rollout: start the new version beside the old (both on the public port, which an instance binds only once
its model is loaded), wait for ``/health``, record the switch, stop the old. A new version that fails is
stopped and the old keeps serving; the reason goes to the deployment's message and event log.

Supervision: an instance that exits is started again after a backoff that doubles (0.5 s up to
``restart_backoff_max_seconds``); ``crashloop_restarts`` exits in a row, each soon after starting, mark the
deployment ``crashloop`` (it keeps retrying at the longest backoff, and the last log line says why).

Daemon restart: instances keep running (their own sessions, or containers); the new daemon finds them by
label (``discover``), adopts the one each deployment recorded and stops any other (a rollout cut short).

Images (Docker): after an undeploy or a rollout, the image policy removes the images no deployment uses
beyond the newest ``[docker] keep_images`` versions of each model; ``gc`` applies it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Literal

from daemon.protocol import requests as q
from daemon.protocol import results as r
from daemon.protocol.deploy import ContainerOptions, DeploymentInfo
from daemon.protocol.errors import ErrorCode, ProtocolError, conflict, invalid, not_found
from daemon.protocol.events import DeploymentEvent, Event, LogEvent
from daemon.protocol.names import parse_ref
from daemon.registry.codepolicy import CodePolicy
from daemon.registry.service import Registry
from daemon.registry.signing import SigningPolicy
from daemon.serving.auth import ENV_TOKEN, sha256_hex
from daemon.settings import Settings
from daemon.store.credentials import Credentials
from daemon.store.deployments import DeploymentRecord

from .base import (
    Backend,
    BackendError,
    BackendUnavailable,
    Instance,
    InstanceSpec,
    ProgressLine,
    free_port,
)
from .endpoint import CertText, auth_required, route_settings, runtime_env, scheme
from .health import http_status
from .image import Pruned

log = logging.getLogger("modeltuid.deploy")

HEALTH_INTERVAL = 5.0
MAINTENANCE_INTERVAL = 10.0
Command = tuple[Literal["rollout", "restart", "stop"], int | None]


def _reason(exc: Exception) -> str:
    """Why a start failed, for the operator; unexpected errors also go to the daemon log with a traceback."""
    if isinstance(exc, ProtocolError):
        return exc.message
    if isinstance(exc, LaunchError | BackendError):
        return str(exc)
    log.error("starting an instance failed unexpectedly", exc_info=exc)
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    return f"internal error ({type(exc).__name__}); see the daemon log"


class LaunchError(Exception):
    """An instance did not become healthy; the message says why (exit status, last log line, timeout)."""


def _instance_record(inst: Instance, routes: dict[str, str] | None) -> dict[str, Any]:
    data = asdict(inst)
    data["started_at"] = inst.started_at.isoformat()
    data["routes"] = routes  # what it was started with (endpoint.route_settings); None: not known
    return data


class Supervisor:
    """Owns one deployment's instance. Everything that starts or stops it runs in :meth:`run`."""

    def __init__(
        self, manager: DeploymentManager, rec: DeploymentRecord, adopted: Instance | None, *, fresh: bool
    ) -> None:
        self.m = manager
        self.fresh = fresh
        self.rec = rec
        self.backend = manager.backends[rec.backend]
        self.current = adopted
        self.rollout_to: int | None = None
        self.commands: asyncio.Queue[Command] = asyncio.Queue()
        self.first_start: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self.short_runs = 0
        #: the last start failed because the backend's engine could not be reached
        self.unavailable = False
        self.progress_sinks: list[ProgressLine] = []
        self.task: asyncio.Task[None] | None = None
        #: the token the daemon's own calls to this deployment's runtimes send (loaded before the first)
        self.admin_token: str | None = None
        #: the clients' token hash of the last rotation: an instance started with another one is told it
        self.token_hash: str | None = None
        #: route_settings of the instance _launch started last (recorded by _adopt)
        self.launched_routes: dict[str, str] | None = None

    # -- bookkeeping -----------------------------------------------------------------------------------------

    async def _changed(
        self,
        kind: Literal["created", "changed", "rollout", "removed"] = "changed",
        event: str = "",
        message: str | None = None,
    ) -> None:
        """Persist the record (with an event-log line when ``event`` is set) and tell subscribers."""
        if message is not None:
            self.rec.message = message
        await asyncio.to_thread(
            self.m.registry.deployments.save, self.rec, (event, self.rec.message) if event else None
        )
        self._publish(kind, self.rec.message)

    async def change_state(
        self,
        state: str,
        health: str | None = None,
        *,
        kind: Literal["changed", "rollout", "removed"] = "changed",
        event: str = "",
        message: str | None = None,
    ) -> None:
        """The one place a deployment's state changes (and its health with it, when given): then it is
        recorded and published as :meth:`_changed` does; a removed deployment's row is gone, so only told."""
        self.rec.state = state
        if health is not None:
            self.rec.health = health
        if kind == "removed":
            self._publish(kind, "")
            return
        await self._changed(kind, event, message)

    def _publish(self, kind: Literal["created", "changed", "rollout", "removed", "progress"], message: str) -> None:
        self.m.publish(
            DeploymentEvent(
                kind=kind, deployment=self.rec.name, state=self.rec.state, version=self.rec.version, message=message
            )
        )

    def _progress(self, line: str) -> None:
        """Build and start progress: to a caller waiting on its deploy request, and to every subscriber."""
        for sink in list(self.progress_sinks):
            sink(line)
        self._publish("progress", line)

    # -- starting --------------------------------------------------------------------------------------------

    async def _launch(self, version: int) -> Instance:
        """Start ``version`` and return it once healthy; anything short of that stops it and raises."""
        spec = await self._spec(version)
        routes = route_settings(spec.runtime_env)
        inst = await self.backend.start(spec, self._progress)
        self.launched_routes = routes
        if inst.image:
            self.rec.image = inst.image
        self._progress(f"waiting for version {version} to become healthy")
        await self._until_healthy(inst)
        given = spec.runtime_env.get(ENV_TOKEN)
        if self.token_hash is not None and self.token_hash != given:  # rotated while it started: tell it now
            await self.tell_token(inst, self.token_hash)
        return inst

    async def tell_token(self, inst: Instance, token_hash: str) -> bool:
        """Hand the clients' token hash to a running instance (``POST /admin/token``); True when it took it."""
        body = json.dumps({"token_sha256": token_hash}).encode()
        status = await http_status(
            inst.admin_port, "/admin/token", method="POST", body=body, token=self.admin_token, within=5.0
        )
        return status == 200

    async def _tell_adopted(self, inst: Instance, recorded: dict[str, Any] | None) -> None:
        """An adopted instance gets the current clients' token hash: a daemon that died between storing a
        rotated token and telling the instance left it accepting the old one. One that cannot be told (e.g. a
        runtime older than ``/admin/token``), or that was started with other route settings than the daemon's
        settings give now (``[serving]`` changed, or an older daemon started it), is restarted."""
        why = ""
        try:
            creds = await self._credentials()
            wanted = route_settings(runtime_env(self.m.settings, self.rec.backend, creds))
            if (recorded or {}).get("routes") != wanted:
                why = "its [serving] route or TLS settings changed"
            elif creds.token:
                self.token_hash = sha256_hex(creds.token)
                if not await self.tell_token(inst, self.token_hash):
                    why = "it could not be told the clients' token"
        except (ProtocolError, OSError) as exc:
            log.warning("could not check the adopted instance %s of %s: %s", inst.key, self.rec.name, exc)
        if why:
            log.warning("restarting the adopted instance %s of %s: %s", inst.key, self.rec.name, why)
            await self._changed(event="restart", message=f"restarting the adopted instance: {why}")
            self.commands.put_nowait(("restart", None))

    async def _spec(self, version: int) -> InstanceSpec:
        """What the backend needs to start ``version``: its files (materialized from the registry) and ports."""
        dest = self.backend.models_root(self.m.state_dir / "deploy" / "models")  # where workloads may read
        model_dir = await asyncio.to_thread(self.m.registry.materialize, self.rec.model, version, dest)
        _, _, digest = await asyncio.to_thread(self.m.registry.resolve, f"{self.rec.model}:{version}")
        creds = await self._credentials()
        return InstanceSpec(
            deployment=self.rec.name,
            instance_id=secrets.token_hex(4),
            model=self.rec.model,
            version=version,
            digest=digest,
            model_dir=model_dir,
            public_port=self.rec.port,
            admin_port=free_port(),
            env=dict(self.rec.env),
            options=ContainerOptions.model_validate(self.rec.options),
            log_dir=self.m.state_dir / "deployments" / self.rec.name,
            feedback_inputs=self.m.settings.deploy.feedback_inputs,
            # the approval of a pickle is the daemon's word, like the tokens: not the deployment's own env
            runtime_env=runtime_env(self.m.settings, self.rec.backend, creds)
            | await asyncio.to_thread(self.m.code_policy.runtime_env, self.rec.model, version),
        )

    async def _credentials(self) -> Credentials:
        """The deployment's tokens (made with its row, or at the daemon's start for an older one)."""
        creds, _ = await asyncio.to_thread(self.m.registry.credentials.ensure, self.rec.name, with_token=True)
        self.admin_token = creds.admin_token
        return creds

    async def _until_healthy(self, inst: Instance) -> None:
        """Return once ``/health`` answers 200; an exit or the health timeout stops the instance and raises."""
        exited = asyncio.ensure_future(self.backend.wait(inst))
        deadline = time.monotonic() + self.m.settings.deploy.health_timeout_seconds
        try:
            while True:
                if exited.done():
                    raise LaunchError(await self._exit_reason(inst, exited.result()))
                # Ready on the admin port implies listening on the public one (bound before the model is set).
                status = await http_status(inst.admin_port, token=self.admin_token)
                if status == 200:
                    return
                if time.monotonic() > deadline:
                    raise LaunchError(
                        f"not healthy within {self.m.settings.deploy.health_timeout_seconds:.0f} s "
                        f"(GET /health answered {status or 'nothing'})"
                    )
                await asyncio.wait({exited}, timeout=0.02)
        except BaseException:
            exited.cancel()
            await self.backend.stop(inst, grace=2.0)
            raise
        finally:
            exited.cancel()

    async def _exit_reason(self, inst: Instance, status: int | None) -> str:
        lines = [ln for ln in await self.backend.logs(inst, 20) if ln.strip() and not ln.startswith("--- ")]
        last = lines[-1].strip() if lines else ""
        shown = (
            "exited"
            if status is None
            else f"was killed by signal {-status}"
            if status < 0
            else f"exited with status {status}"
        )
        return f"{shown}: {last}" if last else shown

    def _adopt(self, inst: Instance) -> None:
        self.current = inst
        self.rec.instance = _instance_record(inst, self.launched_routes)
        self.rec.version = inst.version
        self.rec.started_at = inst.started_at

    async def _start_current(self, version: int, *, reason: str, fresh: bool = False) -> bool:
        """(Re)start the deployment's only instance; False when it failed (backoff follows)."""
        await self.change_state("building" if self.backend.builds_images else "starting", "unknown", message="")
        started = time.monotonic()
        try:
            inst = await self._launch(version)
        except Exception as exc:
            self.unavailable = isinstance(exc, BackendUnavailable)
            self.current = None
            self.rec.instance = None
            self._note_short_run(time.monotonic() - started)
            text = _reason(exc)
            looping = self.short_runs >= self.m.settings.deploy.crashloop_restarts
            state = "failed" if fresh else "crashloop" if looping else "degraded"
            await self.change_state(state, event="failed", message=f"version {version} did not start: {text}")
            return False
        self._adopt(inst)
        note = f"{reason}: version {version} serving on {inst.endpoint}"
        await self.change_state("running", "healthy", event="started", message=note)
        return True

    def _note_short_run(self, ran: float) -> None:
        self.short_runs = self.short_runs + 1 if ran < self.m.settings.deploy.crashloop_window_seconds else 1

    def _backoff(self) -> float:
        return min(0.5 * float(2 ** max(self.short_runs - 1, 0)), self.m.settings.deploy.restart_backoff_max_seconds)

    # -- the loop --------------------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("supervisor of %s failed", self.rec.name)
            with contextlib.suppress(Exception):  # e.g. the row is gone: the log has the story
                note = "internal error in the supervisor; see the daemon log"
                await self.change_state("failed", event="failed", message=note)
        finally:
            if not self.first_start.done():
                self.first_start.set_result("the daemon stopped")

    async def _run(self) -> None:
        if await self._begin():
            return
        while True:
            if self.current is None:
                if await self._wait_command(self._backoff()):
                    return
                if self.current is None and self.rec.version is not None:
                    self.rec.restarts += 1
                    await self._start_current(self.rec.version, reason="restarted")
                continue
            if await self._watch(self.current):
                return

    async def _begin(self) -> bool:
        """The first start of a new deployment, or taking over after a daemon restart; True when it was
        stopped before it ever ran."""
        with contextlib.suppress(ProtocolError, OSError):  # a database error shows in the first start instead
            await self._credentials()
        if self.fresh and self.rec.version is not None:
            ok = await self._start_current(self.rec.version, reason="deployed", fresh=True)
            self.first_start.set_result(None if ok else self.rec.message)
            while not ok:  # never ran: nothing to restart on its own; a restart, a rollout or undeploy decide
                kind, version = await self.commands.get()
                if kind == "stop":
                    return True
                target = version or self.rec.version
                if target is not None:
                    ok = await self._start_current(target, reason="started", fresh=True)
        elif self.current is not None:
            self.first_start.set_result(None)
            recorded = self.rec.instance
            note = f"adopted {self.current.key} after a daemon restart"
            await self.change_state("running", "unknown", event="adopted", message=note)
            await self._tell_adopted(self.current, recorded)
            await self._check_health()
        else:
            self.first_start.set_result(None)
            if self.rec.instance is not None:  # it died while no daemon watched: the loop restarts it
                self.rec.instance = None
                note = "the instance was gone when the daemon started; restarting it"
                await self.change_state("degraded", "unhealthy", message=note)
        return False

    async def _watch(self, watched: Instance) -> bool:
        """Check its health while it runs and take commands; True when the deployment was stopped. Returns
        as well when a command changed the instance or it exited (then it is recorded as crashed)."""
        exited = asyncio.ensure_future(self.backend.wait(watched))
        try:
            while not exited.done():
                getter = asyncio.ensure_future(self.commands.get())
                done, _ = await asyncio.wait(
                    {exited, getter}, timeout=HEALTH_INTERVAL, return_when=asyncio.FIRST_COMPLETED
                )
                if getter in done:
                    if await self._handle(getter.result()):
                        return True
                    break  # the instance may have changed: watch the new one
                getter.cancel()
                if not done:
                    await self._check_health()
        finally:
            exited.cancel()
        if exited.done() and not exited.cancelled() and self.current is watched:
            await self._crashed(watched, exited.result())
        return False

    async def _wait_command(self, delay: float) -> bool:
        """Sleep ``delay`` unless a command arrives; True when the deployment was stopped."""
        try:
            cmd = await asyncio.wait_for(self.commands.get(), delay)
        except TimeoutError:
            return False
        return await self._handle(cmd)

    async def _crashed(self, inst: Instance, status: int | None) -> None:
        reason = await self._exit_reason(inst, status)
        ran = (datetime.now(UTC) - inst.started_at).total_seconds()
        self._note_short_run(ran)
        self.current = None
        self.rec.instance = None
        looping = self.short_runs >= self.m.settings.deploy.crashloop_restarts
        text = f"version {inst.version} {reason}; restarting in {self._backoff():.1f} s"
        if looping:
            text = (
                f"crash loop ({self.short_runs} exits within {self.m.settings.deploy.crashloop_window_seconds:.0f} s "
                f"of starting): {text}"
            )
        await self.change_state("crashloop" if looping else "degraded", "unhealthy", event="exited", message=text)

    async def _check_health(self) -> None:
        assert self.current is not None
        healthy = await http_status(self.current.admin_port, token=self.admin_token) == 200
        health = "healthy" if healthy else "unhealthy"
        if health != self.rec.health:
            self.rec.health = health
            await self._changed(event="health", message=f"health check: {health}")
        if (
            healthy
            and self.short_runs
            and (datetime.now(UTC) - self.current.started_at).total_seconds()
            > self.m.settings.deploy.crashloop_window_seconds
        ):
            self.short_runs = 0

    async def _handle(self, cmd: Command) -> bool:
        kind, version = cmd
        if kind == "stop":
            if self.current is not None:
                await self.backend.stop(self.current, self.m.settings.deploy.stop_grace_seconds)
                self.current = None
            return True
        if version is None:
            version = self.rec.version
        if version is None:
            return False
        if self.current is None:
            if kind == "rollout" and not await self._signed(version):
                return False
            self.short_runs = 0
            await self._start_current(version, reason="restarted" if kind == "restart" else f"rolled out to {version}")
            return False
        if kind == "rollout" and version == self.current.version:
            return False
        if kind == "rollout" and not await self._signed(version):
            return False
        await self._rollout(version)
        return False

    async def _signed(self, version: int) -> bool:
        """Whether ``[signing] require`` lets ``version`` roll out; a refusal is the deployment's event."""
        try:
            await self.m.signing.require(self.rec.model, version, "deploy")
        except ProtocolError as exc:
            message = f"rollout to version {version} refused: {exc.message}"
            await self._changed(kind="rollout", event="rollout-refused", message=message)
            return False
        return True

    async def _rollout(self, version: int) -> None:
        assert self.current is not None
        old = self.current
        self.rollout_to = version
        await self._changed(
            kind="rollout", event="rollout", message=f"rolling out version {version} (serving {old.version})"
        )
        try:
            new = await self._launch(version)
        except Exception as exc:
            text = _reason(exc)
            self.rollout_to = None
            await self._changed(
                kind="rollout",
                event="rollout-failed",
                message=f"rollout to version {version} failed: {text}; version {old.version} keeps serving",
            )
            return
        self._adopt(new)
        self.rollout_to = None
        note = f"rolled out version {version} (was {old.version})"
        await self.change_state("running", "healthy", kind="rollout", event="rolled-out", message=note)
        await self.backend.stop(old, self.m.settings.deploy.stop_grace_seconds)
        self.m.images_released(self.rec.backend)


class DeploymentManager:
    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        backends: dict[str, Backend],
        publish: Callable[[Event], None],
        listeners: Callable[[str], int],
    ) -> None:
        self.settings = settings
        self.state_dir = settings.state_dir
        self.registry = registry
        self.backends = backends
        self.publish = publish
        self.listeners = listeners
        self.supervisors: dict[str, Supervisor] = {}
        #: ``[serving] tls_cert``'s text for clients to pin, read again when the file changes
        self._cert = CertText(settings.serving.tls_cert) if settings.serving.tls_cert is not None else None
        #: the certificate text the Docker containers were last started or restarted with (None: not yet read)
        self._container_pem: str | None = None
        self.tailers: dict[str, asyncio.Task[None]] = {}
        self._maintenance: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: ``[signing] require``: checked before a deployment starts or rolls out a version
        self.signing = SigningPolicy(registry, settings.signing)
        #: ``[policy] run_code``: checked with the caller by the handlers, and before any instance starts
        self.code_policy = CodePolicy(registry, settings)
        self.code_policy.followed = lambda m, a: any(
            s.rec.model == m and s.rec.alias == a for s in self.supervisors.values()
        )

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Adopt what still runs, stop what nobody owns any more, start what should run and does not."""
        records = await asyncio.to_thread(self.registry.deployments.all)
        # deployments made before tokens existed get theirs now; a running instance is told on adoption
        for name in await asyncio.to_thread(self.registry.credentials.provide_missing):
            log.info("made the endpoint tokens of deployment %s (deployed before they existed)", name)
        for used in {rec.backend for rec in records}:
            self._warm(used)
        running: dict[str, list[Instance]] = {}
        for backend in self.backends.values():
            try:
                for inst in await backend.discover():
                    running.setdefault(inst.deployment, []).append(inst)
            except BackendError as exc:
                log.warning("cannot list %s instances: %s", backend.name, exc)
        wanted = {rec.name: rec for rec in records if rec.desired == "running"}
        for name, instances in running.items():
            rec = wanted.get(name)
            recorded = rec.instance["key"] if rec and rec.instance else None
            for inst in instances:
                if inst.key != recorded or inst.backend != (rec.backend if rec else None):
                    log.info("stopping %s instance %s of %s: no deployment owns it", inst.backend, inst.key, name)
                    await self.backends[inst.backend].stop(inst, grace=2.0)
        for rec in wanted.values():
            adopted = next(
                (i for i in running.get(rec.name, []) if rec.instance and i.key == rec.instance["key"]), None
            )
            if rec.backend not in self.backends:
                continue
            self._supervise(rec, adopted, fresh=False)
        self._maintenance = asyncio.create_task(self._maintain())

    def _warm(self, name: str) -> None:
        """Let a backend prepare for fast starts (the process backend's zygote: ~150 MiB), only once it has
        deployments to start, so a daemon that only keeps a registry does not pay for it."""
        backend = self.backends.get(name)
        if backend is not None:
            backend.warm()

    async def close(self) -> None:
        """Stop supervising; instances keep running for the next daemon to adopt."""
        tasks = [s.task for s in self.supervisors.values() if s.task] + list(self.tailers.values())
        if self._maintenance:
            tasks.append(self._maintenance)
        tasks += list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for backend in self.backends.values():
            await backend.close()

    def _supervise(self, rec: DeploymentRecord, adopted: Instance | None, *, fresh: bool) -> Supervisor:
        sup = Supervisor(self, rec, adopted, fresh=fresh)
        sup.task = asyncio.create_task(sup.run(), name=f"deployment {rec.name}")
        self.supervisors[rec.name] = sup
        return sup

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(MAINTENANCE_INTERVAL)
            for name, sup in list(self.supervisors.items()):
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(sup.backend.rotate, name)
            try:  # [signing] allowed_signers edited: what show says of each signature follows
                await self.signing.refresh()
            except (ProtocolError, OSError) as exc:
                log.warning("could not check the signatures again: %s", exc)
            await self._renewed_certificate()

    async def _renewed_certificate(self) -> None:
        """``[serving] tls_cert`` renewed: a process runtime reloads the files itself, a container only has the
        copy made at its start, so each running container is restarted (a rollout of the same version: the
        old one serves until the new one is healthy) to serve the certificate clients now pin."""
        pem = await self._cert_pem()
        if pem is None:
            return
        seen, self._container_pem = self._container_pem, pem
        if seen is None or seen == pem:
            return
        for name, sup in self.supervisors.items():
            if sup.rec.backend == "docker" and sup.current is not None:
                log.info("restarting %s to serve the renewed certificate", name)
                sup.commands.put_nowait(("restart", None))

    # -- queries for the layers above (monitor, maintenance, doctor, handlers) ----------------------------------

    def names(self) -> list[str]:
        """Every deployment this daemon supervises."""
        return list(self.supervisors)

    def exists(self, name: str) -> bool:
        return name in self.supervisors

    def uses_backend(self, backend: str) -> bool:
        """Some deployment runs on ``backend`` (the doctor fails rather than warns when its engine is down)."""
        return any(sup.rec.backend == backend for sup in self.supervisors.values())

    def running_version(self, name: str) -> tuple[str, int] | None:
        """(model, version) the deployment runs or starts; None for an unknown one."""
        sup = self.supervisors.get(name)
        if sup is None or sup.rec.version is None:
            return None
        return sup.rec.model, sup.rec.version

    def serving(self, model: str) -> list[tuple[str, Instance]]:
        """(deployment, instance) of every running instance of ``model`` (feedback reads their predictions)."""
        return [
            (name, sup.current)
            for name, sup in list(self.supervisors.items())
            if sup.rec.model == model and sup.current is not None
        ]

    def scrape_targets(self) -> list[tuple[str, Instance | None]]:
        """Every deployment that should run, with its current instance (None: it is down). One still on its
        first start is left out: starting is not being down (no spurious ``up == 0``)."""
        out: list[tuple[str, Instance | None]] = []
        for name, sup in list(self.supervisors.items()):
            if sup.rec.desired != "running":
                continue
            first_start = sup.rec.started_at is None and sup.rec.state in ("pending", "building", "starting")
            if sup.current is None and first_start:
                continue
            out.append((name, sup.current))
        return out

    # -- requests --------------------------------------------------------------------------------------------

    def _get(self, name: str) -> Supervisor:
        sup = self.supervisors.get(name)
        if sup is None:
            raise not_found(f"no deployment named {name!r}")
        return sup

    def _info(self, sup: Supervisor) -> DeploymentInfo:
        """The deployment as clients see it: its endpoint's scheme is https when its runtimes serve TLS."""
        info = sup.rec.info(sup.rollout_to)
        if info.endpoint and scheme(self.settings, sup.rec.backend) == "https":
            info = info.model_copy(update={"endpoint": "https://" + info.endpoint.removeprefix("http://")})
        return info

    async def _detail(self, sup: Supervisor, events: int = 20) -> r.DeploymentDetail:
        info = self._info(sup)
        found = await asyncio.to_thread(self.registry.deployments.events, sup.rec.name, events) if events else []
        return r.DeploymentDetail(deployment=info, events=found)

    async def deploy(self, req: q.Deploy, progress: ProgressLine, user: str = "") -> r.DeploymentDetail:
        rec = await self._new_record(req)
        by = f" for {user}" if user else ""  # who its instances (and their restarts) act for: the event log says
        # the tokens are made with the row, in one transaction, and the clients' token shown once, in this answer
        creds = await asyncio.to_thread(
            self.registry.deployments.create, rec, f"deploy {rec.ref} (version {rec.version}) on port {rec.port}{by}"
        )
        self.publish(DeploymentEvent(kind="created", deployment=rec.name, state=rec.state, version=rec.version))
        self._warm(rec.backend)
        sup = self._supervise(rec, None, fresh=True)
        if req.wait:
            await self._first_start(sup, req.timeout_seconds, progress)
        detail = await self._detail(sup)
        return detail.model_copy(update={"token": creds.token or None})

    # -- endpoint credentials ----------------------------------------------------------------------------------

    def admin_token(self, name: str) -> str | None:
        """The token the daemon's own calls to ``name``'s runtimes send (scrapes, feedback pulls)."""
        sup = self.supervisors.get(name)
        return sup.admin_token if sup is not None else None

    async def token(self, name: str, *, reveal: bool) -> r.DeploymentToken:
        sup = self._get(name)
        creds = await asyncio.to_thread(self.registry.credentials.get, name)
        return self._token_result(sup, creds, await self._cert_pem(), reveal=reveal)

    async def _cert_pem(self) -> str | None:
        return await asyncio.to_thread(self._cert.get) if self._cert is not None else None

    def _token_result(
        self, sup: Supervisor, creds: Credentials | None, pem: str | None, *, reveal: bool
    ) -> r.DeploymentToken:
        has = creds is not None and bool(creds.token)
        return r.DeploymentToken(
            name=sup.rec.name,
            exists=has,
            required=auth_required(self.settings, sup.rec.backend),
            tls_cert_pem=pem if scheme(self.settings, sup.rec.backend) == "https" else None,
            created_at=datetime.fromtimestamp(creds.created_at, UTC) if creds else None,
            rotated_at=datetime.fromtimestamp(creds.rotated_at, UTC) if creds else None,
            token=creds.token if reveal and creds is not None and creds.token else None,
        )

    async def rotate_token(self, name: str) -> r.DeploymentToken:
        """A new clients' token: stored first (a start from now on gets its hash), then handed to the running
        instance on its admin port (``POST /admin/token``), which takes it for every request from then on; an
        instance starting meanwhile (a rollout, a restart) is told once healthy. A running instance that cannot
        be told is restarted so none keeps the old token."""
        sup = self._get(name)
        creds = await asyncio.to_thread(self.registry.credentials.rotate, name)
        sup.admin_token = creds.admin_token
        sup.token_hash = sha256_hex(creds.token)
        inst = sup.current
        told = inst is None or await sup.tell_token(inst, sup.token_hash)
        if not told:
            sup.commands.put_nowait(("restart", None))
        await self._changed_token(sup, told)
        return self._token_result(sup, creds, await self._cert_pem(), reveal=True)

    async def _changed_token(self, sup: Supervisor, told: bool) -> None:
        how = "the running instance took it" if told else "restarting the instance to take it"
        await asyncio.to_thread(self.registry.deployments.save, sup.rec, ("token", f"new clients' token ({how})"))

    async def _new_record(self, req: q.Deploy) -> DeploymentRecord:
        """The deployment ``req`` asks for, checked against the backends and the deployments there are."""
        if req.backend not in self.backends:
            raise ProtocolError(ErrorCode.UNAVAILABLE, f"the {req.backend} backend is not available")
        try:
            ref = parse_ref(req.ref)
        except ValueError as exc:
            raise invalid(str(exc)) from None
        model, number, _ = await asyncio.to_thread(self.registry.resolve, req.ref)
        await self.signing.require(model, number, "deploy")
        name = req.name or (f"{model}-{ref.alias}" if ref.alias else model)
        if name in self.supervisors:
            raise conflict(f"a deployment named {name!r} exists; undeploy it first or pass another --name")
        used = {s.rec.port for s in self.supervisors.values()}
        port = req.port or free_port()
        if port in used:
            raise conflict(f"port {port} is used by another deployment")
        return DeploymentRecord(
            name=name,
            model=model,
            ref=str(ref) if ref.alias or ref.number else f"{model}:{number}",
            alias=ref.alias,
            version=number,
            backend=req.backend,
            port=port,
            env=dict(req.env),
            options=req.options.model_dump(),
        )

    async def _first_start(self, sup: Supervisor, within: float, progress: ProgressLine) -> None:
        """Wait for the first start (passing on its progress) up to ``within`` seconds; a deployment whose first
        start failed is removed, and the caller told why."""
        sup.progress_sinks.append(progress)
        try:
            failure = await asyncio.wait_for(asyncio.shield(sup.first_start), within)
        except TimeoutError:
            return
        finally:
            with contextlib.suppress(ValueError):
                sup.progress_sinks.remove(progress)
        if failure is not None:
            await self._remove(sup)
            code = ErrorCode.UNAVAILABLE if sup.unavailable else ErrorCode.CONFLICT
            raise ProtocolError(code, f"deployment {sup.rec.name!r} failed and was removed: {failure}")

    async def _remove(self, sup: Supervisor) -> None:
        await sup.commands.put(("stop", None))
        if sup.task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(sup.task), self.settings.deploy.stop_grace_seconds + 5)
            except TimeoutError:
                sup.task.cancel()
        if sup.current is not None:  # the supervisor had ended (never started): nothing else will stop it
            await sup.backend.stop(sup.current, self.settings.deploy.stop_grace_seconds)
        self.supervisors.pop(sup.rec.name, None)
        await asyncio.to_thread(self.registry.deployments.delete, sup.rec.name)
        await asyncio.to_thread(sup.backend.remove_logs, sup.rec.name)  # a later one of the same name starts afresh
        sup.rec.desired, sup.rec.instance = "stopped", None
        await sup.change_state("stopped", "unknown", kind="removed")

    async def undeploy(self, name: str) -> r.DeploymentDetail:
        sup = self._get(name)
        await self._remove(sup)
        self.images_released(sup.rec.backend)
        return r.DeploymentDetail(deployment=sup.rec.info())

    async def restart(self, name: str) -> r.DeploymentDetail:
        sup = self._get(name)
        if sup.task is None or sup.task.done():  # its supervisor died: a new one takes over what still runs
            sup = self._supervise(sup.rec, sup.current, fresh=sup.current is None)
            return await self._detail(sup)
        await sup.commands.put(("restart", None))
        return await self._detail(sup)

    def list(self, model: str | None) -> r.DeploymentList:
        return r.DeploymentList(
            items=[self._info(s) for n, s in sorted(self.supervisors.items()) if model in (None, s.rec.model)]
        )

    async def get(self, name: str, events: int) -> r.DeploymentDetail:
        return await self._detail(self._get(name), events)

    def alias_moved(self, model: str, alias: str, version: int | None) -> None:
        """Deployments of ``model@alias`` follow the alias: each gets a rollout of the new version."""
        for sup in self.supervisors.values():
            if sup.rec.model != model or sup.rec.alias != alias:
                continue
            if version is None:
                note = f"alias {alias} was removed; version {sup.rec.version} keeps serving"
                self._background(sup._changed(event="alias-removed", message=note))
                continue
            sup.commands.put_nowait(("rollout", version))

    # -- images ----------------------------------------------------------------------------------------------

    def images_in_use(self) -> set[tuple[str, int]]:
        """(model, version) of what every deployment runs, starts or rolls out to: their images stay."""
        used: set[tuple[str, int]] = set()
        for sup in self.supervisors.values():
            current = sup.current.version if sup.current else None
            used |= {(sup.rec.model, v) for v in (sup.rec.version, sup.rollout_to, current) if v is not None}
        return used

    async def prune_images(self, *, dry_run: bool = False) -> Pruned:
        """Apply the image policy now (``gc``); nothing without a backend that builds images."""
        pruned = Pruned()
        for backend in self.backends.values():
            if backend.builds_images:
                found = await backend.prune_images(
                    keep=self.settings.docker.keep_images, in_use=self.images_in_use(), dry_run=dry_run
                )
                pruned = Pruned(removed=pruned.removed + found.removed, bytes=pruned.bytes + found.bytes)
        return pruned

    def images_released(self, backend: str) -> None:
        """A deployment stopped using an image (undeploy, rollout): apply the policy in the background."""
        used = self.backends.get(backend)
        if used is not None and used.builds_images:
            self._background(self._prune_quietly())

    async def _prune_quietly(self) -> None:
        try:
            pruned = await self.prune_images()
        except BackendError as exc:
            log.warning("unused images not removed: %s", exc)
            return
        if pruned.removed:
            log.info("image policy (keep %d per model): removed %s", self.settings.docker.keep_images,
                     ", ".join(pruned.removed))  # fmt: skip

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- logs ------------------------------------------------------------------------------------------------

    def _log_instance(self, sup: Supervisor) -> Instance:
        if sup.current is not None:
            return sup.current
        return Instance(
            backend=sup.rec.backend,
            deployment=sup.rec.name,
            instance_id="",
            version=sup.rec.version or 0,
            key="",
            admin_port=0,
            public_port=sup.rec.port,
            started_at=datetime.now(UTC),
        )

    async def logs(self, req: q.Logs) -> r.LogLines:
        sup = self._get(req.name)
        try:
            lines = await sup.backend.logs(self._log_instance(sup), req.tail + 1) if req.tail else []
        except BackendError as exc:
            raise ProtocolError(ErrorCode.UNAVAILABLE, str(exc)) from None
        truncated = len(lines) > req.tail
        if req.follow and req.name not in self.tailers:
            self.tailers[req.name] = asyncio.create_task(self._tail(req.name))
        return r.LogLines(deployment=req.name, lines=lines[-req.tail :] if req.tail else [], truncated=truncated)

    async def _tail(self, name: str) -> None:
        """Publish new log lines while anyone follows them (one event per batch of lines)."""
        route = LogEvent(deployment=name, lines=[]).route
        try:
            await asyncio.sleep(0)  # the follower subscribes when its request returns
            while name in self.supervisors and self.listeners(route):
                sup = self.supervisors[name]
                watching = sup.current
                stream = sup.backend.follow(self._log_instance(sup))
                try:
                    async for batch in stream:
                        if batch:
                            for start in range(0, len(batch), 5000):
                                self.publish(LogEvent(deployment=name, lines=batch[start : start + 5000]))
                        if not self.listeners(route) or sup.current is not watching or name not in self.supervisors:
                            break
                finally:
                    await stream.aclose()  # type: ignore[attr-defined]
                await asyncio.sleep(0.2)
        except BackendUnavailable as exc:
            log.warning("stopped following the logs of %s: %s", name, exc)
        finally:
            self.tailers.pop(name, None)
