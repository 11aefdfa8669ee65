"""Hosts: every context (daemon) the user can reach, as tabs, and the deployments of all of them in one table.

The first tab, "all hosts", lists the deployments of every context with the host first; one filter applies to
all of them. The other tabs are the contexts, each with a dot saying whether it answered (green), could not be
reached (red) or has not answered yet; choosing one switches the App to that context and lists its rows.

Every context is asked at once through :class:`FanOutCall` (the App's :class:`~modeltui.fanout.FanOut`):
each host's answer is shown as it comes, so one that cannot be reached (shown as one row ``host unreachable``
with the reason) never holds back the others. The current context's deployment events re-ask it at once; the
others have no events here, so the view re-asks every :data:`POLL_SECONDS` while it is shown (the fan-out
asks a host again only once it answered, and waits longer and longer between tries of an unreachable one).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Generic, Protocol, TypeVar, cast

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.content import Content
from textual.css.query import NoMatches
from textual.message import Message
from textual.widgets import DataTable, Static, Tab, Tabs

from daemon.protocol import requests, results
from daemon.protocol.deploy import DeploymentInfo
from daemon.protocol.events import DeploymentEvent, RegistryEvent

from ..format import DEPLOYMENT_TONE, PALETTE, short, version_label
from ..widgets import KeyedTable, QuietStatic, literal
from ..widgets.shell_footer import ShellFooter
from ..widgets.status_header import StatusHeader
from .base import PollingScreen, RegistryScreen, ScreenRequest

R = TypeVar("R", bound=results.Result)

#: Seconds between two asks of every host while the view is shown (other hosts' events do not reach us).
POLL_SECONDS = 3.0
#: The id of the tab that shows every host.
ALL_TAB = "hosts-all"
#: What a host's row says before its first answer.
CONNECTING = "connecting…"
#: What a host's row says when it could not be reached.
UNREACHABLE = "unreachable"
#: What the row of a host that runs nothing says.
NONE = "no deployments"


# -- asking every host ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class HostAnswer(Generic[R]):
    """One context's answer to a fanned-out request: its result, or why there is none."""

    context: str
    result: R | None = None
    error: str = ""
    reachable: bool = True
    """False when the host could not be reached (no connection, or no answer in time)."""


class FanOutCall(ScreenRequest[R]):
    """Ask the App to send ``request`` to every context (or those named in ``only``) at once and hand each
    host's :class:`HostAnswer` to ``reply`` as it comes; a host still answering an earlier call of this screen
    and group is not asked again."""

    def __init__(
        self,
        screen: RegistryScreen,
        request: requests.BaseRequest[R],
        reply: Callable[[HostAnswer[R]], None],
        *,
        group: str = "",
        only: Sequence[str] | None = None,
    ) -> None:
        super().__init__(screen, request, group=group)
        self.reply = reply
        self.only = None if only is None else tuple(only)


class FanOutRelease(Message):
    """A screen that fanned out is gone: the App may close the clients it opened for other hosts."""

    def __init__(self, screen: RegistryScreen) -> None:
        super().__init__()
        self.screen = screen


class NamedContext(Protocol):
    """What a screen needs of a context (:class:`modeltui.contexts.Context`)."""

    @property
    def name(self) -> str: ...


class ContextsHost(Protocol):
    """What screens may know about the App's contexts (a protocol: screens never import the App)."""

    @property
    def contexts(self) -> Sequence[NamedContext]: ...

    @property
    def context(self) -> NamedContext: ...

    def switch_context(self, name: str) -> None: ...

    def show_view(self, view: str, *, filter: str = "", state: str | None = None, host: str | None = None,
                  name: str | None = None) -> None: ...


def contexts_of(screen: RegistryScreen) -> ContextsHost:
    """The App, seen as what knows the contexts."""
    return cast(ContextsHost, screen.app)


def fan_out(
    screen: RegistryScreen,
    request: requests.BaseRequest[R],
    reply: Callable[[HostAnswer[R]], None],
    *,
    group: str = "",
    only: Sequence[str] | None = None,
) -> None:
    """Post a :class:`FanOutCall` (to the App)."""
    screen.post_message(FanOutCall(screen, request, reply, group=group, only=only))


def release(screen: RegistryScreen) -> None:
    """Tell the App this screen no longer needs the other hosts' clients."""
    screen.app.post_message(FanOutRelease(screen))


# -- what the view shows -------------------------------------------------------------------------------
@dataclass
class HostState:
    """What one context last answered."""

    deployments: list[DeploymentInfo] | None = None
    error: str = ""
    reachable: bool = True

    @property
    def tone(self) -> str:
        if not self.reachable:
            return "bad"
        if self.deployments is None and not self.error:
            return "off"
        return "warn" if self.error else "ok"


class HostsTable(KeyedTable):
    """One row per deployment of any host, the host first; one row for a host that has no answer (yet)."""

    COLUMNS = ("host", "name", "ref", "version", "state", "health", "endpoint", "message")
    COLUMN_PRIORITY: ClassVar[Mapping[str, int]] = {"ref": 1, "endpoint": 2, "health": 3}
    COLUMN_MAX: ClassVar[Mapping[str, int]] = {"host": 16, "name": 24, "ref": 24}
    KEEP_END = frozenset({"endpoint"})
    FLEX_COLUMN = "message"

    def show(self, hosts: Sequence[tuple[str, HostState]], state: str | None = None) -> None:
        """Every host's rows in the contexts' order (of deployments in ``state`` only, when given); the
        ``/`` filter is the table's own, over every host."""
        self.replace_rows(
            (key, cells) for host, answer in hosts for key, cells in self._rows(host, answer)
            if state is None or self._state_of(cells) == state
        )

    @staticmethod
    def _state_of(cells: Sequence[str | Text]) -> str:
        cell = cells[4]
        return cell.plain if isinstance(cell, Text) else cell

    def _rows(self, host: str, state: HostState) -> list[tuple[str, tuple[str | Text, ...]]]:
        if state.deployments is None:
            word = UNREACHABLE if not state.reachable else (CONNECTING if not state.error else "error")
            return [(f"{host}/", (host, self.tone(word, state.tone), "", "", "", "", "", short(state.error, 200)))]
        if not state.deployments:
            return [(f"{host}/", (host, self.tone(NONE, "off"), "", "", "", "", "", state.error))]
        return [(f"{host}/{d.name}", self._cells(host, d)) for d in sorted(state.deployments, key=lambda d: d.name)]

    def _cells(self, host: str, d: DeploymentInfo) -> tuple[str | Text, ...]:
        version = version_label(d.version)
        if d.rollout_to is not None and d.rollout_to != d.version:
            version += f" → v{d.rollout_to}"
        return (
            host,
            d.name,
            d.ref,
            version,
            self.toned(d.state, DEPLOYMENT_TONE),
            self.toned(d.health, DEPLOYMENT_TONE),
            d.endpoint or "-",
            Text(short(d.message, 40)),
        )


class HostsScreen(PollingScreen):
    """Every context as a tab, and every host's deployments in one filtered table."""

    AUTO_FOCUS = "#hosts-table"
    POLL_SECONDS = POLL_SECONDS

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open"),
        Binding("right_square_bracket", "next_tab", "Next host", key_display="]"),
        Binding("left_square_bracket", "previous_tab", "Prev host", key_display="["),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.hosts: dict[str, HostState] = {}
        """Each context's last answer, by name."""
        self.names: list[str] = []
        """The contexts' names, in the App's order (the tabs'), as last read."""
        self._generation = 0
        self._tones: dict[str, str] = {}
        """Each tab's dot colour as shown (a tone of the palette)."""
        self.tab: str | None = None
        """The context whose tab is chosen (None: all hosts)."""
        self.state_filter: str | None = None
        """Only deployments in this state (``:hosts state=crashloop``), or every state."""

    def compose(self) -> ComposeResult:
        yield StatusHeader()
        self.names = [c.name for c in contexts_of(self).contexts]
        yield Tabs(Tab("all hosts", id=ALL_TAB), *(Tab(self._label(n), id=self._tab_id(n)) for n in self.names),
                   id="hosts-tabs")
        yield HostsTable(id="hosts-table")
        yield QuietStatic("asking every host…", id="hosts-status", classes="status")
        yield ShellFooter(show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = "hosts"
        super().on_mount()

    def on_unmount(self) -> None:
        release(self)

    @property
    def table(self) -> HostsTable:
        return self.query_one(HostsTable)

    @property
    def tabs(self) -> Tabs:
        return self.query_one("#hosts-tabs", Tabs)

    # -- asking ----------------------------------------------------------------------------------------
    def reload(self) -> None:
        self._sync_tabs()
        fan_out(self, requests.ListDeployments(), self._answer, group="list")

    def wants(self, events: Sequence[RegistryEvent]) -> bool:
        return False

    def deployments_changed(self, events: Sequence[DeploymentEvent]) -> None:
        """Events come from the current context only: ask it again, not the others."""
        fan_out(self, requests.ListDeployments(), self._answer, group="events",
                only=[contexts_of(self).context.name])

    def _answer(self, answer: HostAnswer[results.DeploymentList]) -> None:
        state = self.hosts.setdefault(answer.context, HostState())
        state.reachable = answer.reachable
        state.error = answer.error.removeprefix(f"context {answer.context}: ")  # the row names the host
        if answer.result is not None:
            state.deployments = list(answer.result.items)
        elif not answer.reachable or state.deployments is None:
            state.deployments = None
        self.answers += 1
        self._relabel(answer.context)
        self._show()

    # -- tabs ------------------------------------------------------------------------------------------
    def _sync_tabs(self) -> None:
        """One tab per context (contexts may change while the App runs)."""
        names = [c.name for c in contexts_of(self).contexts]
        if names == self.names:
            return
        tabs = self.tabs
        for name in self.names:
            tabs.remove_tab(self._tab_id(name))
        self._generation += 1  # new ids: a removed tab may still be mounted while its successor is added
        self._tones.clear()
        self.names = names
        for name in names:
            tabs.add_tab(Tab(self._label(name), id=self._tab_id(name)))
        self.hosts = {n: s for n, s in self.hosts.items() if n in names}

    def _tab_id(self, name: str) -> str:
        return f"host-{self._generation}-{self.names.index(name)}"

    def _label(self, name: str) -> Content:
        state = self.hosts.get(name, HostState())
        return Content.from_markup(f"[{PALETTE[state.tone].variable}]●[/] {literal(name)}")

    def _relabel(self, name: str) -> None:
        """A host's dot in its new colour; nothing is redrawn while its state stays (each poll answers)."""
        if name in self.names:
            with contextlib.suppress(NoMatches):  # added, not mounted yet: it is made with its label
                tab = self.tabs.query_one(f"#{self._tab_id(name)}", Tab)
                tone = self.hosts.get(name, HostState()).tone
                if self._tones.get(name) != tone:  # (Content's == ignores colours)
                    self._tones[name] = tone
                    tab.label = self._label(name)

    @on(Tabs.TabActivated, "#hosts-tabs")
    def _tab_chosen(self, event: Tabs.TabActivated) -> None:
        tab_id = event.tab.id or ALL_TAB
        self.tab = None if tab_id == ALL_TAB else self.names[int(tab_id.rsplit("-", 1)[1])]
        app = contexts_of(self)
        if self.tab is not None and self.tab != app.context.name:
            app.switch_context(self.tab)
        self._show()

    @on(DataTable.RowSelected, "#hosts-table")
    def _row_chosen(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_open(self) -> None:
        """The deployment under the cursor in its own context's deployments view (switching to that context);
        on a host's only row (unreachable, no deployments), that host's tab."""
        key = self.table.current_key
        if key is None:
            return
        host, _, name = key.partition("/")
        if not name:
            if host in self.names:
                self.tabs.active = self._tab_id(host)
            return
        app = contexts_of(self)
        if host != app.context.name:
            app.switch_context(host)
        app.show_view("deployments", filter=f"^{re.escape(name)}$")

    def action_next_tab(self) -> None:
        self.tabs.action_next_tab()

    def action_previous_tab(self) -> None:
        self.tabs.action_previous_tab()

    def action_refresh(self) -> None:
        self.reload()

    # -- showing ---------------------------------------------------------------------------------------
    def apply_filter(self, text: str, *, state: str | None = None, host: str | None = None) -> None:
        """Show the rows matching ``text`` (and ``state``), of ``host`` only when given (its tab)."""
        try:
            self.table.set_filter(text)
        except ValueError as exc:
            self.notify(str(exc), title="filter", severity="error")
            return
        self.state_filter = state
        if host is not None and host in self.names:
            self.tabs.active = self._tab_id(host)
        else:
            self._show()

    def _show(self) -> None:
        shown = [(n, self.hosts.get(n, HostState())) for n in self.names if self.tab in (None, n)]
        self.table.show(shown, self.state_filter)
        self._status(shown)

    def _status(self, shown: Sequence[tuple[str, HostState]]) -> None:
        count = sum(len(s.deployments or ()) for _n, s in shown)
        down = [f"{n} {UNREACHABLE} ({s.error})" for n, s in shown if not s.reachable]
        waiting = [n for n, s in shown if s.reachable and s.deployments is None and not s.error]
        text = f"{count} deployment(s) on {len(shown) - len(down) - len(waiting)} of {len(shown)} host(s)"
        if self.state_filter:
            text += f" · state={self.state_filter}"
        if waiting:  # before the reasons, which may be long and are cut at the right
            text += f" · waiting for {', '.join(waiting)}"
        if down:
            text += " · " + "; ".join(down)
        self.query_one("#hosts-status", Static).update(literal(short(text, max(20, self.size.width - 2))))
