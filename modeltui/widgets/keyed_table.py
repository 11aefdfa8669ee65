"""A DataTable whose rows are replaced on refresh while the cursor stays on the same key, repainting only
the cells that changed.

Textual's ``DataTable`` repaints the whole table for any change (``clear``, ``add_row``, ``update_cell``):
some 4 KB a table at 120×40, sent over SSH each time. A view that re-reads every few seconds would send that
even when nothing changed, so :meth:`KeyedTable.replace_rows` compares first: the same rows in the same
order update only the cells that differ, and each of those repaints only its own cell. Every cell is shown
as text (never parsed as markup) with its control characters spelt out (:func:`as_cell`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Self

from rich.cells import cell_len
from rich.text import Text
from textual.coordinate import Coordinate
from textual.geometry import Region
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

from ..format import PALETTE, printable

Cell = str | Text


def as_cell(cell: object) -> Text:
    """A cell as shown: text, never markup (a DataTable parses ``str`` cells as markup), with control
    characters spelt out (ESC as ``\\x1b``: registry strings must not drive the terminal). A ``Text``
    keeps its style."""
    if isinstance(cell, Text):
        plain = cell.plain
        safe = printable(plain)
        return cell if safe == plain else Text(safe, style=cell.style)
    return Text(printable(cell))


def same_cell(shown: object, new: object) -> bool:
    """Whether a cell shows the same thing (a rich ``Text``'s ``==`` ignores its base style)."""
    if isinstance(shown, Text) and isinstance(new, Text):
        return shown.plain == new.plain and shown.style == new.style and shown.spans == new.spans
    return type(shown) is type(new) and shown == new


def tone_css() -> str:
    """The palette (:data:`modeltui.format.PALETTE`) as component-class rules of every keyed table."""
    return "\n".join(
        f"KeyedTable > .tone--{name} {{ color: {tone.variable};{' text-style: bold;' if tone.bold else ''} }}"
        for name, tone in PALETTE.items()
    )


class KeyedTable(DataTable[Cell]):
    """Subclasses set COLUMNS and call :meth:`replace_rows` with ``(key, cells)`` pairs; state words are
    coloured with :meth:`toned`, in the one palette the CLI uses too."""

    COLUMNS: ClassVar[Sequence[str]] = ()
    COMPONENT_CLASSES: ClassVar[set[str]] = {f"tone--{name}" for name in PALETTE}
    DEFAULT_CSS = tone_css()

    _repaint_only: Coordinate | None = None
    """Set around one ``update_cell``: the repaint it asks for covers this cell only."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.add_columns(*self.COLUMNS)

    def tone(self, text: str, tone: str | None) -> Text:
        """``text`` in the colour of ``tone`` (a key of the palette; plain for ``None``)."""
        return Text(text, style=self.get_component_rich_style(f"tone--{tone}", partial=True) if tone else "")

    def toned(self, word: str, tones: Mapping[str, str]) -> Text:
        """``word`` in the colour of its tone in ``tones`` (plain when it has none)."""
        return self.tone(word, tones.get(word))

    @property
    def current_key(self) -> str | None:
        """Key of the highlighted row, if any."""
        if self.row_count == 0:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:
            return None

    def replace_rows(self, rows: Iterable[tuple[str, Sequence[Any]]]) -> None:
        """Show these rows: cell by cell when the keys are the ones shown, in the same order (nothing is
        repainted when nothing changed); else rebuilt, keeping the cursor on the same key."""
        wanted = [(key, tuple(as_cell(cell) for cell in cells)) for key, cells in rows]
        if [key for key, _cells in wanted] == self.keys():
            for key, cells in wanted:
                self._update_row(key, cells)
            return
        keep = self.current_key
        self.clear()
        for key, cells in wanted:
            self.add_row(*cells, key=key)
        if keep is not None and keep in self.rows:
            self.move_cursor(row=self.get_row_index(keep), animate=False)

    def _update_row(self, key: str, cells: Sequence[Any]) -> None:
        for column, cell in zip(self.ordered_columns, cells, strict=False):
            if not same_cell(self.get_cell(key, column.key), cell):
                self.set_cell(key, column.key, cell)

    def set_cell(self, row_key: str, column_key: ColumnKey | str, value: Cell) -> None:
        """``update_cell`` that repaints only that cell (or, when the value is wider than its column, the
        table with the column widened); the value is shown as :func:`as_cell` text."""
        value = as_cell(value)
        column = self.columns[ColumnKey(column_key) if isinstance(column_key, str) else column_key]
        width = cell_len(value.plain)
        if column.auto_width and width > column.content_width:
            self.update_cell(row_key, column_key, value, update_width=True)
            return
        self._repaint_only = Coordinate(self.get_row_index(row_key), self.get_column_index(column_key))
        try:
            self.update_cell(row_key, column_key, value)
        finally:
            self._repaint_only = None

    def refresh(self, *regions: Region, repaint: bool = True, layout: bool = False, recompose: bool = False) -> Self:
        only, self._repaint_only = self._repaint_only, None
        if only is not None and not regions and not layout and not recompose:
            return self.refresh_coordinate(only)
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)

    def keys(self) -> list[str]:
        """Row keys in display order."""
        return [row.key.value for row in self.ordered_rows if row.key.value is not None]
