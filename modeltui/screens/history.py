"""History screen: every move of the aliases of one model."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.widgets import Static

from daemon.protocol import requests, results
from daemon.protocol.events import RegistryEvent

from ..widgets import AliasHistoryTable, QuietStatic
from ..widgets.shell_footer import ShellFooter
from ..widgets.status_header import StatusHeader
from .base import RegistryScreen

HISTORY_LIMIT = 1000


class HistoryScreen(RegistryScreen):
    """alias, from → to, by, at, reason; newest first as the daemon returns them."""

    AUTO_FOCUS = "#history"

    def __init__(self, model: str) -> None:
        super().__init__()
        self.model_name = model

    def compose(self) -> ComposeResult:
        yield StatusHeader()
        yield QuietStatic(f"alias history of {self.model_name}", id="history-title", classes="title")
        yield AliasHistoryTable(id="history")
        yield ShellFooter(show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = f"alias history of {self.model_name}"
        super().on_mount()

    def reload(self) -> None:
        self.call(requests.AliasHistoryRequest(name=self.model_name, limit=HISTORY_LIMIT), self._show, group="history")

    def wants(self, events: Sequence[RegistryEvent]) -> bool:
        return any(e.model == self.model_name and e.kind == "alias.moved" for e in events)

    def _show(self, history: results.AliasHistory) -> None:
        self.query_one(AliasHistoryTable).show(history.events)
        self.query_one("#history-title", Static).update(
            f"[b]{self.model_name}[/b]: {len(history.events)} alias move(s)"
        )
