"""The Textual App: connects to modeltuid, runs every daemon call in a worker, pushes live updates.

Screens and widgets never touch the client: screens post :class:`~modeltui.screens.base.RegistryScreen.Call`
messages, this App sends them in workers and hands the typed results back. Worker errors are handled in one
place (:meth:`ModelTuiApp.on_worker_state_changed`). Registry, deployment and alert events are debounced into
one refresh of the screens they concern (an alert that fires is also notified, whatever screen is shown); a
deployment's log is followed over a connection of its own, owned by the screen that shows it
(:meth:`ModelTuiApp._on_follow`).

The terminal is asked for clicks only, not every mouse motion, and a terminal that hangs up ends the App
(:mod:`modeltui.terminal`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Literal, TypeVar

from textual import on
from textual.app import App
from textual.binding import Binding, BindingType
from textual.driver import Driver
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.reactive import reactive
from textual.timer import Timer
from textual.worker import Worker, WorkerState

from daemon.protocol import requests, results
from daemon.protocol.errors import ProtocolError
from daemon.protocol.events import AlertEvent, DeploymentEvent, Event, LogEvent, RegistryEvent

from .client import DaemonClient, DaemonUnavailable
from .commands import PROVIDERS as COMMAND_PROVIDERS
from .commands import CommandMode
from .format import printable
from .screens import (
    AlertsScreen,
    FleetScreen,
    HelpScreen,
    HomeScreen,
    MaintenanceScreen,
    ModelsScreen,
    RegistryScreen,
)
from .screens.base import AnyCall
from .terminal import HANGUP_STATUS, HangupWatch, driver_for, mouse_mode

ConnectionState = Literal["connecting", "connected", "disconnected"]
ClientFactory = Callable[[], Awaitable[DaemonClient]]

R = TypeVar("R", bound=results.Result)

#: Registry events arriving within this many seconds cause one refresh.
DEBOUNCE_SECONDS = 0.1
CONNECT_WORKER = "connect"


class ModelTuiApp(App[None]):
    """The modeltui terminal UI."""

    TITLE = "modeltui"
    CSS_PATH = "app.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        # Works on every screen; not in the footer (the views' own keys fill it at 80 columns): the help lists it.
        Binding("F", "fleet", "Fleet", key_display="F", show=False),
        Binding("M", "maintenance", "Maintenance", key_display="M", show=False),
        Binding("ctrl+r", "reconnect", "Reconnect"),
        Binding("colon", "command_line", "Command", key_display=":", show=False),
    ]

    connection: reactive[ConnectionState] = reactive("connecting", init=False)
    """State of the connection to the daemon, shown in the header."""

    class RegistryChanged(Message):
        """The daemon pushed a registry event (posted from the client's listener, on the event loop)."""

        def __init__(self, event: RegistryEvent) -> None:
            super().__init__()
            self.event = event

    class DeploymentsChanged(Message):
        """The daemon pushed a deployment event (posted from the client's listener, on the event loop)."""

        def __init__(self, event: DeploymentEvent) -> None:
            super().__init__()
            self.event = event

    class TerminalLost(Message):
        """The terminal hung up (posted from the watch's thread): nobody can see or drive the App."""

    class AlertsChanged(Message):
        """The daemon pushed an alert event (posted from the client's listener, on the event loop)."""

        def __init__(self, event: AlertEvent) -> None:
            super().__init__()
            self.event = event

    COMMANDS = App.COMMANDS | set(COMMAND_PROVIDERS)
    """Textual's own palette commands, the App's actions and the registry's objects (ctrl+p)."""

    def __init__(self, client_factory: ClientFactory, *, readonly: bool = False) -> None:
        super().__init__()
        self.client_factory = client_factory
        self.readonly = readonly
        """Hide and block the actions that change the registry."""
        self.client: DaemonClient | None = None
        self._connected = asyncio.Event()
        self._pending: list[RegistryEvent] = []
        self._pending_deployments: list[DeploymentEvent] = []
        self._pending_alerts: list[AlertEvent] = []
        self._debounce: Timer | None = None
        self._lost_reason = ""
        self.commands = CommandMode(self, self.ask)
        """The command line (``:``): its history and the names it completes."""

    # -- lifecycle -------------------------------------------------------------------------------------
    def get_driver_class(self) -> type[Driver]:
        """Textual's driver, asking for clicks only on Linux terminals unless ``MODELTUI_MOUSE`` says more."""
        return driver_for(super().get_driver_class(), mouse_mode())

    def on_mount(self) -> None:
        self._update_subtitle()
        self.push_screen(ModelsScreen())
        self._start_connect()
        if not self.is_headless:
            watch = HangupWatch.for_stdin(self._terminal_lost)
            if watch is not None:
                watch.start()

    def _terminal_lost(self) -> None:
        """Called from the watch's thread: hand over to the event loop."""
        self.post_message(self.TerminalLost())

    @on(TerminalLost)
    def _on_terminal_lost(self) -> None:
        self.exit(return_code=HANGUP_STATUS)

    async def on_unmount(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.remove_listener(self._on_daemon_event)
            await client.close()

    def _start_connect(self) -> None:
        self._connected.clear()
        self.connection = "connecting"
        self.run_worker(self._connect(), name=CONNECT_WORKER, group=CONNECT_WORKER, exclusive=True,
                        exit_on_error=False)

    async def _connect(self) -> None:
        """Connect, subscribe, then wait: the worker fails with DaemonUnavailable when the connection drops."""
        try:
            client = await self.client_factory()
            if client.welcome.role in (None, "viewer") and not self.readonly:
                # The daemon would refuse every change anyway: do not offer them (docs/operations.md).
                self.readonly = True
                self.notify(f"{client.welcome.user} has the viewer role here: read-only", timeout=6)
                self.screen.refresh_bindings()
            client.readonly = self.readonly
            try:
                await client.subscribe("registry", "deployments", "alerts")
            except BaseException:
                await client.close()
                raise
        finally:
            self._connected.set()  # waiting calls go on (and find no client if this failed)
        self.client = client
        client.add_listener(self._on_daemon_event)
        self.connection = "connected"
        self._reload_all(None)
        await client.closed.wait()
        if self.client is client:  # not closed by us on exit: the daemon went away
            self.client = None
            client.remove_listener(self._on_daemon_event)
            await client.close()
            raise DaemonUnavailable("lost the connection to the daemon")

    async def ask(self, request: requests.BaseRequest[R]) -> R | None:
        """One call for the App's own needs (command completion, the palette's objects): None when not
        connected; errors are the caller's."""
        client = self.client
        if client is None or client.closed.is_set():
            return None
        return await client.call(request)

    async def _client(self) -> DaemonClient | None:
        await self._connected.wait()
        return self.client

    # -- calls from screens ----------------------------------------------------------------------------
    @on(RegistryScreen.Call)
    def _on_call(self, message: AnyCall) -> None:
        message.stop()
        group = f"call-{id(message.screen)}-{message.group}" if message.group else "call"

        async def send() -> None:  # a callable, not a coroutine: a worker cancelled before it starts
            await self._call(message)  # leaves no never-awaited coroutine behind

        _worker: Worker[None] = self.run_worker(
            send, group=group, exclusive=message.group is not None, exit_on_error=False,
            name=type(message.request).__name__,
        )

    async def _call(self, message: AnyCall) -> None:
        client = await self._client()
        if client is None:
            return
        result = await client.call(message.request, progress=message.progress)
        if message.success:
            self.notify(message.success)
        if message.reply is not None and message.screen.is_attached:
            message.reply(result)

    # -- following a deployment's log ------------------------------------------------------------------
    @on(RegistryScreen.Follow)
    def _on_follow(self, message: RegistryScreen.Follow) -> None:
        """Run the follow on the screen's own worker: Textual cancels it when the screen is removed, and
        the cancellation closes the connection (so the daemon stops sending)."""
        message.stop()

        async def follow() -> None:
            await self._follow(message)

        _worker: Worker[None] = message.screen.run_worker(
            follow, group="follow-logs", exclusive=True, exit_on_error=False,
            name=f"logs {message.deployment}",
        )

    async def _follow(self, message: RegistryScreen.Follow) -> None:
        """Open a connection, ask for the tail with follow=True, then hand every batch of new lines to the
        screen until the connection ends. Errors end the stream with a reason; they are also notified
        unless the daemon is simply gone (the header says so already)."""
        if await self._client() is None:
            message.ended("not connected to the daemon")
            return
        try:
            client = await self.client_factory()
        except ProtocolError as exc:
            message.ended(f"cannot follow the log: {exc.message}")
            return
        early: list[list[str]] | None = []  # batches that overtake the tail's answer

        def on_event(event: Event) -> None:
            if isinstance(event, LogEvent) and event.deployment == message.deployment:
                if early is None:
                    message.lines(event.lines)
                else:
                    early.append(event.lines)

        client.add_listener(on_event)
        try:
            tail = await client.call(
                requests.Logs(name=message.deployment, tail=message.tail, follow=True)
            )
            message.lines(tail.lines)
            overtaken, early = early or [], None
            for batch in overtaken:
                message.lines(batch)
            await client.closed.wait()
            message.ended("the log stream ended: the daemon closed the connection")
        except ProtocolError as exc:
            message.ended(f"the log stream ended: {exc.message}")
            if not isinstance(exc, DaemonUnavailable):
                self.notify(exc.message, title=exc.code.value, severity="error", timeout=8)
        except Exception as exc:  # a screen's worker: nobody else would report it
            message.ended(f"the log stream ended: {type(exc).__name__}: {exc}")
            self.notify(f"{type(exc).__name__}: {exc}", title="unexpected error", severity="error", timeout=8)
        finally:
            client.remove_listener(on_event)
            await client.close()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place worker errors are handled."""
        worker: Worker[Any] = event.worker
        if event.state != WorkerState.ERROR or worker.error is None:
            return
        error = worker.error
        if isinstance(error, DaemonUnavailable) or worker.name == CONNECT_WORKER:
            self._disconnected(error)
        elif isinstance(error, ProtocolError):
            if self.client is None or self.client.closed.is_set():
                self._disconnected(error)
            else:
                self.notify(error.message, title=error.code.value, severity="error", timeout=8)
        else:
            self.notify(f"{type(error).__name__}: {error}", title="unexpected error", severity="error",
                        timeout=8)

    def _disconnected(self, error: BaseException) -> None:
        reason = error.message if isinstance(error, ProtocolError) else str(error)
        if self.connection == "disconnected" and reason == self._lost_reason:
            return
        self._lost_reason = reason
        self.connection = "disconnected"
        self.notify(f"{reason}\nPress ctrl+r to reconnect.", title="daemon unavailable", severity="error",
                    timeout=30)

    # -- live updates ----------------------------------------------------------------------------------
    def _on_daemon_event(self, event: Event) -> None:
        if isinstance(event, RegistryEvent):
            self.post_message(self.RegistryChanged(event))
        elif isinstance(event, DeploymentEvent):
            self.post_message(self.DeploymentsChanged(event))
        elif isinstance(event, AlertEvent):
            self.post_message(self.AlertsChanged(event))

    @on(RegistryChanged)
    def _on_registry_changed(self, message: RegistryChanged) -> None:
        self._pending.append(message.event)
        if self._debounce is None:
            self._debounce = self.set_timer(DEBOUNCE_SECONDS, self._flush_events)

    @on(DeploymentsChanged)
    def _on_deployments_changed(self, message: DeploymentsChanged) -> None:
        self._pending_deployments.append(message.event)
        if self._debounce is None:
            self._debounce = self.set_timer(DEBOUNCE_SECONDS, self._flush_events)

    @on(AlertsChanged)
    def _on_alerts_changed(self, message: AlertsChanged) -> None:
        event = message.event
        if event.state == "firing":
            value = "" if event.value is None else f" (value {event.value:.4g})"
            self.notify(f"{event.deployment}: {event.rule} {event.expr}{value}".strip()
                        + (f"\n{event.message}" if event.message else ""),
                        title=f"{event.severity} alert firing", markup=False,
                        severity="error" if event.severity == "critical" else "warning", timeout=15)
        elif event.state == "resolved":
            self.notify(f"{event.deployment}: {event.rule} resolved", title="alert resolved", markup=False,
                        timeout=8)
        self._pending_alerts.append(event)
        if self._debounce is None:
            self._debounce = self.set_timer(DEBOUNCE_SECONDS, self._flush_events)

    def _flush_events(self) -> None:
        events, self._pending, self._debounce = self._pending, [], None
        deployments, self._pending_deployments = self._pending_deployments, []
        alerts, self._pending_alerts = self._pending_alerts, []
        if alerts:
            for screen in self.screen_stack:
                if isinstance(screen, AlertsScreen | HomeScreen):  # the views that show alerts
                    screen.alerts_changed(alerts)
        if events:
            self._reload_all(events)
        if deployments:
            for screen in self.screen_stack:
                if isinstance(screen, RegistryScreen):
                    screen.deployments_changed(deployments)

    def _reload_all(self, events: list[RegistryEvent] | None) -> None:
        """Re-read every registry screen in the stack that the events concern (all of them for None)."""
        for screen in self.screen_stack:
            if isinstance(screen, RegistryScreen) and (events is None or screen.wants(events)):
                screen.reload()

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Every notification (screens' included) with control characters spelt out: messages carry daemon
        text (alert messages, errors naming registry strings)."""
        super().notify(printable(message, keep="\n"), title=printable(title), severity=severity, timeout=timeout,
                       markup=markup)

    # -- header ----------------------------------------------------------------------------------------
    def watch_connection(self) -> None:
        self._update_subtitle()
        self.refresh_bindings()

    def _update_subtitle(self) -> None:
        parts = {
            "connecting": "connecting to the daemon…",
            "connected": "",
            "disconnected": "DISCONNECTED from the daemon (ctrl+r reconnects)",
        }
        text = parts[self.connection]
        if self.readonly:
            text = f"read-only {text}".strip()
        self.sub_title = text
        self.set_class(self.connection == "disconnected", "-disconnected")

    # -- actions ---------------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "reconnect":
            return self.connection == "disconnected"
        return True

    def action_command_line(self) -> None:
        """Open the command line at the bottom (``:models``, ``:deploy /fraud``, ``:ctx prod``…)."""
        self.commands.open()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_fleet(self) -> None:
        """Open the fleet view (every host of the cluster and what it runs), from any screen."""
        if not isinstance(self.screen, FleetScreen):
            self.push_screen(FleetScreen())

    def action_maintenance(self) -> None:
        """Open the maintenance view (every maintenance run, approve or reject a challenger), from any screen."""
        if not isinstance(self.screen, MaintenanceScreen):
            self.push_screen(MaintenanceScreen())

    def action_reconnect(self) -> None:
        if self.connection == "disconnected":
            self._start_connect()
