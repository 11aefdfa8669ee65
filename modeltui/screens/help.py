"""Help screen: what each view shows and its keys, built from the screens' own BINDINGS."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Static

from ..widgets.shell_footer import ShellFooter
from ..widgets.status_header import StatusHeader
from .alerts import AlertsScreen
from .base import RegistryScreen
from .deployments import DeploymentScreen, DeploymentsScreen
from .diff import DiffScreen
from .fleet import FleetScreen
from .home import HomeScreen
from .hosts import HostsScreen
from .maintenance import MaintenanceScreen
from .metrics import MetricsScreen
from .model import ModelScreen
from .models import ModelsScreen
from .version import VersionScreen

VIEWS: list[tuple[str, type[Screen[None]]]] = [
    ("All screens", RegistryScreen),
    ("Models: every model (enter opens one)", ModelsScreen),
    ("Model: its versions and aliases (enter opens a version)", ModelScreen),
    ("Version: manifest, files, params & metrics, lineage", VersionScreen),
    ("Diff: two marked versions compared", DiffScreen),
    ("Deployments: every deployment, live (d on Models; enter opens one)", DeploymentsScreen),
    ("Deployment: summary, live log, recent events, every field", DeploymentScreen),
    ("Metrics: a deployment's rate, errors, latency, quality and drift, with plots (m on Deployments)",
     MetricsScreen),
    ("Alerts: pending and firing alerts, and their history (A on Models and Deployments)", AlertsScreen),
    ("Fleet: every host of the cluster, its deployments, and what each should run (F anywhere); without a "
     "cluster, every context", FleetScreen),
    ("Maintenance: retraining runs, champion vs challenger, approve or reject (M anywhere)", MaintenanceScreen),
    ("Home: deployments by state, firing alerts, runs awaiting approval (:home)", HomeScreen),
    ("Hosts: every context's deployments, one tab per host and one for all (:hosts)", HostsScreen),
]

INTRO = (
    "[b]modeltui[/b] — browse the model registry of modeltuid and its deployments. Everything updates "
    "live: a push, an alias move or a deployment's change made elsewhere (e.g. with the CLI) shows up "
    "without a key press.\n"
    "The header shows where you are (context › view › …), the connection (it reconnects by itself), "
    "READ-ONLY, and counts of deployments not running, firing alerts and runs to approve. Views are switched, "
    "not stacked: escape goes back one level, and from any view to the models.\n"
    "Every list: [b]j[/b]/[b]k[/b] down/up · [b]g[/b]/[b]G[/b] or Home/End the first/last row · [b]/[/b] "
    "filter (a regex over the shown columns; !REGEX keeps the others; enter keeps, esc clears) · "
    "[b]<[/b] [b]>[/b] sort on the previous/next column · [b]-[/b] reverse the sort.\n"
    "Global keys: [b]?[/b] help · [b]q[/b] quit · [b]escape[/b] back · [b]F[/b] fleet · [b]M[/b] maintenance · "
    "[b]ctrl+r[/b] reconnect now (while disconnected) · "
    "[b]ctrl+p[/b] command palette (views, actions, models, deployments) · [b]:[/b] command line: "
    ":models, :deploy, :alerts, :maint, :fleet, :hosts, :home, :logs NAME, :ctx NAME, :q; after a view "
    "/REGEX, state=STATE, @HOST (:deploy /fraud state=crashloop); tab completes, up/down recall"
)


def _keys(screen: type[object]) -> Content:
    """One line per binding the screen (or App) class itself declares: key, then what it does."""
    parts: list[tuple[str, str] | str] = []
    for binding in screen.__dict__.get("BINDINGS", []):
        if isinstance(binding, Binding):
            parts += [((binding.key_display or binding.key).ljust(8), "bold"), f" {binding.description}\n"]
    return Content.assemble(*parts).rstrip()


class HelpScreen(Screen[None]):
    """Keys of every view."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "app.pop_screen", "Back")]

    def compose(self) -> ComposeResult:
        yield StatusHeader()
        with VerticalScroll(id="help"):
            yield Static(INTRO, id="help-intro")
            yield Static("[b]Everywhere[/b]", classes="help-title")
            yield Static(_keys(type(self.app)), classes="help-keys")
            for title, screen in VIEWS:
                yield Static(f"[b]{title}[/b]", classes="help-title")
                yield Static(_keys(screen), classes="help-keys")
        yield ShellFooter(show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = "help"
