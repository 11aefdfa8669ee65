"""A DataTable whose rows are replaced wholesale on refresh while the cursor stays on the same key."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from rich.text import Text
from textual.widgets import DataTable


class KeyedTable(DataTable[str | Text]):
    """Subclasses set COLUMNS and call :meth:`replace_rows` with ``(key, cells)`` pairs."""

    COLUMNS: ClassVar[Sequence[str]] = ()

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.add_columns(*self.COLUMNS)

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
        keep = self.current_key
        self.clear()
        for key, cells in rows:
            self.add_row(*cells, key=key)
        if keep is not None and keep in self.rows:
            self.move_cursor(row=self.get_row_index(keep), animate=False)

    def keys(self) -> list[str]:
        """Row keys in display order."""
        return [row.key.value for row in self.ordered_rows if row.key.value is not None]
