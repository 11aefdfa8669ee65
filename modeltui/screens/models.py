"""Models screen: every model of the registry, paged on the daemon side, filtered with ``/``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Center, Middle
from textual.reactive import reactive
from textual.widgets import Footer, Header, Input, Static

from daemon.protocol import requests, results
from daemon.protocol.events import RegistryEvent

from ..widgets import EmptyRegistry, ModelsTable, QuietStatic, literal
from .alerts import AlertsScreen
from .base import RegistryScreen
from .deployments import DeploymentsScreen
from .model import ModelScreen

PAGE_SIZE = 100


class ModelsScreen(RegistryScreen):
    """The first screen: the model list."""

    AUTO_FOCUS = "#models"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("escape", "clear_filter", "Clear filter"),
        Binding("right_square_bracket", "next_page", "Next page", key_display="]"),
        Binding("left_square_bracket", "previous_page", "Prev page", key_display="["),
        Binding("d", "deployments", "Deployments"),
        Binding("A", "alerts", "Alerts", key_display="A"),
    ]

    filter_text: reactive[str] = reactive("", init=False)
    """Text typed after ``/``: the daemon filters models with it."""
    page_offset: reactive[int] = reactive(0, init=False)
    """Index of the first model shown (pages of PAGE_SIZE)."""
    total: reactive[int] = reactive(-1, init=False)
    """How many models match (-1 until the first answer)."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="filter models…", id="filter")
        yield ModelsTable(id="models")
        with Middle(id="empty-box"), Center():
            yield EmptyRegistry(id="empty")
        yield QuietStatic("loading…", id="page-status", classes="status")
        yield Footer(show_command_palette=False)

    def reload(self) -> None:
        self.call(
            requests.ListModels(query=self.filter_text or None, limit=PAGE_SIZE, offset=self.page_offset),
            self._show,
            group="list",
        )

    def wants(self, events: Sequence[RegistryEvent]) -> bool:
        return True

    def _show(self, models: results.ModelList) -> None:
        if not models.items and models.total and self.page_offset:
            self.page_offset = max(0, self.page_offset - PAGE_SIZE)  # the page vanished: step back (reloads)
            return
        self.query_one(ModelsTable).show(models.items)
        self.total = models.total
        empty = models.total == 0 and not self.filter_text
        self.set_class(empty, "-empty")
        status = self.query_one("#page-status", Static)
        if models.total == 0:
            status.update(literal(f"no model matches {self.filter_text!r}") if self.filter_text else "no models")
        else:
            last = self.page_offset + len(models.items)
            status.update(f"models {self.page_offset + 1}-{last} of {models.total}"
                          + literal(f" matching {self.filter_text!r}" if self.filter_text else ""))

    def watch_filter_text(self) -> None:
        if self.page_offset:
            self.page_offset = 0  # its watcher reloads
        else:
            self.reload()

    def watch_page_offset(self) -> None:
        self.reload()

    # -- actions ---------------------------------------------------------------------------------------
    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        self.add_class("-filtering")
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        self.remove_class("-filtering")
        box.value = ""
        self.query_one(ModelsTable).focus()

    def action_next_page(self) -> None:
        if self.page_offset + PAGE_SIZE < self.total:
            self.page_offset += PAGE_SIZE

    def action_previous_page(self) -> None:
        if self.page_offset:
            self.page_offset = max(0, self.page_offset - PAGE_SIZE)

    def action_back(self) -> None:
        self.action_clear_filter()

    def action_deployments(self) -> None:
        self.app.push_screen(DeploymentsScreen())

    def action_alerts(self) -> None:
        self.app.push_screen(AlertsScreen())

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.query_one(ModelsTable).focus()

    @on(ModelsTable.ModelChosen)
    def _open(self, event: ModelsTable.ModelChosen) -> None:
        self.app.push_screen(ModelScreen(event.name))
