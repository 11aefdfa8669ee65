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
import math
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeVar

from textual import on
from textual.app import App
from textual.binding import Binding, BindingType
from textual.command import Provider
from textual.driver import Driver
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.reactive import reactive
from textual.screen import Screen
from textual.timer import Timer
from textual.worker import Worker, WorkerState

from daemon.protocol import requests, results
from daemon.protocol.errors import ProtocolError
from daemon.protocol.events import AlertEvent, DeploymentEvent, Event, LogEvent, RegistryEvent

from .client import DaemonClient, DaemonUnavailable
from .contexts import open_client
from .fanout import FanOut
from .format import printable
from .screens import (
    AlertsScreen,
    DeploymentScreen,
    DeploymentsScreen,
    FleetScreen,
    HelpScreen,
    HomeScreen,
    MaintenanceScreen,
    ModelsScreen,
    RegistryScreen,
)
from .screens.base import AnyCall
from .screens.home import RUN_LIMIT
from .screens.hosts import FanOutCall, FanOutRelease, HostsScreen
from .terminal import HANGUP_STATUS, HangupWatch, driver_for, mouse_mode
from .widgets.status_header import ShellStatus

if TYPE_CHECKING:
    from .commands import CommandMode

ConnectionState = Literal["connecting", "connected", "disconnected", "reconnecting"]
ClientFactory = Callable[[], Awaitable[DaemonClient]]

R = TypeVar("R", bound=results.Result)

#: Registry events arriving within this many seconds cause one refresh.
DEBOUNCE_SECONDS = 0.1
CONNECT_WORKER = "connect"
#: Automatic reconnection: the first try this long after the loss, doubling up to BACKOFF_MAX, ±20 % jitter.
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 10.0

#: The top-level views ``show_view`` switches between (the models view is always at the bottom).
VIEWS = ("home", "models", "deployments", "alerts", "maint", "fleet", "hosts", "logs")


class ContextLike(Protocol):
    """What the App reads of a :class:`modeltui.contexts.Context` (a daemon the user can reach)."""

    @property
    def name(self) -> str: ...
    @property
    def color(self) -> str | None: ...
    @property
    def readonly(self) -> bool: ...


@dataclass(frozen=True)
class LocalContext:
    """The context of an App given none: the local daemon its client factory reaches."""

    name: str = "local"
    color: str | None = None
    readonly: bool = False
    socket: Path | None = None


def is_top_level(screen: Screen[Any]) -> bool:
    """A view reached from anywhere (switched to, not stacked): the lists of everything of one kind."""
    if isinstance(screen, AlertsScreen):
        return screen.deployment is None
    if isinstance(screen, MaintenanceScreen):
        return screen.model is None
    return isinstance(screen, DeploymentsScreen | FleetScreen | HomeScreen | HostsScreen)


# The palette's providers, loaded when ctrl+p is first used (Textual calls a callable in COMMANDS for its
# class): modeltui.commands is not imported before the first paint.
def _actions_provider() -> type[Provider]:
    from .commands import ActionsProvider

    return ActionsProvider


def _objects_provider() -> type[Provider]:
    from .commands import ObjectsProvider

    return ObjectsProvider


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
        Binding("ctrl+r", "reconnect", "Reconnect now", show=False),
        Binding("colon", "command_line", "Command", key_display=":", show=False),
    ]

    connection: reactive[ConnectionState] = reactive("connecting", init=False)
    """State of the connection to the daemon, shown in the header."""
    status: reactive[ShellStatus] = reactive(ShellStatus(), init=False)
    """What every screen's header shows (context, connection, counts); replaced whole on each change."""

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

    COMMANDS = App.COMMANDS | {_actions_provider, _objects_provider}
    """Textual's own palette commands, the App's actions and the registry's objects (ctrl+p)."""

    def __init__(
        self,
        client_factory: ClientFactory,
        *,
        readonly: bool = False,
        contexts: Sequence[ContextLike] | None = None,
        context: str | None = None,
        connect_context: Callable[[Any], Awaitable[DaemonClient]] | None = None,
    ) -> None:
        """``client_factory`` connects to the current context (``context``, by name, of ``contexts``; the
        first when None); ``connect_context`` connects to any context on :meth:`switch_context`
        (default: :func:`modeltui.contexts.open_client`)."""
        super().__init__()
        self.client_factory = client_factory
        """Connects to the current context (the log follower opens its own connections with it too)."""
        self.contexts: list[Any] = list(contexts) if contexts else [LocalContext()]
        """The daemons the user can reach (:class:`modeltui.contexts.Context`)."""
        self.context: Any = next((c for c in self.contexts if c.name == context), self.contexts[0])
        """The context shown."""
        self._connect_context = connect_context
        self.context_epoch = 0
        """How many times the context was switched: a Call posted before a switch is never sent after it."""
        self._waiting: set[AnyCall] = set()
        """Calls waiting for a connection (not sent yet)."""
        self._readonly_flag = readonly
        self.readonly = readonly or bool(self.context.readonly)
        """Hide and block the actions that change the registry (--readonly, the context's, or a viewer)."""
        self.client: DaemonClient | None = None
        self._connected = asyncio.Event()
        self._retry_now = asyncio.Event()
        self._deployment_states: dict[str, str] | None = None
        """Each deployment's state, for the header's count (None until read; kept from events)."""
        self._firing: set[tuple[str, str]] | None = None
        """(deployment, rule) of the firing alerts, for the header's count (None until read)."""
        self._pending: list[RegistryEvent] = []
        self._pending_deployments: list[DeploymentEvent] = []
        self._pending_alerts: list[AlertEvent] = []
        self._debounce: Timer | None = None
        self._lost_reason = ""
        self._commands: CommandMode | None = None
        self.fanout = FanOut(lambda: self.contexts, lambda: (self.context.name, self.client), self._open_other)
        """Asks every context at once for the hosts and fleet views (:mod:`modeltui.fanout`)."""

    @property
    def commands(self) -> CommandMode:
        """The command line (``:``): its history and the names it completes. Made (and
        :mod:`modeltui.commands` imported) when ``:`` or ctrl+p is first used, not before the first paint."""
        if self._commands is None:
            from .commands import CommandMode

            self._commands = CommandMode(self, self.ask)
        return self._commands

    # -- lifecycle -------------------------------------------------------------------------------------
    def get_driver_class(self) -> type[Driver]:
        """Textual's driver, asking for clicks only on Linux terminals unless ``MODELTUI_MOUSE`` says more."""
        return driver_for(super().get_driver_class(), mouse_mode())

    def on_mount(self) -> None:
        self._update_status()
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
        await self.fanout.close()
        client, self.client = self.client, None
        if client is not None:
            client.remove_listener(self._on_daemon_event)
            await client.close()

    def _start_connect(self) -> None:
        """(Re)start the connection loop (cancelling the one running, whose connection closes)."""
        self._connected.clear()
        self._retry_now.clear()
        self.connection = "connecting"
        _worker: Worker[None] = self.run_worker(self._connection_loop, name=CONNECT_WORKER, group=CONNECT_WORKER,
                                                exclusive=True, exit_on_error=False)

    async def _connection_loop(self) -> None:
        """Connect, subscribe and serve until the connection drops; then wait (0.5 s doubling to 10 s, with
        jitter, or until ctrl+r) and try again, for as long as the App runs. Input is never blocked: this
        is a worker, and calls made meanwhile return at once without a client."""
        delay = BACKOFF_FIRST
        first = True
        while True:
            self._connected.clear()
            if not first:
                self.connection = "reconnecting"
            try:
                client = await self._open()
            except Exception as exc:  # whatever the reason, the header says it and we try again
                self._connected.set()  # waiting calls go on (and find no client)
                self._lost(exc, announce=first or self._lost_reason == "")
            else:
                delay = BACKOFF_FIRST
                await self._serve(client)
                self._lost(DaemonUnavailable("lost the connection to the daemon"), announce=True)
            first = False
            await self._wait_retry(delay * random.uniform(0.8, 1.2))  # jitter, not secrets
            delay = min(delay * 2, BACKOFF_MAX)

    async def _open(self) -> DaemonClient:
        """A subscribed client of the current context (read-only if the context, the flag or the role says)."""
        client = await self.client_factory()
        if client.welcome.role in (None, "viewer") and not self.readonly:
            # The daemon would refuse every change anyway: do not offer them (docs/operations.md).
            self._set_readonly(True)
            self.notify(f"{client.welcome.user} has the viewer role here: read-only", timeout=6)
        client.readonly = self.readonly
        try:
            await client.subscribe("registry", "deployments", "alerts")
        except BaseException:
            await client.close()
            raise
        return client

    async def _serve(self, client: DaemonClient) -> None:
        """Use ``client`` until its connection closes (or the loop is cancelled: switching context, exit)."""
        self.client = client
        self._connected.set()
        client.add_listener(self._on_daemon_event)
        was = self._lost_reason
        self._lost_reason = ""
        self.connection = "connected"
        if was:
            self.notify(f"connected to {self.context.name} again", timeout=4)
        self._reload_all(None)
        self._deployment_states = self._firing = None  # events were missed while away: read them again
        self._refresh_counts({"deployments", "alerts", "runs"})
        try:
            await client.closed.wait()
        finally:
            if self.client is client:
                self.client = None
            client.remove_listener(self._on_daemon_event)
            await client.close()

    async def _wait_retry(self, seconds: float) -> None:
        """Count down to the next try in the header, second by second; ctrl+r cuts it short."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        self._retry_now.clear()
        while (left := deadline - loop.time()) > 0:
            self._update_status(retry_in=math.ceil(left))
            try:
                await asyncio.wait_for(self._retry_now.wait(), timeout=min(1.0, left))
                break
            except TimeoutError:
                continue
        self._retry_now.clear()
        self._update_status(retry_in=None)

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
        if not self._same_context(message):
            return
        self._waiting.add(message)
        try:
            client = await self._client()
        finally:
            self._waiting.discard(message)
        if client is None or not self._same_context(message):
            return
        try:
            result = await client.call(message.request, progress=message.progress)
        except ProtocolError as exc:
            if message.failed is None or isinstance(exc, DaemonUnavailable):
                raise  # the App's one place says it (or the header does: the daemon is gone)
            if message.screen.is_attached:
                message.failed(exc)
            return
        if message.success:
            self.notify(message.success)
        if message.reply is not None and message.screen.is_attached and self._same_context(message):
            message.reply(result)

    def _same_context(self, message: AnyCall) -> bool:
        """Whether ``message`` was posted on the context shown; an action posted on another is not sent (and
        the user is told), a read is dropped quietly (the views re-read the new context)."""
        epoch, name = message.context
        if epoch == self.context_epoch:
            return True
        if message.request.changes_state:
            self.notify(f"{message.request.op_name} not sent: the context changed from {name} to "
                        f"{self.context.name}", title="contexts", severity="warning", timeout=10)
        return False

    # -- asking every context at once (the hosts and fleet views) -------------------------------------
    @on(FanOutCall)
    def _on_fan_out(self, message: FanOutCall[Any]) -> None:
        message.stop()
        if not message.screen.is_attached:  # posted by a view already gone
            return
        self.fanout.register(message.screen)  # now: a release handled before the worker starts must win

        async def ask() -> None:  # a callable, not a coroutine: a worker cancelled before it starts
            await self.fanout.ask(message)  # leaves no never-awaited coroutine behind

        _worker: Worker[None] = self.run_worker(ask, group=f"fanout-{id(message.screen)}",
                                                exit_on_error=False, name=f"fan-out {message.group}")

    @on(FanOutRelease)
    async def _on_fan_out_release(self, message: FanOutRelease) -> None:
        await self.fanout.release(message.screen)

    def _open_other(self, ctx: Any) -> Awaitable[DaemonClient]:
        """A connection to a context beside the current one (the fan-out's): never starts a daemon, whatever
        ``connect_context`` (the CLI's starts one for ``local`` unless --no-start) would do."""
        return open_client(ctx, start=False, timeout=self.fanout.timeout)

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
        if worker.name == CONNECT_WORKER:  # a bug in the loop: say so; ctrl+r starts it again
            self._lost(error, announce=True)
        elif isinstance(error, DaemonUnavailable):
            return  # the connection loop sees the connection close, says so in the header and reconnects
        elif isinstance(error, ProtocolError):
            if self.client is None or self.client.closed.is_set():
                return
            else:
                self.notify(error.message, title=error.code.value, severity="error", timeout=8)
        else:
            self.notify(f"{type(error).__name__}: {error}", title="unexpected error", severity="error",
                        timeout=8)

    def _lost(self, error: BaseException, *, announce: bool) -> None:
        """Not connected: the header says why (on every screen); the first failure of an outage is notified."""
        reason = error.message if isinstance(error, ProtocolError) else (str(error) or type(error).__name__)
        changed = reason != self._lost_reason
        self._lost_reason = reason
        self.connection = "disconnected"
        self._update_status(reason=reason)
        if announce and changed:
            self.notify(f"{reason}\nReconnecting by itself; ctrl+r tries now.", title="daemon unavailable",
                        severity="error", timeout=10)

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
        self._count_events(deployments, alerts, events)

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
        self._update_status()
        self.refresh_bindings()

    def _update_status(self, **changes: Any) -> None:
        """Tell every header (through ``status``) what changed; the App's sub-title says it too."""
        base = replace(self.status, context=self.context.name, color=self.context.color, readonly=self.readonly,
                       connection=self.connection)
        if self.connection != "disconnected":
            base = replace(base, reason="", retry_in=None)
        self.status = replace(base, **changes)
        parts = {
            "connecting": "connecting to the daemon…",
            "connected": "",
            "reconnecting": "reconnecting to the daemon…",
            "disconnected": "DISCONNECTED from the daemon (reconnecting; ctrl+r now)",
        }
        text = parts[self.connection]
        if self.readonly:
            text = f"read-only {text}".strip()
        self.sub_title = text
        self.set_class(self.connection == "disconnected", "-disconnected")

    def _set_readonly(self, readonly: bool) -> None:
        self.readonly = readonly
        if self.client is not None:
            self.client.readonly = readonly
        self._update_status()
        self.screen.refresh_bindings()

    # -- the header's counts -----------------------------------------------------------------------------
    def _count_events(self, deployments: Sequence[DeploymentEvent], alerts: Sequence[AlertEvent],
                      events: Sequence[RegistryEvent]) -> None:
        """Keep the counts from a burst of events: deployment and alert events carry the new state, so they
        cost no call (one re-read if an event lacks it); maintenance runs have no events, and the registry
        events a run causes (its challenger's push, a promotion's alias move) re-read them, once per burst."""
        kinds: set[str] = set()
        if deployments:
            states = self._deployment_states
            for event in deployments:
                if states is None or (event.kind == "created" and event.state is None):
                    kinds.add("deployments")
                    break
                if event.kind == "removed":
                    states.pop(event.deployment, None)
                elif event.state is not None:
                    states[event.deployment] = event.state
            else:
                self._update_status(not_running=self._not_running())
        if alerts:
            if self._firing is None:
                kinds.add("alerts")
            else:
                for alert in alerts:
                    if alert.state == "firing":
                        self._firing.add((alert.deployment, alert.rule))
                    else:
                        self._firing.discard((alert.deployment, alert.rule))
                self._update_status(firing=len(self._firing))
        if events:
            kinds.add("runs")
        self._refresh_counts(kinds)

    def _not_running(self) -> int:
        return sum(state != "running" for state in (self._deployment_states or {}).values())

    def _refresh_counts(self, kinds: set[str]) -> None:
        """Re-read what the header counts for each kind, in one worker per kind (the newest wins)."""
        for kind in kinds:
            async def count(kind: str = kind) -> None:  # a callable: a worker cancelled unstarted leaves nothing
                await self._count(kind)

            _worker: Worker[None] = self.run_worker(count, name="counts", group=f"count-{kind}", exclusive=True,
                                                    exit_on_error=False)

    async def _count(self, kind: str) -> None:
        client = self.client
        if client is None or client.closed.is_set():
            return
        try:
            if kind == "deployments":
                listing = await client.call(requests.ListDeployments())
                self._deployment_states = {d.name: d.state for d in listing.items}
                self._update_status(not_running=self._not_running())
            elif kind == "alerts":
                alerts = await client.call(requests.AlertsListRequest())
                self._firing = {(a.deployment, a.rule) for a in alerts.items if a.state == "firing"}
                self._update_status(firing=len(self._firing))
            elif kind == "runs":
                runs = await client.call(requests.MaintainRuns(limit=RUN_LIMIT))
                self._update_status(awaiting=sum(r.state == "awaiting_approval" for r in runs.items))
        except ProtocolError:
            return  # not allowed, or gone: the header keeps the last count (the connection state says the rest)

    # -- actions ---------------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "reconnect":
            return self.connection in ("disconnected", "reconnecting")
        return True

    def action_command_line(self) -> None:
        """Open the command line at the bottom (``:models``, ``:deploy /fraud``, ``:ctx prod``…)."""
        self.commands.open()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_fleet(self) -> None:
        """Switch to the fleet view (every host of the cluster and what it runs), from any screen."""
        self.show_view("fleet")

    def action_maintenance(self) -> None:
        """Switch to the maintenance view (every maintenance run, approve or reject a challenger)."""
        self.show_view("maint")

    def action_view(self, view: str) -> None:
        """Switch to a top-level view (bindings: ``app.view('deployments')``)."""
        self.show_view(view)

    def action_reconnect(self) -> None:
        """Try now rather than at the end of the countdown (or start again after a failure of the loop)."""
        worker = next((w for w in self.workers if w.name == CONNECT_WORKER and not w.is_finished), None)
        if worker is None:
            self._start_connect()
        else:
            self._retry_now.set()

    # -- views: switched, not stacked ------------------------------------------------------------------
    @staticmethod
    def is_top_level(screen: Screen[Any]) -> bool:
        """A view switched to, not stacked (the header's breadcrumb starts at it)."""
        return is_top_level(screen)

    def _base_index(self) -> int:
        """Where the models view is in the stack (every other top-level view sits right above it)."""
        for index, screen in enumerate(self.screen_stack):
            if isinstance(screen, ModelsScreen):
                return index
        return len(self.screen_stack) - 1

    def _pop_to(self, depth: int) -> None:
        """Pop screens (drill-downs, dialogs, another view) until ``depth`` screens are left."""
        while len(self.screen_stack) > max(depth, 1):
            self.pop_screen()

    def push_screen(self, screen: Any, *args: Any, **kwargs: Any) -> Any:
        """A top-level view replaces the one shown (views are switched: ``M F M F esc`` is back on the models);
        every other screen (a drill-down, a dialog, help) stacks as usual."""
        if isinstance(screen, Screen) and is_top_level(screen) and any(
            isinstance(s, ModelsScreen) for s in self.screen_stack
        ):
            self._pop_to(self._base_index() + 1)
        return super().push_screen(screen, *args, **kwargs)

    def show_view(self, view: str, *, filter: str = "", state: str | None = None, host: str | None = None,
                  name: str | None = None) -> None:
        """Switch to a top-level view (one of VIEWS; ``logs`` needs ``name``, a deployment) and apply the
        filter. The home and hosts views fall back to the models until they exist."""
        if view not in VIEWS:
            raise ValueError(f"no view {view!r}: one of {', '.join(VIEWS)}")
        top = self.screen_stack[self._base_index() + 1:] if len(self.screen_stack) > 1 else []
        screen: Screen[Any] | None
        if view == "logs":
            if not name:
                raise ValueError("the logs view needs a deployment name")
            screen = DeploymentScreen(name, tab="logs")
        else:
            cls = self._view_class(view)
            if cls is None:
                screen = None
            elif len(top) == 1 and type(top[0]) is cls and is_top_level(top[0]):
                screen = top[0]  # already shown: keep it (and its state), only filter
            else:
                screen = cls()
        if screen is None:  # the models
            self._pop_to(self._base_index() + 1)
            screen = self.screen_stack[-1]
        elif screen is not self.screen:
            self._pop_to(self._base_index() + 1)
            super().push_screen(screen)
        if filter or state or host:
            from .commands import apply_view_filter

            screen.call_after_refresh(apply_view_filter, screen, filter, state=state, host=host)

    def _view_class(self, view: str) -> type[Screen[Any]] | None:
        """The screen class of a top-level view (None: the models view at the bottom)."""
        classes: dict[str, type[Screen[Any]] | None] = {
            "models": None,
            "home": HomeScreen,
            "deployments": DeploymentsScreen,
            "alerts": AlertsScreen,
            "maint": MaintenanceScreen,
            "fleet": FleetScreen,
            "hosts": HostsScreen,
        }
        return classes[view]

    # -- contexts: every daemon the user can reach -----------------------------------------------------
    def switch_context(self, name: str) -> None:
        """Close the connection, connect to the context ``name``, and show its data in every view (the
        drill-downs, which name objects of the other daemon, are closed)."""
        ctx = next((c for c in self.contexts if c.name == name), None)
        if ctx is None:
            names = ", ".join(c.name for c in self.contexts)
            self.notify(f"no context {name!r}: {names}", title="contexts", severity="error", timeout=6)
            return
        old = self.context.name
        self.context_epoch += 1
        # Nothing asked of the old context goes on: actions waiting for a connection would reach the new one,
        # answers and counts on their way would show the old daemon's data under the new header.
        unsent = sorted(m.request.op_name for m in self._waiting if m.request.changes_state)
        for worker in self.workers:
            if worker.group.startswith(("call", "count-")) and not worker.is_finished:
                worker.cancel()
        self.client = None  # the old connection closes as its loop is cancelled: nobody asks it meanwhile
        if unsent:
            self.notify(f"{', '.join(unsent)} not sent: the context changed from {old} to {name}",
                        title="contexts", severity="warning", timeout=10)
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = None
        self._pending, self._pending_deployments, self._pending_alerts = [], [], []
        self._deployment_states = self._firing = None
        self.context = ctx
        self.client_factory = self._factory_for(ctx)
        self._lost_reason = ""
        self.status = ShellStatus()
        self._set_readonly(self._readonly_flag or bool(ctx.readonly))
        self._pop_to(self._base_index() + 2 if len(self.screen_stack) > self._base_index() + 1
                     and is_top_level(self.screen_stack[self._base_index() + 1]) else self._base_index() + 1)
        self._start_connect()
        for screen in self.screen_stack:
            if isinstance(screen, RegistryScreen):
                screen.context_changed(name)

    def _factory_for(self, ctx: Any) -> ClientFactory:
        """How to connect to ``ctx``: the App's ``connect_context``, else :func:`modeltui.contexts.open_client`."""
        connect_context = self._connect_context
        if connect_context is not None:
            return lambda: connect_context(ctx)
        return lambda: open_client(ctx)
