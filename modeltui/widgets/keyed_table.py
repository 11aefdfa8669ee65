"""A DataTable whose rows are replaced on refresh while the cursor stays on the same key, repainting only
the cells that changed.

Textual's ``DataTable`` repaints the whole table for any change (``clear``, ``add_row``, ``update_cell``):
some 4 KB a table at 120×40, sent over SSH each time. A view that re-reads every few seconds would send that
even when nothing changed, so :meth:`KeyedTable.replace_rows` compares first: the same rows in the same
order update only the cells that differ, and each of those repaints only its own cell. Every cell is shown
as text (never parsed as markup) with its control characters spelt out (:func:`as_cell`).

Every list behaves the same (k9s habits): ``/`` filters the rows over every shown column
(:mod:`.list_filter`), ``<``/``>`` move the sort column and ``-`` reverses it, ``j``/``k``, ``g``/``G`` and
``Home``/``End`` reach the real first and last row. The table keeps every row it was given and shows the
ones that pass the filter, in the chosen order, so both survive the refreshes. Columns carry priorities: when
the table is narrower than its columns, the least important hide first and :attr:`KeyedTable.FLEX_COLUMN`
(a message, say) is cut to the room left, so the columns an operator needs stay whole at 80 columns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple, Self

from rich.cells import cell_len
from rich.text import Text
from textual import events
from textual.actions import SkipAction
from textual.binding import Binding, BindingType
from textual.coordinate import Coordinate
from textual.geometry import Region
from textual.widget import Widget
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

from ..format import PALETTE, printable
from .list_filter import FilterInput, RowFilter, compile_filter
from .partial_updates import send_only_dirty_cells

Cell = str | Text

send_only_dirty_cells()  # a cell's repaint sends that cell, not the line up to it


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


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key of a cell's text: numbers by value (v9 before v10, 1.5 s before 12 s), the rest without case."""
    return tuple((0, int(part)) if part.isdigit() else (1, part.lower())
                 for part in re.split(r"(\d+)", text) if part)


def fit(cell: Text, width: int | None, *, keep_end: bool = False) -> Text:
    """``cell`` cut to ``width`` cells with an ellipsis, at the end (or, with ``keep_end``, a URL's scheme
    first and then at the start: an endpoint keeps its port); unchanged when it fits or there is no limit."""
    if width is None or cell_len(cell.plain) <= width:
        return cell
    if keep_end:
        scheme = cell.plain.find("://")
        if scheme >= 0:
            cell = cell[scheme + 3:]
            if cell_len(cell.plain) <= width:
                return cell
        tail = cell[len(cell.plain) - (width - 1):] if width > 1 else Text("")
        return Text("…", style=cell.style) + tail
    cut = cell.copy()
    cut.truncate(width, overflow="ellipsis")
    return cut


Row = tuple[str, tuple[Text, ...]]


class Layout(NamedTuple):
    """How the columns fit the table's width."""

    shown: tuple[int, ...]
    """Indexes in COLUMNS of the columns shown, in order."""
    limits: dict[int, int]
    """Column index → the width its cells are cut to."""
    short: bool
    """Whether the headers are the short ones (COLUMN_SHORT)."""


class KeyedTable(DataTable[Cell]):
    """Subclasses set COLUMNS and call :meth:`replace_rows` with ``(key, cells)`` pairs; state words are
    coloured with :meth:`toned`, in the one palette the CLI uses too.

    Narrow terminals: :attr:`COLUMN_PRIORITY` ranks the columns (0, the default, never hides; the highest
    number hides first), :attr:`COLUMN_MAX` caps a column's width and :attr:`FLEX_COLUMN` takes what room
    is left, down to :attr:`FLEX_MIN`."""

    COLUMNS: ClassVar[Sequence[str]] = ()
    COLUMN_PRIORITY: ClassVar[Mapping[str, int]] = {}
    """Column label → priority: 0 (default) never hides; higher numbers hide first when room is short."""
    COLUMN_MAX: ClassVar[Mapping[str, int]] = {}
    """Column label → the most cells it takes (longer cells end with …)."""
    COLUMN_MIN: ClassVar[Mapping[str, int]] = {}
    """Column label → the fewest cells it takes (a mark column shows even before anything is marked)."""
    KEEP_END: ClassVar[frozenset[str]] = frozenset()
    """Columns cut at the start rather than the end (an endpoint: the port matters most)."""
    COLUMN_SHORT: ClassVar[Mapping[str, str]] = {}
    """Column label → a shorter header, used when room is short (before any column hides)."""
    FLEX_COLUMN: ClassVar[str | None] = None
    """The column cut to the room the others leave (a message), rather than hidden."""
    FLEX_MIN: ClassVar[int] = 8
    """Below this width the flex column hides like any other."""
    LOCAL_FILTER: ClassVar[bool] = True
    """False: ``/`` is left to the screen (a list filtered by the daemon)."""
    SORTABLE: ClassVar[bool] = True
    """False: the order is the subclass's own (a history, newest first)."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {f"tone--{name}" for name in PALETTE}
    DEFAULT_CSS = tone_css() + """
    KeyedTable.-filtered { border-top: solid $accent; border-title-color: $accent; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter", key_display="/", show=False),
        Binding("less_than_sign", "sort(-1)", "Sort ←", key_display="<", show=False),
        Binding("greater_than_sign", "sort(1)", "Sort →", key_display=">", show=False),
        Binding("minus", "reverse", "Reverse sort", key_display="-", show=False),
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g,home", "scroll_top", "First", show=False),
        Binding("G,end", "scroll_bottom", "Last", show=False),
    ]

    _painted_widths: tuple[int, ...] = ()
    """Column widths when the idle pass last measured them (their change drops the painted lines)."""
    _repaint_only: Coordinate | None = None
    """Set around one ``update_cell``: the repaint it asks for covers this cell only."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=True)
        self._all: list[Row] = []
        """Every row given to :meth:`replace_rows`, every column, in the subclass's order."""
        self.filter_text = ""
        """The ``/`` filter shown (``""``: none)."""
        self._filter: RowFilter = compile_filter("")
        self._filter_title: str | None = None
        self.sort_column: int | None = None
        """Index in COLUMNS of the column the rows are sorted on (None: the subclass's order)."""
        self.sort_reverse = False
        """Whether that sort is descending."""
        self._columns_layout = Layout(tuple(range(len(self.COLUMNS))), {}, short=False)
        """The columns shown and how (every column, whole, until the table knows its width)."""

    @property
    def _shown(self) -> tuple[int, ...]:
        return self._columns_layout.shown

    @property
    def _limits(self) -> dict[int, int]:
        return self._columns_layout.limits

    def on_mount(self) -> None:
        self._add_columns()

    # -- what is shown -------------------------------------------------------------------------------
    @staticmethod
    def column_key(label: str) -> str:
        """The key of a column (its label; ``mark`` for the unlabelled mark column)."""
        return label or "mark"

    @property
    def shown_columns(self) -> list[str]:
        """Labels of the columns shown, in order (the rest hid for room)."""
        return [self.COLUMNS[i] for i in self._shown]

    def row_of(self, key: str) -> dict[str, str]:
        """Every column of row ``key`` as plain text, shown or hidden for room (KeyError when absent)."""
        for row_key, cells in self._all:
            if row_key == key:
                return {label: cell.plain for label, cell in zip(self.COLUMNS, cells, strict=False)}
        raise KeyError(key)

    def cell_of(self, key: str, label: str) -> Text:
        """The cell of row ``key`` in column ``label`` as given (style included), shown or not."""
        for row_key, cells in self._all:
            if row_key == key:
                return cells[list(self.COLUMNS).index(label)]
        raise KeyError(key)

    @property
    def total(self) -> int:
        """Rows given, before the filter."""
        return len(self._all)

    def _visible_rows(self) -> list[Row]:
        rows = [(k, c) for k, c in self._all if self._filter([c[i].plain for i in self._shown if i < len(c)])]
        if self.sort_column is not None:
            col = self.sort_column
            rows.sort(key=lambda r: natural_key(r[1][col].plain) if col < len(r[1]) else (),
                      reverse=self.sort_reverse)
        keep_end = [label in self.KEEP_END for label in self.COLUMNS]
        return [(k, tuple(fit(c[i], self._limits.get(i), keep_end=keep_end[i]) for i in self._shown if i < len(c)))
                for k, c in rows]

    def _label(self, index: int, short: bool | None = None) -> str:
        label = self.COLUMNS[index]
        if self._columns_layout.short if short is None else short:
            label = self.COLUMN_SHORT.get(label, label)
        if index == self.sort_column:
            label += " ▼" if self.sort_reverse else " ▲"
        return label

    def _add_columns(self) -> None:
        for i in self._shown:
            label = self.COLUMNS[i]
            self.add_column(self._label(i), key=self.column_key(label))

    def _rebuild(self) -> None:
        """Columns and rows anew (after a change of filter, sort or shown columns); the cursor stays on
        its row when that row is still shown."""
        keep = self.current_key
        self.clear(columns=True)
        self._add_columns()
        for key, cells in self._visible_rows():
            self.add_row(*cells, key=key)
        if keep is not None and keep in self.rows:
            self.move_cursor(row=self.get_row_index(keep), animate=False)
        self._show_filter()

    def _show_filter(self) -> None:
        """The filter and its count in the top border (only while a filter is on: no border, no row)."""
        self.set_class(bool(self.filter_text), "-filtered")
        title = f"filter: /{self.filter_text} ({self.row_count} of {self.total})" if self.filter_text else None
        if title != self._filter_title:  # setting the border's title repaints the table, even to the same text
            self._filter_title = title
            self.border_title = Text(title) if title else None  # Text: a regex's [..] is not markup

    # -- filter ----------------------------------------------------------------------------------------
    def set_filter(self, text: str) -> None:
        """Show only the rows that :func:`compile_filter` ``(text)`` keeps (ValueError for a bad regex)."""
        self._filter = compile_filter(text)
        self.filter_text = text
        self._rebuild()

    def action_filter(self) -> None:
        # A screen that binds `/` itself filters this list its own way (through the daemon): its key wins.
        if not self.LOCAL_FILTER or "slash" in self.screen._bindings.key_to_bindings:
            raise SkipAction
        existing = self._filter_input()
        if existing is not None:
            existing.focus()
            return
        if isinstance(self.parent, Widget):
            field = FilterInput(self, self.filter_text)
            self.parent.mount(field, before=self)
            field.focus()

    def _filter_input(self) -> FilterInput | None:
        if self.parent is None:
            return None
        return next((w for w in self.parent.query_children(FilterInput) if w.target is self), None)

    def on_filter_input_applied(self, event: FilterInput.Applied) -> None:
        event.stop()
        if event.text != self.filter_text:
            self.set_filter(event.text)
        field = self._filter_input()
        if field is not None:
            field.show_count(self.row_count, self.total)
            if event.done:
                field.remove()
                self.focus()

    # -- sort ------------------------------------------------------------------------------------------
    @property
    def _sortable(self) -> tuple[int, ...]:
        """The shown columns a sort can be on (not an unlabelled mark column)."""
        return tuple(i for i in self._shown if self.COLUMNS[i]) if self.SORTABLE else ()

    def action_sort(self, step: int) -> None:
        """Sort on the next shown column to the right (``step`` 1) or left (-1), ascending."""
        columns = self._sortable
        if not columns:
            return
        if self.sort_column in columns:
            at = columns.index(self.sort_column) + step
        else:
            at = 0 if step > 0 else len(columns) - 1
        self.sort_column = columns[at % len(columns)]
        self.sort_reverse = False
        self._rebuild()

    def action_reverse(self) -> None:
        """Reverse the sort (sorting on the first column if nothing was sorted)."""
        columns = self._sortable
        if not columns:
            return
        if self.sort_column is None:
            self.sort_column = columns[0]
        self.sort_reverse = not self.sort_reverse
        self._rebuild()

    # -- columns by priority -----------------------------------------------------------------------------
    def on_resize(self, event: events.Resize) -> None:
        self._fit_columns()

    def _natural_widths(self, short: bool) -> list[int]:
        widths = [max(cell_len(self._label(i, short)), self.COLUMN_MIN.get(label, 0))
                  for i, label in enumerate(self.COLUMNS)]
        for _key, cells in self._all:
            for i, cell in enumerate(cells[: len(widths)]):
                widths[i] = max(widths[i], cell_len(cell.plain))
        for i, label in enumerate(self.COLUMNS):
            if label in self.COLUMN_MAX:
                widths[i] = min(widths[i], max(self.COLUMN_MAX[label], cell_len(self._label(i, short))))
        return widths

    def _layout(self, room: int) -> Layout:
        """The columns that fit in ``room`` cells, the widths they are cut to, and whether the headers are
        the short ones (tried before any column hides)."""
        pad = 2 * self.cell_padding
        labels = list(self.COLUMNS)
        flex = labels.index(self.FLEX_COLUMN) if self.FLEX_COLUMN is not None and self.FLEX_COLUMN in labels else None
        shown = list(range(len(labels)))

        def needed(widths: list[int], columns: list[int]) -> int:
            return sum(min(widths[i], self.FLEX_MIN) if i == flex else widths[i] for i in columns) + pad * len(columns)

        short = False
        widths = self._natural_widths(short)
        if self.COLUMN_SHORT and needed(widths, shown) > room:
            short = True
            widths = self._natural_widths(short)
        by_priority = sorted((i for i in shown if self.COLUMN_PRIORITY.get(labels[i], 0) > 0),
                             key=lambda i: (-self.COLUMN_PRIORITY[labels[i]], -i))
        for i in by_priority:
            if needed(widths, shown) <= room:
                break
            shown.remove(i)
        limits = {i: widths[i] for i in shown if labels[i] in self.COLUMN_MAX}
        if flex is not None and flex in shown:
            others = sum(widths[i] + pad for i in shown if i != flex)
            limits[flex] = max(self.FLEX_MIN, min(widths[flex], room - others - pad))
        return Layout(tuple(shown), limits, short)

    def _fit_columns(self) -> bool:
        """Lay the columns out for the width the table has; True when that rebuilt the table."""
        room = self.size.width - self.styles.scrollbar_size_vertical
        if not self.is_mounted or room <= 0:
            return False
        layout = self._layout(room)
        if layout == self._columns_layout:
            return False
        self._columns_layout = layout
        self._rebuild()
        return True

    # -- rows --------------------------------------------------------------------------------------------
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
        """Keep these rows and show those the filter passes, in the sort order: cell by cell when the keys
        shown stay the same, in the same order (nothing is repainted when nothing changed); else rebuilt,
        keeping the cursor on the same key."""
        self._all = [(key, tuple(as_cell(cell) for cell in cells)) for key, cells in rows]
        if self._fit_columns():
            return
        wanted = self._visible_rows()
        if [key for key, _cells in wanted] == self.keys():
            for key, cells in wanted:
                self._update_row(key, cells)
            if self.filter_text:
                self._show_filter()
            return
        keep = self.current_key
        self.clear()
        for key, cells in wanted:
            self.add_row(*cells, key=key)
        if keep is not None and keep in self.rows:
            self.move_cursor(row=self.get_row_index(keep), animate=False)
        self._show_filter()

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

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        """Textual's idle pass widens the columns for new or wider cells without changing the key of its
        line caches: lines painted before it (a loaded machine paints between ``add_row`` and idle) would be
        painted again as they were, cells cut to the old widths, for good. When the widths changed, drop them."""
        super()._update_dimensions(new_rows)
        widths = tuple(column.get_render_width(self) for column in self.ordered_columns)
        if widths != self._painted_widths:
            self._painted_widths = widths
            self._clear_caches()
            self._update_count += 1
            self.refresh()

    def keys(self) -> list[str]:
        """Row keys in display order."""
        return [row.key.value for row in self.ordered_rows if row.key.value is not None]
