"""Home: what needs the operator now, on one screen — deployments by state (and the ones not running),
firing alerts, and maintenance runs awaiting approval.

Deployments re-read on deployment events and alerts on alert events (both debounced by the App); runs have
no events of their own: they are asked again shortly after a registry event (a run pushes its challenger just
before it awaits approval) and every :data:`RUN_POLL_SECONDS` while the view is shown. Enter
on a row opens the thing: a deployment its screen, an alert the alerts view, a run the maintenance view.
Nothing here changes the registry.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.timer import Timer
from textual.widgets import DataTable

from daemon.protocol import requests, results
from daemon.protocol.deploy import DeploymentInfo
from daemon.protocol.events import AlertEvent, DeploymentEvent, RegistryEvent

from ..format import ALERT_TONE, DEPLOYMENT_TONE, PALETTE, short, version_label, when_short
from ..widgets import KeyedTable, QuietStatic
from ..widgets.shell_footer import ShellFooter
from ..widgets.status_header import StatusHeader
from .alerts import AlertsScreen
from .base import PollingScreen
from .deployments import DeploymentScreen
from .maintenance import MaintenanceScreen, scores

#: Seconds between two asks for the runs awaiting approval (they push no events of their own; over SSH every
#: ask costs bytes, so the registry events below do most of the work and this is the safety net).
RUN_POLL_SECONDS = 15.0
#: After a registry event (a run pushes its challenger just before it awaits approval; an approval moves an
#: alias), the runs are asked again this many seconds later, once the run's new state is stored.
RUN_SETTLE_SECONDS = 1.5
#: Runs asked for (newest first); the ones awaiting approval are among the latest. The header counts the
#: same runs (modeltui.app), so both say the same number.
RUN_LIMIT = 200
#: Deployment states listed first, worst first; every other state follows by name.
STATE_ORDER = ("crashloop", "failed", "degraded", "starting", "building", "pending", "stopped", "running")


def state_rank(state: str) -> int:
    return STATE_ORDER.index(state) if state in STATE_ORDER else len(STATE_ORDER)


class NotRunningTable(KeyedTable):
    """Deployments that are not running, worst state first: name, state, why."""

    COLUMNS = ("deployment", "state", "message")

    def show(self, deployments: Sequence[DeploymentInfo]) -> None:
        self.replace_rows(
            (d.name, (d.name, self.toned(d.state, DEPLOYMENT_TONE), Text(short(d.message, 48))))
            for d in sorted(deployments, key=lambda d: (state_rank(d.state), d.name))
        )


class FiringAlertsTable(KeyedTable):
    """Alerts firing now: deployment, rule, severity, since when."""

    COLUMNS = ("deployment", "rule", "severity", "since")

    def show(self, alerts: Sequence[results.AlertStateInfo]) -> None:
        self.replace_rows(
            (
                f"{a.deployment}/{a.rule}",
                (a.deployment, a.rule, self.toned(a.severity, ALERT_TONE), when_short(a.since)),
            )
            for a in sorted(alerts, key=lambda a: (a.severity != "critical", a.deployment, a.rule))
        )


class AwaitingRunsTable(KeyedTable):
    """Maintenance runs awaiting approval: model, run, champion → challenger and their scores."""

    COLUMNS = ("model", "run", "champion → challenger", "scores")

    def show(self, runs: Sequence[results.MaintainRunInfo]) -> None:
        self.replace_rows(
            (
                str(run.id),
                (run.model, str(run.id), f"{version_label(run.champion)} → {version_label(run.challenger)}",
                 Text(scores(run))),
            )
            for run in sorted(runs, key=lambda r: r.id, reverse=True)
        )


class HomeScreen(PollingScreen):
    """The overview: counts of deployments by state, and three short lists of what needs attention."""

    AUTO_FOCUS = "#home-deployments"
    POLL_SECONDS = RUN_POLL_SECONDS

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("tab", "app.focus_next", "Next list"),
        Binding("shift+tab", "app.focus_previous", "Previous list", show=False),
    ]

    DEFAULT_CSS = """
    HomeScreen .home-section {
        height: 1;
        padding: 0 1;
        text-style: bold;
    }
    HomeScreen #home-deployments {
        height: 1fr;
        min-height: 3;
    }
    HomeScreen #home-alerts, HomeScreen #home-runs {
        height: auto;
        max-height: 6;
    }
    HomeScreen KeyedTable.-empty {
        display: none;
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self.deployments: list[DeploymentInfo] | None = None
        """The last deployments answer (None before the first)."""
        self.firing: list[results.AlertStateInfo] | None = None
        self.pending_alerts = 0
        self.awaiting: list[results.MaintainRunInfo] | None = None
        self._settle: Timer | None = None

    def compose(self) -> ComposeResult:
        yield StatusHeader()
        yield QuietStatic("home: loading…", id="home-title", classes="title")
        yield QuietStatic("deployments not running", id="home-deployments-label", classes="home-section")
        yield NotRunningTable(id="home-deployments")
        yield QuietStatic("firing alerts", id="home-alerts-label", classes="home-section")
        yield FiringAlertsTable(id="home-alerts")
        yield QuietStatic("runs awaiting approval", id="home-runs-label", classes="home-section")
        yield AwaitingRunsTable(id="home-runs")
        yield ShellFooter(show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = "home"
        super().on_mount()

    # -- asking ----------------------------------------------------------------------------------------
    def reload(self) -> None:
        self._ask_deployments()
        self._ask_alerts()
        self._ask_runs()

    def poll(self) -> None:
        self._ask_runs()

    def wants(self, events: Sequence[RegistryEvent]) -> bool:
        """Registry events re-read only the runs, a moment later (see RUN_SETTLE_SECONDS); deployments and
        alerts have events of their own."""
        if self._settle is None:
            self._settle = self.set_timer(RUN_SETTLE_SECONDS, self._settled)
        return False

    def _settled(self) -> None:
        self._settle = None
        self._ask_runs()

    def deployments_changed(self, events: Sequence[DeploymentEvent]) -> None:
        self._ask_deployments()

    def alerts_changed(self, events: Sequence[AlertEvent]) -> None:
        """Alert events arrived (debounced by the App): re-read the alerts."""
        self._ask_alerts()

    def _ask_deployments(self) -> None:
        self.call(requests.ListDeployments(), self._show_deployments, group="deployments")

    def _ask_alerts(self) -> None:
        self.call(requests.AlertsListRequest(), self._show_alerts, group="alerts")

    def _ask_runs(self) -> None:
        self.call(requests.MaintainRuns(limit=RUN_LIMIT), self._show_runs, group="runs")

    # -- showing ---------------------------------------------------------------------------------------
    def _show_deployments(self, listing: results.DeploymentList) -> None:
        self.deployments = list(listing.items)
        down = [d for d in listing.items if d.state != "running"]
        self._fill(self.query_one(NotRunningTable), down)
        running = len(listing.items) - len(down)
        if not listing.items:
            label = "deployments: none"
        elif not down:
            label = f"deployments: all {running} running"
        else:
            label = f"deployments not running: [b]{len(down)}[/b] of {len(listing.items)}"
        self.query_one("#home-deployments-label", QuietStatic).update(label)
        self._show_title()

    def _show_alerts(self, alerts: results.AlertList) -> None:
        self.firing = [a for a in alerts.items if a.state == "firing"]
        self.pending_alerts = len(alerts.items) - len(self.firing)
        self._fill(self.query_one(FiringAlertsTable), self.firing)
        pending = f" ({self.pending_alerts} pending)" if self.pending_alerts else ""
        self.query_one("#home-alerts-label", QuietStatic).update(
            f"firing alerts: [b]{len(self.firing)}[/b]{pending}" if self.firing else f"firing alerts: none{pending}"
        )
        self._show_title()

    def _show_runs(self, listing: results.MaintainRunList) -> None:
        self.answers += 1
        self.awaiting = [run for run in listing.items if run.state == "awaiting_approval"]
        self._fill(self.query_one(AwaitingRunsTable), self.awaiting)
        self.query_one("#home-runs-label", QuietStatic).update(
            f"runs awaiting approval: [b]{len(self.awaiting)}[/b]" if self.awaiting
            else "runs awaiting approval: none"
        )
        self._show_title()

    def _fill(self, table: NotRunningTable | FiringAlertsTable | AwaitingRunsTable, items: Sequence[object]) -> None:
        """Show ``items`` in ``table``; an empty list hides (its label says "none") and hands the focus on."""
        table.show(items)  # type: ignore[arg-type]  # each table gets the items of its own kind
        empty = not items
        if empty and table.has_focus:
            self._focus_first_list(but=table)
        table.set_class(empty, "-empty")
        if not empty and self.app.screen is self and not any(t.has_focus for t in self.query(KeyedTable)):
            table.focus()

    def _focus_first_list(self, but: KeyedTable) -> None:
        for table in self.query(KeyedTable):
            if table is not but and not table.has_class("-empty"):
                table.focus()
                return

    def _show_title(self) -> None:
        """``3 deployment(s): 2 running · 1 crashloop  ·  1 alert firing  ·  1 run awaiting approval``."""
        parts: list[str] = []
        if self.deployments is not None:
            by_state = Counter(d.state for d in self.deployments)
            states = " · ".join(
                f"[{PALETTE[DEPLOYMENT_TONE.get(state, 'off')].variable}]{n} {state}[/]"
                for state, n in sorted(by_state.items(), key=lambda item: state_rank(item[0]))
            )
            parts.append(f"[b]{len(self.deployments)}[/b] deployment(s)" + (f": {states}" if states else ""))
        if self.firing is not None:
            tone = PALETTE["bad" if self.firing else "ok"].variable
            parts.append(f"[{tone}]{len(self.firing)} alert(s) firing[/]")
        if self.awaiting is not None:
            tone = PALETTE["warn" if self.awaiting else "ok"].variable
            parts.append(f"[{tone}]{len(self.awaiting)} run(s) awaiting approval[/]")
        self.query_one("#home-title", QuietStatic).update("  ·  ".join(parts) or "home: loading…")

    # -- opening ---------------------------------------------------------------------------------------
    def _show_view(self, view: str, fallback: Callable[[], object], **options: str) -> None:
        """Switch to a top-level view through the App when it can (views are switched, not stacked)."""
        show_view = getattr(self.app, "show_view", None)
        if callable(show_view):
            show_view(view, **options)
        else:
            fallback()

    @on(DataTable.RowSelected, "#home-deployments")
    def _open_deployment(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.app.push_screen(DeploymentScreen(event.row_key.value))

    @on(DataTable.RowSelected, "#home-alerts")
    def _open_alert(self, event: DataTable.RowSelected) -> None:
        event.stop()
        key = event.row_key.value
        if key is None:
            return
        deployment = key.split("/", 1)[0]
        self._show_view("alerts", lambda: self.app.push_screen(AlertsScreen(deployment)), filter=deployment)

    @on(DataTable.RowSelected, "#home-runs")
    def _open_run(self, event: DataTable.RowSelected) -> None:
        event.stop()
        key = event.row_key.value
        if key is None:
            return
        run_id = int(key)
        self._show_view("maint", lambda: self.app.push_screen(MaintenanceScreen()))
        screen = self.app.screen
        if isinstance(screen, MaintenanceScreen):
            screen.select = run_id  # the cursor goes to the run once the list has it
            try:
                table = screen.query_one("#maintenance-runs", KeyedTable)
            except NoMatches:  # not composed yet: its first list moves the cursor
                return
            if key in table.rows:
                table.move_cursor(row=table.get_row_index(key), animate=False)
