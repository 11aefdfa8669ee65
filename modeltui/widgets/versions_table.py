"""The table of versions on the Model screen, with up to two marks for diffing."""

from __future__ import annotations

from collections.abc import Sequence

from textual.message import Message
from textual.widgets import DataTable

from daemon.protocol.results import VersionSummary

from ..format import digest, short, size, tags_of, when
from .keyed_table import KeyedTable

MARK = "●"


class VersionsTable(KeyedTable):
    """One row per version, newest first; ``●`` shows the versions marked for a diff."""

    COLUMNS = ("", "version", "aliases", "digest", "message", "tags", "created_by", "created_at", "size")

    class VersionChosen(Message):
        """The user pressed enter on a version."""

        def __init__(self, number: int) -> None:
            super().__init__()
            self.number = number

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.marked: list[int] = []
        """Version numbers marked for a diff, oldest mark first (at most two)."""
        self._items: list[VersionSummary] = []

    @property
    def current_version(self) -> int | None:
        key = self.current_key
        return int(key) if key is not None else None

    def show(self, versions: Sequence[VersionSummary]) -> None:
        """Replace the rows, keeping cursor and marks (marks of vanished versions are dropped)."""
        self._items = list(versions)
        present = {v.number for v in versions}
        self.marked = [n for n in self.marked if n in present]
        self.replace_rows(
            (
                str(v.number),
                (
                    MARK if v.number in self.marked else "",
                    f"v{v.number}",
                    ", ".join(v.aliases),
                    digest(v.digest),
                    short(v.message, 30),
                    short(tags_of(v.tags), 30),
                    v.created_by,
                    when(v.created_at),
                    size(v.size),
                ),
            )
            for v in versions
        )

    def toggle_mark(self) -> None:
        """Mark or unmark the highlighted version; a third mark replaces the oldest one."""
        number = self.current_version
        if number is None:
            return
        if number in self.marked:
            self.marked.remove(number)
        else:
            self.marked.append(number)
            del self.marked[:-2]
        for row in self.ordered_rows:
            if row.key.value is not None:
                self.update_cell(row.key, self.ordered_columns[0].key,
                                 MARK if int(row.key.value) in self.marked else "")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.VersionChosen(int(event.row_key.value)))
