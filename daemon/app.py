"""Composition root: build every service, then start → serve → stop, like uvicorn's lifecycle.

Signal handlers are installed for the serving phase only and the previous ones restored afterwards, so an
embedding process (tests, a future supervisor) gets its own handling back.

Under systemd (``Type=notify``, see docs/operations.md) the daemon says ``READY=1`` once its socket accepts
requests, keeps ``STATUS=`` current, pings the watchdog from its own event loop and says ``STOPPING=1`` when
shutdown begins; with socket activation it serves on the socket systemd passed instead of binding one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import resource
import signal
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal

from daemon import __version__, workload
from daemon.access import Access
from daemon.audit import AuditStore
from daemon.deploy.base import Backend, owner_id
from daemon.deploy.manager import DeploymentManager
from daemon.deploy.process import ProcessBackend
from daemon.handlers.changes import RegistryChanges
from daemon.handlers.cluster import ClusterHandlers
from daemon.handlers.codepolicy import CodePolicyHandlers
from daemon.handlers.deployments import DeploymentHandlers
from daemon.handlers.dispatch import Dispatcher
from daemon.handlers.maintenance import MaintenanceHandlers
from daemon.handlers.monitoring import MonitoringHandlers
from daemon.handlers.ops import OpsHandlers
from daemon.handlers.registry import RegistryHandlers
from daemon.handlers.shared import ingest_pool as handler_pool
from daemon.handlers.signing import SigningHandlers
from daemon.logs import setup_logging
from daemon.maintain.engine import Maintenance, RunStore
from daemon.maintain.feedback import Source
from daemon.monitor.alerts import Alerts, AlertStore, manifest_rules_from
from daemon.monitor.exporter import Exporter
from daemon.monitor.scheduler import MonitorScheduler
from daemon.monitor.service import Monitor, deployment_targets
from daemon.monitor.store import MonitorStore
from daemon.protocol import lifecycle
from daemon.protocol.events import AlertEvent
from daemon.readcache import ReadCache
from daemon.registry.service import Registry
from daemon.server import AlreadyRunning, EventHub, Server, acquire_lock, adopt_socket
from daemon.settings import Settings
from daemon.systemd import Notifier, SystemdEnv, inherited_listener, watchdog_loop

if TYPE_CHECKING:
    from daemon.cluster.service import Cluster

log = logging.getLogger("modeltuid")

#: How often STATUS= is refreshed under systemd (seconds).
STATUS_INTERVAL = 60.0


class ActivationError(Exception):
    """systemd passed a socket the daemon cannot serve on."""


def raise_fd_limit() -> None:
    """Descriptors travel with requests; the soft limit (often 1024) would cap big pushes and checkouts."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class DaemonApp:
    """The daemon: one asyncio loop, one registry, one socket server.

    :meth:`startup` builds the services in dependency order (registry, deployments, audit, monitoring,
    cluster, maintenance, exporter), the handlers last, then serves; :meth:`shutdown` stops what was built,
    in the reverse order of what depends on what.
    """

    def __init__(self, settings: Settings, systemd: SystemdEnv | None = None) -> None:
        self.settings = settings
        self.systemd = systemd or SystemdEnv()
        self.notifier = Notifier(self.systemd.notify_socket)
        self.stopping = asyncio.Event()
        self.hub = EventHub()
        self.registry: Registry | None = None
        self.deployments: DeploymentManager | None = None
        self.audit: AuditStore | None = None
        self.monitor: Monitor | None = None
        self.alerts: Alerts | None = None
        self.scheduler: MonitorScheduler | None = None
        self.cluster: Cluster | None = None
        self.maintenance: Maintenance | None = None
        self.workloads = workload.WorkloadIdentity("", os.geteuid(), os.getegid(), settings.state_dir)
        self.exporter: Exporter | None = None
        self.ingest_pool: ThreadPoolExecutor | None = None
        self.registry_handlers: RegistryHandlers | None = None
        self.dispatcher: Dispatcher | None = None
        self.server: Server | None = None
        #: the socket systemd passed, until the server owns it (closed here if startup fails before that)
        self.listener: socket.socket | None = None
        self._lock_fds: list[int] = []
        #: what asked the daemon to stop (recorded beside the socket for ``modeltui daemon status``)
        self.stop_reason = "a daemon stop request"
        #: this run's record beside the socket, once the daemon holds the socket's lock
        self.last_run: lifecycle.LastRun | None = None

    def request_stop(self, reason: str = "a daemon stop request") -> None:
        if not self.stopping.is_set():
            self.stop_reason = reason
        self.stopping.set()

    def _record(self, state: Literal["running", "stopped", "crashed"], reason: str = "") -> None:
        """Say beside the socket how this run stands; the first way it ended wins (best effort: a record
        must never stop the daemon)."""
        s = self.settings
        if state == "running":
            self.last_run = lifecycle.LastRun(
                pid=os.getpid(), state="running", started_at=datetime.now(UTC), log_file=str(s.log_file)
            )
        elif self.last_run is not None and self.last_run.state == "running":
            self.last_run = self.last_run.model_copy(
                update={"state": state, "stopped_at": datetime.now(UTC), "reason": reason}
            )
        else:
            return  # not ours (another daemon holds the socket), or already ended
        try:
            lifecycle.write_record(s.socket, self.last_run)
        except OSError as exc:
            log.warning("cannot record the daemon's state beside its socket: %s", exc)

    def record_crash(self, exc: BaseException) -> None:
        """The daemon dies of ``exc``: say so beside the socket (its last line; the log has the traceback)."""
        self._record("crashed", lifecycle.exception_line(exc))

    async def startup(self) -> None:
        """Services in dependency order, the handlers last; the socket accepts requests at the very end."""
        s = self.settings
        started = time.monotonic()
        self._hold_state()
        listener = self.listener = self._inherited_socket()  # one we cannot serve on is refused first
        registry = self.registry = await self._open_registry()
        self.workloads = await asyncio.to_thread(workload.setup, s)  # who deployments and workers run as
        workload.configure(self.workloads)
        deployments = self.deployments = self._deployment_manager(registry)
        cache = ReadCache()
        changes = RegistryChanges(cache, self.hub, deployments)
        deployments.signing.on_checked = cache.invalidate  # a check at deploy time may change what show says
        audit = self.audit = await asyncio.to_thread(AuditStore, s.state_dir, s.busy_timeout_seconds)
        monitor, alerts, scheduler = await self._build_monitoring(registry, deployments)
        await deployments.start()
        cluster = None
        if s.cluster.enabled:  # before serving: pushes and alias moves go to the shared registry from the first
            cluster = self.cluster = await self._start_cluster(registry, deployments, changes)
        maintenance = self.maintenance = await self._start_maintenance(registry, deployments, alerts, changes)
        scheduler.start()  # after the deployment manager: its instances are the targets
        exporter_url = await self._start_exporter(monitor, deployments) if s.exporter.enabled else None
        pool = self.ingest_pool = handler_pool()
        registry_handlers = self.registry_handlers = RegistryHandlers(registry, changes, cache, pool, deployments)
        handlers = [
            OpsHandlers(s, registry, self.hub, audit, deployments, cluster, exporter_url, started, self.request_stop),
            registry_handlers,
            DeploymentHandlers(deployments, cluster),
            MonitoringHandlers(monitor, alerts, deployments),
            MaintenanceHandlers(maintenance, deployments.code_policy),
            CodePolicyHandlers(deployments.code_policy, changes),
            ClusterHandlers(cluster),
            SigningHandlers(deployments.signing, changes),
        ]
        await self._serve_socket(handlers, audit, listener)
        if self.notifier.enabled:  # everything is started: the socket accepts requests from here on
            self.notifier.ready(await self._status_line())

    def _hold_state(self) -> None:
        """Create the state and socket directories and take their locks; record this run beside the socket."""
        s = self.settings
        s.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if s.mode == "user":
            os.chmod(s.state_dir, 0o700)
        raise_fd_limit()
        # One daemon per state directory (whatever socket it was given) and one per socket.
        self._lock_fds.append(acquire_lock(s.state_dir / "daemon.lock", s.socket))
        # Private in user mode; traversable in system mode, where the socket's own 0660 decides access.
        s.socket.parent.mkdir(parents=True, exist_ok=True, mode=0o700 if s.mode == "user" else 0o755)
        self._lock_fds.append(acquire_lock(s.lock_file, s.socket))
        self._record("running")

    async def _open_registry(self) -> Registry:
        s = self.settings
        registry = await asyncio.to_thread(
            Registry, s.state_dir, busy_timeout_s=s.busy_timeout_seconds, gc_grace_seconds=s.gc_grace_seconds
        )
        await asyncio.to_thread(self._clear_staging, registry)
        return registry

    @staticmethod
    def _clear_staging(registry: Registry) -> None:
        """Partial uploads of a daemon that was killed stay in staging/ until removed: we hold the state
        lock and serve nothing yet, so none of them can still be in flight."""
        files, size = registry.clear_staging()
        if files:
            log.info("removed %d partial upload(s) (%d bytes) left in staging by an earlier daemon", files, size)

    def _deployment_manager(self, registry: Registry) -> DeploymentManager:
        """The manager with its backends (process always; docker when its SDK is installed); not started."""
        s = self.settings
        owner = owner_id(s.state_dir)
        backends: dict[str, Backend] = {
            "process": ProcessBackend(
                s.deploy,
                owner=owner,
                log_root=s.state_dir / "deployments",
                records=self.workloads.root / "deploy" / "instances",
                identity=self.workloads,
            ),
        }
        docker = _docker_backend(s, owner)
        if docker is not None:
            backends["docker"] = docker
        return DeploymentManager(s, registry, backends, self.hub.publish, self.hub.listeners)

    async def _build_monitoring(
        self, registry: Registry, deployments: DeploymentManager
    ) -> tuple[Monitor, Alerts, MonitorScheduler]:
        """The monitor, its alert engine (rules and states loaded) and its scheduler (not started)."""
        s = self.settings
        store = await asyncio.to_thread(MonitorStore, s.state_dir, busy_timeout_s=s.busy_timeout_seconds)
        monitor = self.monitor = Monitor(s.monitor, store, functools.partial(deployment_targets, deployments))
        alert_store = await asyncio.to_thread(AlertStore, s.state_dir, busy_timeout_s=s.busy_timeout_seconds)
        alerts = self.alerts = Alerts(
            alert_store,
            metrics=functools.partial(monitor.metrics, points=False),
            up=monitor.up,
            describe=deployments.running_version,
            manifest_rules=manifest_rules_from(registry),
            publish=self._alert_published(),
        )
        await asyncio.to_thread(alerts.load)
        monitor.alerts = alerts
        self.scheduler = MonitorScheduler(monitor)
        return monitor, alerts, self.scheduler

    def _alert_published(self) -> Callable[[AlertEvent], None]:
        """Alert events go to subscribers, and to maintenance (an alert may trigger a run); on the loop.
        Maintenance starts after the alerts: it is looked up when an alert fires."""

        def publish(event: AlertEvent) -> None:
            self.hub.publish(event)
            if self.maintenance is not None:
                self.maintenance.on_alert(event)

        return publish

    async def _start_cluster(
        self, registry: Registry, deployments: DeploymentManager, changes: RegistryChanges
    ) -> Cluster:
        """Join the cluster: connect to ZooKeeper in the background; serve from the cache meanwhile."""
        from daemon.cluster.service import Cluster, deployment_nodes  # kazoo only where a cluster is configured

        cluster = Cluster(
            self.settings,
            registry,
            deployments=lambda: deployment_nodes(deployments.list(None).items, cluster.id, cluster.host),
            notify=changes.stored,
            capabilities=sorted(deployments.backends),
            version=__version__,
        )
        await cluster.start()
        return cluster

    async def _start_maintenance(
        self, registry: Registry, deployments: DeploymentManager, alerts: Alerts, changes: RegistryChanges
    ) -> Maintenance:
        s = self.settings
        store = await asyncio.to_thread(RunStore, s.state_dir, s.busy_timeout_seconds)
        interrupted = await asyncio.to_thread(store.interrupt_running)
        if interrupted:
            log.warning("%d maintenance run(s) were cut short by the last stop: marked interrupted", interrupted)
        maintenance = Maintenance(
            registry,
            store,
            self.workloads.root,  # the runs' files: where their workers (the workload account) reach them
            notify=changes.stored,
            deployments=lambda model: list(deployments.list(model).items),
            alert_names=functools.partial(own_alert_names, alerts, deployments),
            leader=functools.partial(remote_leader, self.cluster),
            feedback_inputs=s.deploy.feedback_inputs,
            signing=deployments.signing,
            code_policy=deployments.code_policy,
            sources=lambda model: [
                Source(name, i.version, i.admin_url, deployments.admin_token(name))
                for name, i in deployments.serving(model)
            ],
        )
        await maintenance.start()
        return maintenance

    async def _start_exporter(self, monitor: Monitor, deployments: DeploymentManager) -> str | None:
        """Serve the daemon's own /metrics; a taken port is logged, not fatal (the registry still serves).
        Returns its URL, None when it does not serve."""
        exporter = Exporter(self.settings.exporter, monitor, lambda: deployments.list(None).items)
        try:
            url = await exporter.start()
        except OSError as exc:
            log.error("the Prometheus exporter cannot listen on %s: %s", self.settings.exporter.address, exc)
            return None
        self.exporter = exporter
        log.info("Prometheus exporter serving on %s", url)
        return url

    async def _serve_socket(self, handlers: list[object], audit: AuditStore, listener: socket.socket | None) -> None:
        """Route requests to ``handlers`` and accept connections (on ``listener`` when systemd passed one)."""
        s = self.settings
        access = Access(s.access)  # roles ([access]): the daemon's user and root are admin
        self.dispatcher = Dispatcher(handlers, access, audit)
        self.server = Server(
            s.socket,
            self.dispatcher.dispatch,
            self.hub,
            socket_mode=0o600 if s.mode == "user" else 0o660,
            max_clients=s.max_clients,
            max_clients_per_uid=s.max_clients_per_uid,
            admin_reserved_clients=s.admin_reserved_clients,
            idle_timeout=s.idle_timeout_seconds,
            listener=listener,
            access=access,
        )
        await self.server.start()
        activated = " (socket from systemd)" if self.systemd.listen_fds else ""
        log.info("modeltuid %d serving on %s%s (state in %s)", os.getpid(), s.socket, activated, s.state_dir)

    def _inherited_socket(self) -> socket.socket | None:
        """The listening socket systemd passed (socket activation), or None to bind our own."""
        fd = inherited_listener(self.systemd)
        if fd is None:
            return None
        try:
            return adopt_socket(fd, self.settings.socket)
        except ValueError as exc:
            raise ActivationError(f"socket activation: {exc}") from None

    async def _status_line(self) -> str:
        """A one-line summary for ``systemctl status`` (STATUS=)."""
        deployments = len(self.deployments.names()) if self.deployments is not None else 0
        models = "?"
        if self.registry is not None:
            try:
                models = str(await asyncio.to_thread(self.registry.model_count))
            except Exception as exc:  # a summary must never take the daemon down
                log.debug("status summary: %s", exc)
        return f"serving on {self.settings.socket}: {deployments} deployments, {models} models"

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(STATUS_INTERVAL)
            self.notifier.status(await self._status_line())

    async def shutdown(self) -> None:
        """Stop what was built: the socket first, the cluster before anything it reports on, readers before
        what they read, the stores and the locks last."""
        self.notifier.stopping()
        log.info("shutting down")
        if self.server is not None:
            await self.server.stop()
        elif self.listener is not None:  # startup failed before the server took it over
            self.listener.close()
        if self.cluster is not None:  # leave the cluster (its ephemeral nodes go) before anything else stops
            await self.cluster.stop()
        if self.exporter is not None:  # before the monitor it reads
            await self.exporter.stop()
        if self.maintenance is not None:  # runs in flight stop here (marked interrupted at the next start)
            await self.maintenance.close()
            await asyncio.to_thread(self.maintenance.store.close)
        await self._stop_monitoring()
        if self.deployments is not None:
            await self.deployments.close()  # deployments keep running: the next daemon adopts them
        if self.ingest_pool is not None:
            await asyncio.to_thread(self.ingest_pool.shutdown, wait=True)
        if self.registry_handlers is not None:  # objects.put uploads left: their descriptors and staging files
            self.registry_handlers.inline.close()
        if self.audit is not None:
            await asyncio.to_thread(self.audit.close)
        if self.registry is not None:
            await asyncio.to_thread(self.registry.close)
        self._record("stopped", self.stop_reason)
        while self._lock_fds:  # last: no other daemon may start while we still write
            os.close(self._lock_fds.pop())
        log.info("stopped")

    async def _stop_monitoring(self) -> None:
        """Before the deployment manager it scrapes: the scheduler, then the stores its jobs write."""
        if self.scheduler is not None:
            await self.scheduler.shutdown()
        if self.monitor is not None:
            await asyncio.to_thread(self.monitor.store.close)
        if self.alerts is not None:
            await asyncio.to_thread(self.alerts.store.close)

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        previous: dict[signal.Signals, Any] = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.getsignal(sig)
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        tasks: list[asyncio.Task[None]] = []
        interval = self.systemd.watchdog_interval
        if self.notifier.enabled and interval is not None:  # from the start: a slow startup is not a hang
            tasks.append(loop.create_task(watchdog_loop(self.notifier, interval), name="systemd-watchdog"))
        try:
            await self.startup()
            if self.notifier.enabled:
                tasks.append(loop.create_task(self._status_loop(), name="systemd-status"))
            await self.stopping.wait()
        except Exception as exc:
            self.record_crash(exc)
            raise
        finally:
            for sig, handler in previous.items():
                loop.remove_signal_handler(sig)
                signal.signal(sig, handler)
            try:
                await self.shutdown()
            finally:
                for task in tasks:  # the watchdog pings until shutdown is done
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                self.notifier.close()


def own_alert_names(alerts: Alerts, deployments: DeploymentManager, model: str) -> set[str]:
    """Rules the deployments of ``model`` have of their own (``alerts add``): maintenance leaves the alerts
    they raise to the operator. Blocking."""
    names = {d.name for d in list(deployments.list(model).items)}
    return {rule.name for rule in alerts.rules({}).items if rule.deployment in names}


def remote_leader(cluster: Cluster | None, model: str) -> str | None:
    """The host elected to maintain ``model`` when it is another one (None: this daemon runs it)."""
    if cluster is None:
        return None
    who = cluster.presence.leaders.get(f"model-{model}")
    return None if who in (None, cluster.id) else who


def _docker_backend(settings: Settings, owner: str) -> Backend | None:
    """The Docker backend when its SDK is installed (the engine itself is only contacted when used)."""
    try:
        from daemon.deploy.docker import DockerBackend
    except ImportError as exc:
        log.info("the docker backend is unavailable: %s", exc)
        return None
    auth = settings.registry_access(settings.docker.registry).docker_auth if settings.docker.registry else None
    return DockerBackend(settings.docker, state_dir=settings.state_dir, owner=owner, registry_auth=auth)


def _sighup_ignored(signum: int, frame: FrameType | None) -> None:  # pragma: no cover - trivial
    """An embedded daemon outlives the SSH session that started it."""


def run(settings: Settings, *, to_stderr: bool = True, systemd: SystemdEnv | None = None) -> int:
    """Serve until SIGTERM/SIGINT. ``systemd``: what :func:`daemon.systemd.take_environment` read (it must
    run first, before anything can start a child process that would inherit the variables)."""
    setup_logging(settings, to_stderr=to_stderr)
    signal.signal(signal.SIGHUP, _sighup_ignored)
    app = DaemonApp(settings, systemd)
    try:
        asyncio.run(app.serve())
    except (AlreadyRunning, ActivationError):
        raise  # expected refusals: the caller says why and exits with its own status
    except Exception as exc:
        log.critical("the daemon stops on an unexpected error", exc_info=exc)
        app.record_crash(exc)
        raise
    return 0
