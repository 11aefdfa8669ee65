"""Models screen: every model of the registry in one virtual table, filtered (``/``) and sorted (``<`` ``>``
``-``) by the daemon, drawn from a client-side cache of the rows fetched so far (:mod:`modeltui.model_cache`).

The k9s pattern: what the cache has is drawn at once; what it lacks is asked for when it comes on screen,
one window at a time (the first paint asks one screenful). A new filter or sort waits at most
:data:`SETTLE_SECONDS` for its first answer before the table shows it with ``…`` rows, so typing never
flashes an empty list. A registry event makes the rows stale: they stay drawn and the visible ones are
asked again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, cast

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Center, Middle
from textual.reactive import reactive
from textual.timer import Timer
from textual.widgets import Static

from daemon.protocol import requests, results
from daemon.protocol.errors import ErrorCode, ProtocolError
from daemon.protocol.events import RegistryEvent
from daemon.protocol.requests import ModelSort

from ..model_cache import ListKey, ModelCache, ModelView
from ..widgets import EmptyRegistry, ModelsTable, QuietStatic, literal
from ..widgets.list_filter import FilterInput
from ..widgets.shell_footer import ShellFooter
from ..widgets.status_header import StatusHeader
from ..widgets.virtual_table import VirtualTable
from .alerts import AlertsScreen
from .base import RegistryScreen
from .deployments import DeploymentsScreen
from .model import ModelScreen

#: How long a new filter or sort keeps the previous rows on screen while its first answer is awaited.
SETTLE_SECONDS = 0.25
#: Keys typed within this long of each other are asked as one filter when the typing pauses (a pasted word
#: or a held key is two queries, its first key and the whole word, not one a key). Short: the last letter
#: waits this long before it is asked, and a filter's answer should show within 50 ms of it.
TYPING_SECONDS = 0.03


class ModelsScreen(RegistryScreen):
    """The first screen: the model list."""

    AUTO_FOCUS = "#models"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("d", "deployments", "Deployments"),
        Binding("A", "alerts", "Alerts", key_display="A"),
    ]

    filter_text: reactive[str] = reactive("", init=False)
    """Text typed after ``/``: the daemon filters the models with it (regex, ``!`` inverts, any column)."""

    def __init__(self) -> None:
        super().__init__()
        self.cache = ModelCache()
        """The rows fetched so far, by list."""
        self.key = ListKey()
        """The list asked for (filter and sort); the table may still show the previous one (settling)."""
        self._settle: Timer | None = None
        self._typing: Timer | None = None
        self._asked_text = ""
        """The filter text last asked for (typing in a burst asks only for the last)."""

    @property
    def table(self) -> ModelsTable:
        return self.query_one(ModelsTable)

    @property
    def total(self) -> int:
        """How many models match (-1 until the first answer)."""
        total = self.cache.view(self.key).total
        return -1 if total is None else total

    def compose(self) -> ComposeResult:
        yield StatusHeader()
        yield FilterInput(self, id="filter")
        yield ModelsTable(id="models")
        with Middle(id="empty-box"), Center():
            yield EmptyRegistry(id="empty")
        yield QuietStatic("loading…", id="page-status", classes="status")
        yield ShellFooter(show_command_palette=False)

    # -- asking ---------------------------------------------------------------------------------------
    def reload(self) -> None:
        """Something changed (or the App connected): every row is stale, the visible ones are asked again."""
        self.cache.invalidate()
        self._fetch()

    def wants(self, events: Sequence[RegistryEvent]) -> bool:
        return True

    def _fetch(self) -> None:
        table = self.table
        first = table.first_shown if self._shows(self.key) else 0
        for request in self.cache.wanted(self.key, first, first + table.page_height - 1):
            self._ask(request)

    def _ask(self, request: requests.ListModels) -> None:
        generation = self.cache.generation

        def got(answer: results.ModelList) -> None:
            self._got(request, answer, generation)

        # One worker per window: asking again (a reload before the connection is up, the next filter typed)
        # cancels the older ask of that window rather than sending both.
        self.call(request, got, group=f"list {request.offset}", failed=lambda error: self._failed(request, error))

    def _failed(self, request: requests.ListModels, error: ProtocolError) -> None:
        """The daemon refused a window: it may be asked again; a filter it refuses (a bad regex) says why in
        the filter line, and the list shown before it stays."""
        self.cache.failed(request)
        key = ListKey(request.pattern or "", request.sort, request.descending)
        if key != self.key:
            return
        if error.code != ErrorCode.INVALID:
            self.notify(error.message, title=error.code.value, severity="error", timeout=8)
            return
        source = self.table.source
        if isinstance(source, ModelView) and source.key != key:
            if self._settle is not None:
                self._settle.stop()
                self._settle = None
            self.key = source.key  # drawn already
        else:
            self._change_list(key._replace(pattern=""))
        box = self.filter_box
        box.add_class("-bad")
        box.border_title = Text(error.message)  # Text: the regex's [..] is not markup

    def _got(self, request: requests.ListModels, answer: results.ModelList, generation: int) -> None:
        view = self.cache.store(request, answer, generation)
        if view.key != self.key:
            return  # an answer for a list the user left: kept for coming back
        if self._shows(view.key):
            self.table.rows_changed()
        else:
            self._switch(view)
        self._show_status()

    def _shows(self, key: ListKey) -> bool:
        source = self.table.source
        return isinstance(source, ModelView) and source.key == key

    def _switch(self, view: ModelView) -> None:
        """Show ``view`` in the table, cursor on its first row."""
        if self._settle is not None:
            self._settle.stop()
            self._settle = None
        table = self.table
        table.cursor = 0
        table.scroll_to(y=0, animate=False, immediate=True)
        table.set_source(view)
        self._show_status()

    def _change_list(self, key: ListKey) -> None:
        """Ask for another filter or sort: drawn at once from the cache, else after its first answer (or
        SETTLE_SECONDS, with ``…`` rows)."""
        if key == self.key:
            return
        self.key = key
        self.cache.retry(key)  # its asks in flight may have been cancelled by the list left since
        view = self.cache.view(key)
        if view.total is not None:
            self._switch(view)
        else:
            if self._settle is not None:
                self._settle.stop()
            self._settle = self.set_timer(SETTLE_SECONDS, lambda: self._switch(self.cache.view(self.key)))
        self._fetch()

    # -- showing --------------------------------------------------------------------------------------
    def _show_status(self) -> None:
        view = self.cache.view(self.key)
        if view.total is None:
            return
        empty = view.total == 0 and not self.key.pattern
        self.set_class(empty, "-empty")
        status = self.query_one("#page-status", Static)
        matching = literal(f" matching {self.key.pattern!r}") if self.key.pattern else ""
        if self.key.pattern:
            everything = self.cache.everything
            self.filter_box.show_count(view.total, view.total if everything is None else everything)
        if view.total == 0:
            status.update(literal(f"no model matches {self.key.pattern!r}") if self.key.pattern else "no models")
        else:
            first = self.table.first_shown if self._shows(self.key) else 0
            last = min(view.total, first + self.table.page_height)
            status.update(f"models {first + 1}-{last} of {view.total}{matching}")

    @on(VirtualTable.Wanted)
    def _wanted(self, event: VirtualTable.Wanted) -> None:
        event.stop()
        if self._shows(self.key):
            for request in self.cache.wanted(self.key, event.first, event.last):
                self._ask(request)
            self._show_status()

    @on(VirtualTable.Sorted)
    def _sorted(self, event: VirtualTable.Sorted) -> None:
        event.stop()
        self._change_list(self.key._replace(sort=cast(ModelSort, event.column), descending=event.descending))

    def watch_filter_text(self, text: str) -> None:
        """The first key after a pause is asked at once; the keys typed after it within TYPING_SECONDS of each
        other go as one query when the typing pauses (each also cancels the ask before it, if not sent)."""
        if self._typing is None:
            self._apply_filter_text()
        else:
            self._typing.stop()
        self._typing = self.set_timer(TYPING_SECONDS, self._typed)

    def _typed(self) -> None:
        self._typing = None
        if self.filter_text != self._asked_text:
            self._apply_filter_text()

    def _apply_filter_text(self) -> None:
        self._asked_text = self.filter_text
        self._change_list(self.key._replace(pattern=self.filter_text))

    def context_changed(self, name: str) -> None:
        """Another daemon: nothing of the old one stays drawn; its rows are asked once it answers."""
        self.cache = ModelCache()
        self.set_class(False, "-empty")
        self._switch(self.cache.view(self.key))
        self.query_one("#page-status", Static).update(literal(f"connecting to {name}…"))

    def apply_filter(self, text: str, *, state: str | None = None, host: str | None = None) -> None:
        """Show the models matching ``text`` (``:models /text``); models have no state or host. A bad
        regex shows in the filter line, as if typed."""
        self.set_class(bool(text), "-filtering")
        self.filter_box.value = text

    @property
    def filter_box(self) -> FilterInput:
        return self.query_one("#filter", FilterInput)

    # -- actions ---------------------------------------------------------------------------------------
    def action_filter(self) -> None:
        self.add_class("-filtering")
        self.filter_box.focus()

    def action_clear_filter(self) -> None:
        self.remove_class("-filtering")
        self.filter_box.value = ""
        self.filter_text = ""
        self.table.focus()

    def action_back(self) -> None:
        self.action_clear_filter()

    def action_deployments(self) -> None:
        self.app.push_screen(DeploymentsScreen())

    def action_alerts(self) -> None:
        self.app.push_screen(AlertsScreen())

    @on(FilterInput.Applied)
    def _filter_applied(self, event: FilterInput.Applied) -> None:
        event.stop()
        self.filter_text = event.text.strip()
        if event.done:
            if not self.filter_text:
                self.remove_class("-filtering")
            self.table.focus()

    @on(ModelsTable.ModelChosen)
    def _open(self, event: ModelsTable.ModelChosen) -> None:
        self.app.push_screen(ModelScreen(event.name))
