"""Alerts: what holds now (pending and firing, coloured by severity) and the history of transitions.

The view re-reads ``alerts.list`` whenever the daemon pushes an alert event (the App subscribes to the
"alerts" topic and hands the events to :meth:`AlertsScreen.alerts_changed`); it does not poll.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Static, TabbedContent, TabPane

from daemon.protocol import requests, results
from daemon.protocol.events import AlertEvent, RegistryEvent

from ..format import PALETTE
from ..widgets import AlertHistoryTable, AlertsTable, QuietStatic, literal
from ..widgets.shell_footer import ShellFooter
from ..widgets.status_header import StatusHeader
from .base import RegistryScreen

#: Transitions asked for (newest first).
HISTORY = 200


class AlertsScreen(RegistryScreen):
    """Current alerts of every deployment (or of one), and their history."""

    AUTO_FOCUS = "#alerts"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "tab('current')", "Current"),
        Binding("h", "tab('history')", "History"),
        Binding("R", "refresh", "Refresh", key_display="R"),  # g is the first row in every list
    ]

    def __init__(self, deployment: str | None = None) -> None:
        super().__init__()
        self.deployment = deployment
        """Only this deployment's alerts (None: all)."""
        self.alerts: results.AlertList | None = None
        """The last answer shown."""

    def compose(self) -> ComposeResult:
        yield StatusHeader()
        yield QuietStatic("alerts", id="alerts-title", classes="title")
        with TabbedContent(id="alerts-tabs", initial="current"):
            with TabPane("Current", id="current"):
                yield AlertsTable(id="alerts")
            with TabPane("History", id="history"):
                yield AlertHistoryTable(id="alerts-history")
        yield QuietStatic("loading…", id="alerts-status", classes="status")
        yield ShellFooter(show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = f"alerts of {self.deployment}" if self.deployment else "alerts"
        super().on_mount()

    def reload(self) -> None:
        self.call(requests.AlertsListRequest(deployment=self.deployment, history=HISTORY),
                  self._show, group="list")

    def wants(self, events: Sequence[RegistryEvent]) -> bool:
        return False

    def alerts_changed(self, events: Sequence[AlertEvent]) -> None:
        """Alert events arrived (debounced): re-read if any concerns what is shown."""
        mine = [e for e in events if self.deployment is None or e.deployment == self.deployment]
        if not mine:
            return
        last = mine[-1]
        self._status(f"{last.deployment}/{last.rule}: {last.state}" + (f" — {last.message}" if last.message else ""))
        self.reload()

    def _show(self, alerts: results.AlertList) -> None:
        self.alerts = alerts
        self.query_one(AlertsTable).show(alerts.items, datetime.now(UTC))
        self.query_one(AlertHistoryTable).show(alerts.history)
        firing = sum(a.state == "firing" for a in alerts.items)
        pending = len(alerts.items) - firing
        where = f" of [b]{literal(self.deployment)}[/b]" if self.deployment else ""
        tone = PALETTE["bad" if firing else "ok"].variable
        self.query_one("#alerts-title", Static).update(
            f"alerts{where}: [b {tone}]{firing} firing[/], {pending} pending  ·  {len(alerts.history)} transition(s)"
        )
        status = str(self.query_one("#alerts-status", Static).render())
        if status == "loading…":
            self._status("no alert holds" if not alerts.items else "c: current · h: history")

    def _status(self, text: str) -> None:
        self.query_one("#alerts-status", Static).update(literal(text))

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        self.query_one(AlertsTable if tab == "current" else AlertHistoryTable).focus()

    def action_refresh(self) -> None:
        self.reload()
