"""Fleet: every daemon of the cluster and every deployment they run, beside what the registry says should run.

The view asks three things: ``cluster.status`` (the ZooKeeper connection, the members, the leaders),
``deployments.list`` with ``all_hosts`` (this host's deployments in full, the others' as the cluster cache
has them) and, for each model a deployment follows, its summary from ``models.list`` (aliases and latest
version). From those it tells, per deployment, the version its ref resolves to now (:func:`should_run`):
a deployment of ``NAME@ALIAS`` should run the alias's version, ``NAME:N`` runs N, ``NAME`` the latest.
A deployment serving another version than that is marked (a rollout in progress, or one that failed).

The cluster cache changes without events reaching this daemon's clients, so the view re-asks every
:data:`REFRESH_SECONDS` while it is shown; deployment events and registry events of a model a deployment
follows re-ask at once. Each model is looked up once per refresh, however many deployments follow it.

Without a cluster, the hosts are the user's contexts instead (:mod:`modeltui.screens.hosts`): every other
context is asked for its deployments through the App's fan-out, each answer shown as it comes, and a
context that cannot be reached shows as such in the hosts table. Their refs resolve in their own daemon's
registry, so "should run" is not judged for them here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.widgets import Static

from daemon.protocol import requests, results
from daemon.protocol.events import DeploymentEvent, RegistryEvent
from daemon.protocol.names import parse_ref

from ..format import CLUSTER_TONE, DEPLOYMENT_TONE, PALETTE, short, staleness, version_label, when
from ..widgets import KeyedTable, QuietStatic, literal
from ..widgets.shell_footer import ShellFooter
from ..widgets.status_header import StatusHeader
from .base import PollingScreen
from .hosts import UNREACHABLE, HostAnswer, HostState, contexts_of, fan_out, release

#: Seconds between two asks while the view is shown (the cluster cache has no events for clients).
REFRESH_SECONDS = 2.0
#: At most this many models of one name-filtered ``models.list`` page (the exact name is looked for in it).
MODEL_PAGE = 1000
#: Shown for a host when the daemon does not say its name (cluster disabled).
THIS_HOST = "this host"
#: What the view says when the daemon runs without a cluster.
DISABLED = "cluster not configured: set [cluster] zookeeper in the daemon's config"
#: The mark of a deployment that does not serve what its ref resolves to.
DRIFT = "⚠"
#: Shown while a model's summary has not been read yet.
PENDING = "…"
_EPOCH = datetime.fromtimestamp(0, UTC)


@dataclass(frozen=True)
class FleetRow:
    """One deployment on one host, from this daemon (full info) or from the cluster cache."""

    host_id: str
    host: str
    this: bool
    name: str
    model: str
    ref: str
    version: int | None
    rollout_to: int | None
    state: str
    health: str
    endpoint: str
    context: bool = False
    """From another context's daemon (no cluster): its ref resolves in that daemon's own registry."""

    @property
    def key(self) -> str:
        return f"{self.host_id}/{self.name}"


Target = int | None | str
"""What a ref should run: a version number, None (nothing: no such alias or no version), or :data:`PENDING`."""


def should_run(ref: str, models: dict[str, results.ModelSummary | None]) -> Target:
    """The version ``ref`` resolves to in the registry now, from the models' summaries (None: not in
    the registry; a model missing from ``models`` has not been read yet)."""
    try:
        parsed = parse_ref(ref)
    except ValueError:
        return None
    if parsed.number is not None:
        return parsed.number
    if parsed.name not in models:
        return PENDING
    summary = models[parsed.name]
    if summary is None:
        return None
    if parsed.alias is not None:
        return summary.aliases.get(parsed.alias)
    return summary.latest


def models_to_resolve(refs: Iterable[str]) -> list[str]:
    """The models whose summary decides what the refs should run (pinned refs need none), sorted."""
    names: set[str] = set()
    for ref in refs:
        try:
            parsed = parse_ref(ref)
        except ValueError:
            continue
        if parsed.number is None:
            names.add(parsed.name)
    return sorted(names)


class _FleetTable(KeyedTable):
    """A table whose state words are coloured in the palette of :mod:`modeltui.format`."""

    def toned_state(self, word: str) -> Text:
        """A deployment state or health word in its colour."""
        return self.toned(word, DEPLOYMENT_TONE)


class FleetHostsTable(_FleetTable):
    """One row per daemon of the cluster: this one marked, how many deployments it runs and how many of
    them run healthy."""

    COLUMNS = ("", "host", "id", "deployments", "healthy", "pid", "started")
    COLUMN_PRIORITY: ClassVar[Mapping[str, int]] = {"started": 1, "pid": 2}
    """At 80 columns what a host runs stays whole; when it started and its pid hide first."""

    def show(self, hosts: Sequence[results.ClusterHost], rows: Sequence[FleetRow]) -> None:
        self.replace_rows(self._row(h, [r for r in rows if r.host_id == h.id]) for h in hosts)

    def _row(self, h: results.ClusterHost, mine: Sequence[FleetRow]) -> tuple[str, tuple[str | Text, ...]]:
        healthy = sum(r.state == "running" and r.health == "healthy" for r in mine)
        if not mine:
            summary = self.tone("-", "off")
        else:
            summary = self.tone(
                f"{healthy}/{len(mine)}" + ("" if healthy == len(mine) else " ⚠"),
                "ok" if healthy == len(mine) else "warn",
            )
        return h.id, (
            "●" if h.this else "",
            Text(h.host),
            Text(short(h.id, 20)),
            str(len(mine)),
            summary,
            str(h.pid),
            when(h.started_at),
        )

    def show_contexts(self, current: str, hosts: Sequence[tuple[str, HostState]], rows: Sequence[FleetRow]) -> None:
        """One row per context (no cluster): the current one marked; one that cannot be reached says why."""
        self.replace_rows(self._context_row(current, name, state, rows) for name, state in hosts)

    def _context_row(
        self, current: str, name: str, state: HostState, rows: Sequence[FleetRow]
    ) -> tuple[str, tuple[str | Text, ...]]:
        if name != current and state.deployments is None:
            word = UNREACHABLE if not state.reachable else "connecting…"
            return name, ("", Text(name), self.tone(word, state.tone), "-", Text(short(state.error, 20)), "-", "-")
        key, cells = self._row(
            results.ClusterHost(id=name, host=name, pid=0, socket="", capabilities=[], started_at=_EPOCH,
                                this=name == current),
            [r for r in rows if r.host_id == name],
        )
        return key, (*cells[:2], Text("context"), *cells[3:5], "-", "-")


class FleetDeploymentsTable(_FleetTable):
    """One row per deployment of any host, with the version its ref should run now. The columns a user
    compares come first, so they show at 80 columns."""

    COLUMNS = ("host", "name", "ref", "version", "should run", "state", "health", "endpoint", "model")
    COLUMN_PRIORITY: ClassVar[Mapping[str, int]] = {"health": 1, "ref": 2, "endpoint": 3, "model": 4}
    """Host, name, version, should run and state never hide; the model first, the health last."""

    def show(self, rows: Sequence[FleetRow], models: dict[str, results.ModelSummary | None]) -> None:
        self.replace_rows(
            (r.key, self._cells(r, should_run(r.ref, models)))
            for r in sorted(rows, key=lambda r: (not r.this, r.host, r.name))
        )

    def _cells(self, r: FleetRow, target: Target) -> tuple[str | Text, ...]:
        version = version_label(r.version)
        if r.rollout_to is not None and r.rollout_to != r.version:
            version += f" → v{r.rollout_to}"
        return (
            Text(r.host + ("*" if r.this else "")),
            Text(r.name),
            Text(r.ref),
            version,
            self._target(r, target),
            self.toned_state(r.state),
            self.toned_state(r.health),
            Text(r.endpoint or "-"),
            Text(r.model),
        )

    def _target(self, r: FleetRow, target: Target) -> Text:
        if r.context:
            return self.tone("-", "off")  # its own registry: not read here
        if isinstance(target, str):
            return self.tone(target, "off")
        if target is None:
            return self.tone(f"{DRIFT} none", "bad")
        if target == r.version:
            return self.tone(version_label(target), "ok")
        return self.tone(f"{DRIFT} {version_label(target)}", "warn")


class FleetScreen(PollingScreen):
    """Every host of the cluster and every deployment they run, with what each should run."""

    AUTO_FOCUS = "#fleet-deployments"
    POLL_SECONDS = REFRESH_SECONDS

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("h", "focus_hosts", "Hosts"),
        Binding("d", "focus_deployments", "Deployments"),
        Binding("R", "refresh", "Refresh", key_display="R"),  # g is the first row in every list
    ]

    state: reactive[str] = reactive("loading", init=False)
    """The cluster connection's state (connected, suspended, lost, disabled…), as last answered."""

    def __init__(self) -> None:
        super().__init__()
        self.status: results.ClusterStatus | None = None
        """The last ``cluster.status`` answer."""
        self.listing: results.DeploymentList | None = None
        """The last ``deployments.list`` answer."""
        self.models: dict[str, results.ModelSummary | None] = {}
        """Summaries of the models deployments follow (None: not in the registry), as last read."""
        self.others: dict[str, HostState] = {}
        """Without a cluster: the other contexts' last answers, by name."""

    def compose(self) -> ComposeResult:
        yield StatusHeader()
        yield QuietStatic("fleet: loading…", id="fleet-title", classes="title")
        yield FleetHostsTable(id="fleet-hosts")
        yield FleetDeploymentsTable(id="fleet-deployments")
        yield QuietStatic("loading…", id="fleet-status", classes="status")
        yield ShellFooter(show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = "fleet"
        super().on_mount()

    def on_unmount(self) -> None:
        release(self)

    # -- asking ----------------------------------------------------------------------------------------
    def reload(self) -> None:
        self.call(requests.ClusterStatusRequest(), self._show_status, group="status")
        self.call(requests.ListDeployments(all_hosts=True), self._show_list, group="list")

    def wants(self, events: Sequence[RegistryEvent]) -> bool:
        """Registry events matter only for the models some deployment follows."""
        return any(e.model in self.models for e in events)

    def deployments_changed(self, events: Sequence[DeploymentEvent]) -> None:
        self.reload()

    @property
    def contexts_used(self) -> bool:
        """No cluster, and the user has other contexts: they are the fleet."""
        return self.status is not None and not self.status.enabled and len(contexts_of(self).contexts) > 1

    def _ask_contexts(self) -> None:
        app = contexts_of(self)
        names = [c.name for c in app.contexts if c.name != app.context.name]
        self.others = {n: self.others.get(n, HostState()) for n in names}
        fan_out(self, requests.ListDeployments(), self._show_context, group="contexts", only=names)

    def _show_context(self, answer: HostAnswer[results.DeploymentList]) -> None:
        if answer.context not in self.others:
            return  # the current context now (switched): its rows come from its own list
        state = self.others[answer.context]
        state.reachable, state.error = answer.reachable, answer.error.removeprefix(f"context {answer.context}: ")
        if answer.result is not None:
            state.deployments = list(answer.result.items)
        elif not answer.reachable:
            state.deployments = None
        self._show_title()
        self._show_deployments()

    def _resolve(self, model: str) -> None:
        """Read one model's summary (its aliases and latest version); a model absent from the registry
        is an answer too (None), not an error."""

        def got(page: results.ModelList) -> None:
            self.models[model] = next((m for m in page.items if m.name == model), None)
            self._show_deployments()

        self.call(requests.ListModels(query=model, limit=MODEL_PAGE), got, group=f"model {model}")

    # -- showing ---------------------------------------------------------------------------------------
    def _show_status(self, status: results.ClusterStatus) -> None:
        self.status = status
        self.state = status.state if status.enabled else "disabled"
        if self.contexts_used:
            self._ask_contexts()
        else:
            self.others = {}
        self._show_title()
        self._show_deployments()

    def _show_list(self, listing: results.DeploymentList) -> None:
        self.listing = listing
        self.answers += 1
        wanted = models_to_resolve(r.ref for r in self.rows())
        self.models = {m: s for m, s in self.models.items() if m in wanted}
        for model in wanted:
            self._resolve(model)
        self._show_title()
        self._show_deployments()

    def rows(self) -> list[FleetRow]:
        """Every deployment known: this host's from its own list, the others' from the cluster cache."""
        if self.listing is None:
            return []
        status = self.status
        host_id = status.host_id if status is not None and status.enabled else ""
        host = self.this_host
        names = {h.id: h.host for h in status.hosts} if status is not None else {}
        mine = [
            FleetRow(
                host_id,
                host,
                True,
                d.name,
                d.model,
                d.ref,
                d.version,
                d.rollout_to,
                d.state,
                d.health,
                d.endpoint or "",
            )
            for d in self.listing.items
        ]
        others = [
            FleetRow(
                d.host_id,
                names.get(d.host_id, d.host) or d.host_id,
                False,
                d.name,
                d.model,
                d.ref,
                d.version,
                None,
                d.state,
                d.health,
                d.endpoint,
            )
            for d in self.listing.remote
        ]
        return mine + others + self._context_rows()

    @property
    def this_host(self) -> str:
        """What this daemon's rows say as their host."""
        status = self.status
        if status is not None and status.enabled and status.host:
            return status.host
        return contexts_of(self).context.name if self.others else THIS_HOST

    def _context_rows(self) -> list[FleetRow]:
        return [
            FleetRow(name, name, False, d.name, d.model, d.ref, d.version, d.rollout_to, d.state, d.health,
                     d.endpoint or "", context=True)
            for name, state in self.others.items()
            for d in state.deployments or ()
        ]

    def _show_title(self) -> None:
        status = self.status
        title = self.query_one("#fleet-title", Static)
        if status is None:
            return
        if not status.enabled and self.others:
            down = sum(not s.reachable for s in self.others.values())
            hosts = f"{len(self.others) + 1 - down} of {len(self.others) + 1} answer"
            if down:  # which ones, and why: the hosts table says
                hosts += f", [{PALETTE['bad'].variable}]{down} {UNREACHABLE}[/]"
            title.update(f"no cluster: the contexts are the fleet ({hosts})\n"
                         f"[{PALETTE['off'].variable}]{literal(DISABLED)}[/]")
            return
        if not status.enabled:
            title.update(f"cluster [b]disabled[/b]\n[{PALETTE['warn'].variable}]{literal(DISABLED)}[/]")
            return
        tone = PALETTE[CLUSTER_TONE.get(status.state, "bad")].variable
        stale_seconds = self.listing.staleness_seconds if self.listing is not None else None
        if stale_seconds is None:
            stale_seconds = status.staleness_seconds
        member = literal(status.host or status.host_id or "?")
        state = literal(status.state)
        first = f"cluster [b {tone}]{state}[/]  {staleness(stale_seconds)}  this member [b]{member}[/b]"
        if status.problem:  # ZooKeeper refuses this daemon's credential: say why instead of the leaders
            title.update(f"{first}\n[{tone}]{literal(status.problem)}[/]")
            return
        names = {h.id: h.host for h in status.hosts}
        leaders = "  ".join(
            f"{literal(job)}: {literal(names.get(leader, leader) if leader else 'none')}"
            for job, leader in sorted(status.leaders.items())
        )
        title.update(f"{first}\nleaders  {leaders or 'none'}")

    def _show_deployments(self) -> None:
        if self.listing is None:
            return
        rows = self.rows()
        enabled = self.status is not None and self.status.enabled
        hosts_table = self.query_one(FleetHostsTable)
        hosts_table.display = enabled or bool(self.others)
        self.set_class(not enabled and bool(self.others), "-contexts")
        if enabled and self.status is not None:
            hosts_table.show(self.status.hosts, rows)
        elif self.others:
            current = contexts_of(self).context.name
            mine = HostState(deployments=[], reachable=True)
            hosts_table.show_contexts(current, [(current, mine), *self.others.items()],
                                      [replace(r, host_id=current) if r.this else r for r in rows])
        self.query_one(FleetDeploymentsTable).show(rows, self.models)
        drifting = sum(
            (isinstance(t := should_run(r.ref, self.models), int) and t != r.version) or t is None
            for r in rows if not r.context
        )
        hosts = len({r.host_id for r in rows})
        text = f"{len(rows)} deployment(s) on {hosts} host(s)" if rows else "no deployments"
        if drifting:
            text += f" · {drifting} not serving what should run ({DRIFT})"
        elif rows:
            text += " · all serve what should run"
        self._status(text)

    def _status(self, text: str) -> None:
        self.query_one("#fleet-status", Static).update(literal(short(text, max(20, self.size.width - 2))))

    # -- actions ---------------------------------------------------------------------------------------
    def action_focus_hosts(self) -> None:
        table = self.query_one(FleetHostsTable)
        if table.display:
            table.focus()

    def action_focus_deployments(self) -> None:
        self.query_one(FleetDeploymentsTable).focus()

    def action_refresh(self) -> None:
        self.reload()
