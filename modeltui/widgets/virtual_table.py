"""A table as tall as its whole list that draws only the rows on screen (Textual's Line API): 10,000 rows
cost what a screenful does. Rows come from a :class:`RowSource` (the client-side cache of a list), a row
not fetched yet shows as ``…`` and the table posts :class:`VirtualTable.Wanted` for the rows it shows, so
its screen can ask for what is missing.

Keys are the lists' own (k9s habits): ``j``/``k``, ``g``/``G``, ``Home``/``End`` and ``PgUp``/``PgDn``
reach the real top and bottom of the whole list; ``<``/``>`` move the sort column and ``-`` reverses it
(▲/▼ in the header), the sort itself being the source's (the daemon's); enter posts
:class:`VirtualTable.Chosen`. Columns hide by priority when the table is narrow, so those an operator needs
stay whole at 80 columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar, Generic, Protocol, TypeVar

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ..format import printable

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

PLACEHOLDER = "…"


class RowSource(Protocol[T_co]):
    """What a virtual table shows: how many rows, and each one that is known."""

    @property
    def count(self) -> int: ...

    def item(self, index: int) -> T_co | None: ...


class FixedRows(Generic[T]):
    """A source of rows all given at once."""

    def __init__(self, items: Sequence[T]) -> None:
        self.items = list(items)

    @property
    def count(self) -> int:
        return len(self.items)

    def item(self, index: int) -> T | None:
        return self.items[index] if 0 <= index < len(self.items) else None


class VirtualTable(ScrollView, Generic[T], can_focus=True):
    """Subclasses set COLUMNS and turn an item into its cells (:meth:`cells`) and its key (:meth:`key_of`)."""

    COLUMNS: ClassVar[Sequence[str]] = ()
    COLUMN_PRIORITY: ClassVar[Mapping[str, int]] = {}
    """Column → priority: 0 (default) never hides; higher numbers hide first when room is short."""
    COLUMN_MIN: ClassVar[Mapping[str, int]] = {}
    """Column → the fewest cells it takes (its width does not jump for a screenful of short values)."""
    COLUMN_MAX: ClassVar[Mapping[str, int]] = {}
    """Column → the most cells it takes (longer cells end with …)."""
    COLUMN_CUT: ClassVar[Mapping[str, int]] = {}
    """Column → the width it may be cut down to when the columns that never hide do not fit."""
    FLEX_COLUMN: ClassVar[str | None] = None
    """The column that takes the room left (a description), hidden when that is under FLEX_MIN."""
    FLEX_MIN: ClassVar[int] = 12
    GAP = 2

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "virtual-table--header", "virtual-table--cursor", "virtual-table--placeholder"
    }
    DEFAULT_CSS = """
    VirtualTable { height: 1fr; overflow-x: hidden; overflow-y: auto; background: $surface; }
    VirtualTable > .virtual-table--header { text-style: bold; background: $panel; color: $foreground; }
    VirtualTable > .virtual-table--cursor {
        background: $block-cursor-blurred-background; color: $block-cursor-blurred-foreground;
    }
    VirtualTable:focus > .virtual-table--cursor {
        background: $block-cursor-background; color: $block-cursor-foreground; text-style: $block-cursor-text-style;
    }
    VirtualTable > .virtual-table--placeholder { color: $text-muted; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "choose", "Open", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("g,home", "first", "First", show=False),
        Binding("G,end", "last", "Last", show=False),
        Binding("less_than_sign", "sort(-1)", "Sort ←", key_display="<", show=False),
        Binding("greater_than_sign", "sort(1)", "Sort →", key_display=">", show=False),
        Binding("minus", "reverse", "Reverse sort", key_display="-", show=False),
    ]

    cursor: reactive[int] = reactive(0, init=False)
    """Index in the whole list of the highlighted row."""

    class Wanted(Message):
        """Rows ``first``..``last`` (indexes in the whole list) are on screen."""

        def __init__(self, first: int, last: int) -> None:
            super().__init__()
            self.first = first
            self.last = last

    class Sorted(Message):
        """The user chose another sort: column ``column`` (a label of COLUMNS), ``descending`` or not."""

        def __init__(self, column: str, descending: bool) -> None:
            super().__init__()
            self.column = column
            self.descending = descending

    class Chosen(Message):
        """Enter on a row that is known: its index in the whole list and its key."""

        def __init__(self, index: int, key: str) -> None:
            super().__init__()
            self.index = index
            self.key = key

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.source: RowSource[T] = FixedRows[T]([])
        self.sort_column = 0
        """Index in COLUMNS of the column the source is sorted on."""
        self.sort_reverse = False
        self._wanted: tuple[int, int] | None = None
        self._drawn = 0  # bumped by every change of rows: the layout is worked out again
        self._on_screen: tuple[object, ...] = ()  # what rows_changed last saw on screen
        self._layout_memo: tuple[tuple[object, ...], tuple[list[int], list[int]]] | None = None

    # -- what a subclass says ---------------------------------------------------------------------------
    def cells(self, item: T) -> tuple[str, ...]:
        """The row's cells, in COLUMNS order."""
        raise NotImplementedError

    def key_of(self, item: T) -> str:
        """The row's key (its first cell unless said otherwise)."""
        return self.cells(item)[0]

    # -- the rows ---------------------------------------------------------------------------------------
    def set_source(self, source: RowSource[T]) -> None:
        """Show ``source`` (the cursor stays at its index, within the new count)."""
        self.source = source
        self.rows_changed()

    def rows_changed(self) -> None:
        """The source's rows or count may have changed: redraw if what is on screen did (a refresh that
        brings the same rows sends nothing to the terminal), and ask for what is on screen."""
        count = self.source.count
        self.virtual_size = Size(self.size.width, count + 1)  # +1: the header line
        if self.cursor >= count:
            self.cursor = max(0, count - 1)
        first = self.first_shown
        on_screen = (id(self.source), count, first,
                     tuple(self.source.item(i) for i in range(first, min(count, first + self.page_height))))
        if on_screen != self._on_screen:
            self._on_screen = on_screen
            self._drawn += 1
            self.refresh()
        self._post_wanted(force=True)

    @property
    def row_count(self) -> int:
        return self.source.count

    @property
    def page_height(self) -> int:
        """Rows on screen (the header takes a line)."""
        return max(1, self.scrollable_content_region.height - 1)

    @property
    def first_shown(self) -> int:
        return round(self.scroll_y)

    def get_row_at(self, index: int) -> list[Text]:
        """Row ``index``'s cells as text (``…`` when not fetched yet)."""
        item = self.source.item(index)
        return [Text(PLACEHOLDER)] if item is None else [Text(printable(c)) for c in self.cells(item)]

    def get_row_index(self, key: str) -> int:
        """The index of the known row ``key`` (KeyError when not among the rows fetched)."""
        for index in range(self.source.count):
            item = self.source.item(index)
            if item is not None and self.key_of(item) == key:
                return index
        raise KeyError(key)

    def move_cursor(self, *, row: int) -> None:
        self.cursor = row

    @property
    def current(self) -> T | None:
        """The item under the cursor, when known."""
        return self.source.item(self.cursor)

    # -- keys -------------------------------------------------------------------------------------------
    def validate_cursor(self, value: int) -> int:
        return max(0, min(value, self.source.count - 1))

    def watch_cursor(self, old: int, new: int) -> None:
        top = self.first_shown
        if new < top:
            self.scroll_to(y=new, animate=False, immediate=True)
        elif new >= top + self.page_height:
            self.scroll_to(y=new - self.page_height + 1, animate=False, immediate=True)
        self.refresh_line(old + 1)  # virtual lines: the header is line 0
        self.refresh_line(new + 1)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._post_wanted()

    def on_resize(self, event: events.Resize) -> None:
        self.virtual_size = Size(event.size.width, self.source.count + 1)
        self._post_wanted()

    def _post_wanted(self, force: bool = False) -> None:
        first = self.first_shown
        span = (first, first + self.page_height - 1)
        if force or span != self._wanted:
            self._wanted = span
            self.post_message(self.Wanted(*span))

    def action_move(self, step: int) -> None:
        self.cursor += step

    def action_page(self, step: int) -> None:
        self.cursor += step * self.page_height

    def action_first(self) -> None:
        self.cursor = 0

    def action_last(self) -> None:
        self.cursor = self.source.count - 1

    def action_choose(self) -> None:
        item = self.current
        if item is not None:
            self.post_message(self.Chosen(self.cursor, self.key_of(item)))

    def action_sort(self, step: int) -> None:
        """Sort on the next shown column to the right (1) or left (-1), ascending."""
        shown = self._layout()[0]
        at = shown.index(self.sort_column) + step if self.sort_column in shown else 0
        self.sort_column, self.sort_reverse = shown[at % len(shown)], False
        self._sorted()

    def action_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self._sorted()

    def _sorted(self) -> None:
        self.refresh()
        self.post_message(self.Sorted(self.COLUMNS[self.sort_column], self.sort_reverse))

    def on_click(self, event: events.Click) -> None:
        if event.y >= 1:
            self.cursor = self.first_shown + event.y - 1
            if event.chain == 2:
                self.action_choose()

    # -- drawing ----------------------------------------------------------------------------------------
    def _label(self, index: int) -> str:
        label = self.COLUMNS[index]
        if index == self.sort_column:
            label += " ▼" if self.sort_reverse else " ▲"
        return label

    def _layout(self) -> tuple[list[int], list[int]]:
        """The columns shown and their widths, fitted to what is on screen and the room there is (worked
        out once per screenful, not per line)."""
        memo = (self._drawn, self.first_shown, self.size, self.sort_column, self.sort_reverse)
        if self._layout_memo is None or self._layout_memo[0] != memo:
            self._layout_memo = (memo, self._fit())
        return self._layout_memo[1]

    def _fit(self) -> tuple[list[int], list[int]]:
        widths = [max(cell_len(self._label(i)), self.COLUMN_MIN.get(c, 0)) for i, c in enumerate(self.COLUMNS)]
        first = self.first_shown
        for index in range(first, min(first + self.page_height, self.source.count)):
            item = self.source.item(index)
            if item is not None:
                for i, cell in enumerate(self.cells(item)):
                    widths[i] = max(widths[i], cell_len(cell))
        for i, column in enumerate(self.COLUMNS):
            if column in self.COLUMN_MAX:
                widths[i] = min(widths[i], max(self.COLUMN_MAX[column], cell_len(self._label(i))))
        room = self.scrollable_content_region.width
        flex = self.COLUMNS.index(self.FLEX_COLUMN) if self.FLEX_COLUMN in self.COLUMNS else None
        shown = list(range(len(self.COLUMNS)))

        cut = [min(w, self.COLUMN_CUT.get(c, w)) for w, c in zip(widths, self.COLUMNS, strict=True)]

        def needed(at: list[int] = widths) -> int:
            return sum(self.FLEX_MIN if i == flex else at[i] for i in shown) + self.GAP * (len(shown) - 1)

        # A column hides only when cutting those that may be cut would not make room.
        for i in sorted(shown, key=lambda i: (-self.COLUMN_PRIORITY.get(self.COLUMNS[i], 0), -i)):
            if needed(cut) <= room or not self.COLUMN_PRIORITY.get(self.COLUMNS[i], 0):
                break
            shown.remove(i)
        for i, column in enumerate(self.COLUMNS):  # still too wide: cut what may be cut, in order
            excess = needed() - room
            if excess > 0 and i in shown and column in self.COLUMN_CUT:
                widths[i] = max(min(widths[i], self.COLUMN_CUT[column]), widths[i] - excess)
        if flex in shown:
            assert flex is not None
            widths[flex] = max(self.FLEX_MIN, room - sum(widths[i] + self.GAP for i in shown if i != flex))
        return shown, [widths[i] for i in shown]

    def _line(self, texts: Sequence[str], widths: Sequence[int], style: Style) -> Strip:
        line = Text(no_wrap=True, overflow="ellipsis")
        for n, (text, width) in enumerate(zip(texts, widths, strict=True)):
            cell = Text(printable(text), no_wrap=True, overflow="ellipsis")
            cell.truncate(width, overflow="ellipsis", pad=True)
            line.append_text(cell)
            if n < len(widths) - 1:
                line.append(" " * self.GAP)
        segments = [Segment(s.text, style + s.style if s.style else style) for s in line.render(self.app.console)]
        return Strip(segments).adjust_cell_length(self.scrollable_content_region.width, style)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        shown, widths = self._layout()
        if y == 0:
            style = base + self.get_component_rich_style("virtual-table--header")
            return self._line([self._label(i) for i in shown], widths, style)
        index = self.first_shown + y - 1
        if index >= self.source.count:
            return Strip.blank(width, base)
        item = self.source.item(index)
        style = base + self.get_component_rich_style("virtual-table--cursor") if index == self.cursor else base
        if item is None:
            return self._line([PLACEHOLDER], [width], style + self.get_component_rich_style(
                "virtual-table--placeholder", partial=True))
        cells = self.cells(item)
        return self._line([cells[i] for i in shown], widths, style)
