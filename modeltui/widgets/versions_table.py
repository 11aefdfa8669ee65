"""The table of versions on the Model screen, with up to two marks for diffing.

A marked row shows ``●`` in the first column (one cell wide even before any mark: it was 0 wide, so marks
were invisible) and the whole row in the accent colour; :attr:`VersionsTable.marks_text` says which.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from daemon.protocol.results import VersionSummary

from ..format import digest, printable, short, size, tags_of, when
from .keyed_table import KeyedTable

MARK = "●"


class VersionsTable(KeyedTable):
    """One row per version, newest first; ``●`` and the accent colour show the versions marked for a diff."""

    COMPONENT_CLASSES: ClassVar[set[str]] = KeyedTable.COMPONENT_CLASSES | {"versions--marked"}
    DEFAULT_CSS = """
    VersionsTable > .versions--marked { color: $accent; text-style: bold; }
    """

    COLUMNS = ("", "version", "aliases", "digest", "message", "tags", "created_by", "created_at", "size")
    # At 80 columns created_by and created_at hide first; the message is cut to the room left.
    COLUMN_PRIORITY: ClassVar[Mapping[str, int]] = {
        "message": 1, "digest": 2, "tags": 3, "size": 4, "created_at": 5, "created_by": 6}
    COLUMN_MIN: ClassVar[Mapping[str, int]] = {"": 1}
    FLEX_COLUMN = "message"

    class MarksChanged(Message):
        """The marks changed (the screen's status line lists them)."""

        def __init__(self, marks: str) -> None:
            super().__init__()
            self.marks = marks

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

    @property
    def marks_text(self) -> str:
        """The marked versions, oldest mark first: ``v3, v5`` (``none``)."""
        return ", ".join(f"v{n}" for n in self.marked) or "none"

    def show(self, versions: Sequence[VersionSummary]) -> None:
        """Replace the rows, keeping cursor and marks (marks of vanished versions are dropped)."""
        self._items = list(versions)
        present = {v.number for v in versions}
        self.marked = [n for n in self.marked if n in present]
        marked_style = self.get_component_rich_style("versions--marked", partial=True)
        self.replace_rows((str(v.number), self._cells(v, marked_style if v.number in self.marked else None))
                          for v in versions)

    def _cells(self, v: VersionSummary, style: Style | None) -> tuple[Text, ...]:
        cells = (
            MARK if style is not None else "",
            f"v{v.number}",
            ", ".join(v.aliases),
            digest(v.digest),
            short(v.message, 60),
            short(tags_of(v.tags), 30),
            v.created_by,
            when(v.created_at),
            size(v.size),
        )
        return tuple(Text(printable(c), style=style or "") for c in cells)

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
        self.show(self._items)
        self.post_message(self.MarksChanged(self.marks_text))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.VersionChosen(int(event.row_key.value)))
