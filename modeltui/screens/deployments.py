"""Deployments: every deployment of the daemon, and one deployment's fields, recent events and live log.

Both views re-read on deployment events (debounced by the App), never on a timer; the only timer re-renders
uptime locally, to the minute, so an idle view repaints nothing (docs/architecture.md). Undeploy, restart
and rollback ask for confirmation saying what will happen (the endpoint that stops answering; the version an
alias goes back to and every deployment that follows it) and are hidden in read-only mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Static, TabbedContent, TabPane

from daemon.protocol import requests, results
from daemon.protocol.deploy import DeploymentInfo
from daemon.protocol.events import DeploymentEvent, RegistryEvent
from daemon.protocol.names import parse_ref

from ..format import short, uptime, version_label
from ..widgets import (
    DeploymentEventsTable,
    DeploymentFieldsTable,
    DeploymentsTable,
    LogView,
    QuietStatic,
    literal,
)
from ..widgets.deployments_table import version_text
from ..widgets.shell_footer import ShellFooter
from ..widgets.status_header import StatusHeader
from .alerts import AlertsScreen
from .base import RegistryScreen
from .dialogs import DeployChoice, DeployDialog, confirm, roll_back
from .metrics import MetricsScreen

#: Lines of history asked for when a log view opens.
LOG_TAIL = 200
#: Recent events shown on the detail view.
EVENT_COUNT = 20
#: Seconds between two looks at the uptimes (shown to the minute; a look that changes nothing repaints nothing).
UPTIME_TICK_SECONDS = 5.0
#: Actions that change state: hidden and refused in read-only mode.
MUTATIONS = frozenset({"new", "undeploy", "restart", "rollback"})


class _DeploymentActions(RegistryScreen):
    """Undeploy, restart and roll back the deployment a subclass points at (:meth:`target`)."""

    def target(self) -> DeploymentInfo | None:
        """The deployment the actions apply to."""
        raise NotImplementedError

    def after_undeploy(self, name: str) -> None:
        """Called once the daemon removed the deployment."""
        self.reload()

    def wants(self, events: Sequence[RegistryEvent]) -> bool:
        return False  # an alias move reaches deployments as their own rollout events

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action in MUTATIONS and self.readonly)

    def _chosen(self) -> DeploymentInfo | None:
        if self.readonly:
            return None
        d = self.target()
        if d is None:
            self.notify("no deployment selected", severity="warning")
        return d

    def action_undeploy(self) -> None:
        d = self._chosen()
        if d is None:
            return
        name = d.name
        endpoint = f"[b]{literal(d.endpoint)}[/b]" if d.endpoint else "its endpoint"
        question = (f"Undeploy [b]{literal(name)}[/b] ({literal(d.ref)}, {version_label(d.version)})?\n"
                    f"Its {d.backend} instance stops: {endpoint} stops answering and the traffic sent to it "
                    "stops being served.")
        confirm(self, question, yes="Undeploy", then=lambda: self.call(
            requests.Undeploy(name=name), lambda _d: self.after_undeploy(name),
            success=f"undeployed {name}",
        ))

    def action_restart(self) -> None:
        d = self._chosen()
        if d is None:
            return
        name = d.name
        question = (f"Restart [b]{literal(name)}[/b] ({literal(d.ref)})?\n"
                    "A new instance starts and replaces the running one once it is healthy.")
        confirm(self, question, yes="Restart", then=lambda: self.call(
            requests.RestartDeployment(name=name), lambda _d: self.reload(),
            success=f"restarting {name}",
        ))

    def action_rollback(self) -> None:
        """For a deployment that follows an alias: move the alias back (the deployment rolls out)."""
        d = self._chosen()
        if d is None:
            return
        ref = parse_ref(d.ref)
        alias = ref.alias
        if alias is None:
            self.notify(f"{d.name} is pinned to {d.ref}: only a deployment of NAME@ALIAS rolls back "
                        "(deploy another version instead)", severity="warning")
            return
        roll_back(self, ref.name, [alias])


class DeploymentsScreen(_DeploymentActions):
    """Every deployment: state, health, version, endpoint, backend, uptime, restarts."""

    AUTO_FOCUS = "#deployments"

    BINDINGS: ClassVar[list[BindingType]] = [
        # The footer shows the first three shown (? help lists them all).
        Binding("l", "logs", "Logs"),
        Binding("m", "metrics", "Metrics"),
        Binding("r", "restart", "Restart"),
        Binding("n", "new", "New"),
        Binding("x", "undeploy", "Undeploy"),
        Binding("delete", "undeploy", "Undeploy", show=False),
        Binding("b", "rollback", "Rollback"),
        Binding("A", "alerts", "Alerts", key_display="A"),
    ]

    def compose(self) -> ComposeResult:
        yield StatusHeader()
        yield QuietStatic("deployments", id="deployments-title", classes="title")
        yield DeploymentsTable(id="deployments")
        yield QuietStatic("loading…", id="deployments-status", classes="status")
        yield ShellFooter(show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = "deployments"
        self.set_interval(UPTIME_TICK_SECONDS, self._tick)
        super().on_mount()

    def reload(self) -> None:
        self.call(requests.ListDeployments(), self._show, group="list")

    def deployments_changed(self, events: Sequence[DeploymentEvent]) -> None:
        last = events[-1]
        text = f"{last.deployment}: {last.kind}" + (f" → {last.state}" if last.state else "")
        if last.message:
            text += f" — {short(last.message, 50)}"
        self._status(text)
        self.reload()

    def target(self) -> DeploymentInfo | None:
        return self.query_one(DeploymentsTable).current

    def _show(self, deployments: results.DeploymentList) -> None:
        self.query_one(DeploymentsTable).show(deployments.items)
        running = sum(d.state == "running" for d in deployments.items)
        self.query_one("#deployments-title", Static).update(
            f"[b]{len(deployments.items)}[/b] deployment(s), {running} running"
        )
        status = self.query_one("#deployments-status", Static)
        if not deployments.items:
            self._status("no deployments" + ("" if self.readonly else " — press n to deploy a version"))
        elif str(status.render()) == "loading…" or str(status.render()).startswith("no deployments"):
            self._status("enter: details and live log")

    def _status(self, text: str) -> None:
        self.query_one("#deployments-status", Static).update(literal(text))

    def _tick(self) -> None:
        self.query_one(DeploymentsTable).tick()

    @on(DeploymentsTable.DeploymentChosen)
    def _open(self, event: DeploymentsTable.DeploymentChosen) -> None:
        self.app.push_screen(DeploymentScreen(event.name))

    def action_metrics(self) -> None:
        d = self.target()
        if d is not None:
            self.app.push_screen(MetricsScreen(d.name))

    def action_alerts(self) -> None:
        self.app.push_screen(AlertsScreen())

    def action_logs(self) -> None:
        d = self.target()
        if d is not None:
            self.app.push_screen(DeploymentScreen(d.name, tab="logs"))

    def action_new(self) -> None:
        if self.readonly:
            return
        current = self.target()

        def chosen(choice: DeployChoice | None) -> None:
            if choice is None:
                return
            where = f"on port {choice.port}" if choice.port else "on a free port"
            question = f"Deploy [b]{literal(choice.ref)}[/b] with the {choice.backend} backend {where}?"
            confirm(self, question, lambda: self._deploy(choice), yes="Deploy")

        self.app.push_screen(DeployDialog(current.ref if current else ""), chosen)

    def _deploy(self, choice: DeployChoice) -> None:
        def progress(done: int, total: int, text: str) -> None:
            self._status(f"{choice.ref}: {text} ({done}/{total})" if total else f"{choice.ref}: {text}")

        def deployed(detail: results.DeploymentDetail) -> None:
            d = detail.deployment
            self._status(f"{d.name}: {d.state}" + (f" — {short(d.message, 50)}" if d.message else ""))
            self.reload()

        self._status(f"deploying {choice.ref}…")
        self.call(
            requests.Deploy(ref=choice.ref, name=choice.name, backend=choice.backend, port=choice.port,
                            wait=False), deployed, progress=progress, success=f"deploying {choice.ref}",
        )


class DeploymentScreen(_DeploymentActions):
    """One deployment: a summary, then its live log, recent events and every field, in tabs."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("l", "tab('logs')", "Logs"),
        Binding("e", "tab('events')", "Events"),
        Binding("m", "metrics", "Metrics"),
        Binding("i", "tab('info')", "Info"),
        Binding("f", "follow", "Follow", show=False),
        Binding("x", "undeploy", "Undeploy"),
        Binding("r", "restart", "Restart"),
        Binding("b", "rollback", "Rollback"),
    ]

    def __init__(self, name: str, *, tab: str = "logs") -> None:
        super().__init__()
        self.deployment_name = name
        self.initial_tab = tab
        self.deployment: DeploymentInfo | None = None
        self.following = False
        """True while the log is being followed."""

    def compose(self) -> ComposeResult:
        yield StatusHeader()
        yield QuietStatic(self.deployment_name, id="deployment-title", classes="title")
        with TabbedContent(id="tabs", initial=self.initial_tab):
            with TabPane("Logs", id="logs"):
                yield LogView(id="log")
            with TabPane("Events", id="events"):
                yield DeploymentEventsTable(id="events-table")
            with TabPane("Info", id="info"):
                yield DeploymentFieldsTable(id="fields")
        yield ShellFooter(show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = f"deployment {self.deployment_name}"
        self.set_interval(UPTIME_TICK_SECONDS, self._show_title)
        self.follow()
        super().on_mount()

    def reload(self) -> None:
        self.call(requests.GetDeployment(name=self.deployment_name, events=EVENT_COUNT), self._show, group="get")

    def deployments_changed(self, events: Sequence[DeploymentEvent]) -> None:
        mine = [e for e in events if e.deployment == self.deployment_name]
        if not mine:
            return
        if mine[-1].kind == "removed":
            self.query_one(LogView).note(f"{self.deployment_name} was removed")
            self.query_one("#deployment-title", Static).update(f"[b]{self.deployment_name}[/b]  removed")
            self.deployment = None
            return
        self.reload()

    def target(self) -> DeploymentInfo | None:
        return self.deployment

    def after_undeploy(self, name: str) -> None:
        if self.app.screen is self:
            self.action_back()

    def _show(self, detail: results.DeploymentDetail) -> None:
        self.deployment = detail.deployment
        self._show_title()
        self.query_one(DeploymentEventsTable).show(detail.events)
        self.query_one(DeploymentFieldsTable).show(detail.deployment)

    def _show_title(self) -> None:
        d = self.deployment
        if d is None:
            return
        second = f"{d.endpoint or '-'}  up {uptime(d.started_at, datetime.now(UTC))}  restarts {d.restarts}"
        room = self.size.width - len(second) - 4  # the message fills the rest of the line, never a third
        if d.message and room >= 12:
            second += f"  {literal(short(d.message, room))}"
        self.query_one("#deployment-title", Static).update(
            f"[b]{literal(d.name)}[/b]  {d.ref}  {version_text(d)}  [b]{d.state}[/b]  {d.health}  {d.backend}\n"
            + second
        )

    # -- the log ---------------------------------------------------------------------------------------
    def follow(self) -> None:
        """(Re)start following the log: the App opens a connection owned by this screen."""
        self.following = True
        view = self.query_one(LogView)
        self.post_message(self.Follow(self, self.deployment_name, view.append, self._ended, tail=LOG_TAIL))

    def _ended(self, reason: str) -> None:
        self.following = False
        if self.is_attached:
            self.query_one(LogView).note(f"{reason} (press f to follow again)")

    def action_follow(self) -> None:
        self.query_one(LogView).reset()
        self.follow()

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def action_metrics(self) -> None:
        self.app.push_screen(MetricsScreen(self.deployment_name))
