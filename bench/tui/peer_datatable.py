"""The peer: Textual's own minimal DataTable app with the same rows the benchmark loads into modeltui
(names from tests/helpers/bulk_models.py, the models list's columns), no daemon, no header or footer logic. It is the
floor a Textual TUI can reach on this machine: what modeltui adds over it is modeltui's own cost.

    python bench/tui/peer_datatable.py COUNT

``/`` opens an input that filters the rows (a substring of any cell, on every key, by clearing and
refilling the table: what a plain DataTable app does); ``escape`` clears it."""

from __future__ import annotations

import sys
from typing import ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Input


def model_name(i: int) -> str:
    """tests/helpers/bulk_models.py's names (not imported: that would load the client and pydantic, which
    the peer does not need)."""
    return f"bulk-{i:05d}"

COLUMNS = ("model", "versions", "latest", "aliases", "updated", "description")


class PeerApp(App[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter"),
        Binding("escape", "clear", "Clear"),
        Binding("j", "down", show=False),
        Binding("k", "up", show=False),
        Binding("g", "top", show=False),
        Binding("G", "bottom", show=False),
    ]
    CSS = "Input { display: none; } Input.-shown { display: block; }"

    def __init__(self, count: int) -> None:
        super().__init__()
        self.rows = [(model_name(i), "1", "1", "-", "2026-12-07 18:18:00", "") for i in range(1, count + 1)]

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter")
        yield DataTable(cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns(*COLUMNS)
        table.add_rows(sorted(self.rows))
        table.focus()

    def action_down(self) -> None:
        self.query_one(DataTable).action_cursor_down()

    def action_up(self) -> None:
        self.query_one(DataTable).action_cursor_up()

    def action_top(self) -> None:
        self.query_one(DataTable).move_cursor(row=0)

    def action_bottom(self) -> None:
        table = self.query_one(DataTable)
        table.move_cursor(row=table.row_count - 1)

    def action_filter(self) -> None:
        box = self.query_one(Input)
        box.add_class("-shown")
        box.focus()

    def action_clear(self) -> None:
        box = self.query_one(Input)
        box.value = ""
        box.remove_class("-shown")
        self.query_one(DataTable).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        table = self.query_one(DataTable)
        table.clear()
        text = event.value
        table.add_rows(sorted(r for r in self.rows if any(text in cell for cell in r)))


if __name__ == "__main__":
    PeerApp(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000).run()
