"""A deployment's log: Textual's ``Log`` with a line cap and coalesced writes, so a flood stays responsive.

Lines arrive in batches (one per log event). Instead of writing each batch at once, :meth:`LogView.append`
queues it and one timer flushes everything queued with a single ``write_lines`` — at most
``1 / FLUSH_SECONDS`` writes a second whatever the rate of events, and never more than ``max_lines`` lines
per write (older queued lines would be pruned at once anyway).

``/`` filters the lines like every list (:mod:`.list_filter`; ``!`` inverts): every line received is kept
(up to the cap), the view shows those that match, and lines arriving later show only if they match.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Input, Log

from ..format import printable
from .list_filter import FilterInput, RowFilter, compile_filter

#: Lines kept by default (older lines are dropped).
MAX_LINES = 5000
#: Queued lines are written at most this often.
FLUSH_SECONDS = 0.05


class LogView(Log):
    """Log lines of one deployment, newest at the bottom; follows the end unless scrolled up."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter", key_display="/", show=False),
    ]
    DEFAULT_CSS = """
    LogView.-filtered { border-top: solid $accent; border-title-color: $accent; }
    """

    def __init__(self, *, max_lines: int = MAX_LINES, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(max_lines=max_lines, auto_scroll=True, id=id, classes=classes)
        self._queued: deque[str] = deque(maxlen=max_lines)
        self._kept: deque[str] = deque(maxlen=max_lines)
        """Every line written, matching or not (the filter can change)."""
        self.filter_text = ""
        """The ``/`` filter shown (``""``: none)."""
        self._filter: RowFilter = compile_filter("")
        self._flush_timer: Timer | None = None
        self.received = 0
        """Lines received since the last :meth:`reset` (including those dropped by the cap)."""

    def on_show(self) -> None:
        """Shown (its tab chosen): take the keys, so ``/``, arrows and PgUp/PgDn act on the log at once —
        unless the user is typing somewhere."""
        if not isinstance(self.screen.focused, Input):
            self.focus(scroll_visible=False)

    def append(self, lines: Iterable[str]) -> None:
        """Queue a batch of lines; they are written on the next flush."""
        # The model's own output: Textual's Log blanks only U+0000-U+0014, so ESC and the rest are spelt out.
        batch = [printable(line, keep="\t") for line in lines]
        self.received += len(batch)
        self._queued.extend(batch)
        if self._flush_timer is None and self.is_attached:
            self._flush_timer = self.set_timer(FLUSH_SECONDS, self._flush)

    def note(self, text: str) -> None:
        """A line of our own (stream ended, truncated tail…), written after what is queued."""
        self.append([f"── {text} ──"])

    def reset(self) -> None:
        """Forget everything shown and queued."""
        self._queued.clear()
        self._kept.clear()
        self.received = 0
        self.clear()

    def set_filter(self, text: str) -> None:
        """Show only the lines :func:`compile_filter` ``(text)`` keeps (ValueError for a bad regex)."""
        self._filter = compile_filter(text)
        self.filter_text = text
        self.clear()
        self.write_lines([line for line in self._kept if self._filter((line,))])
        self.set_class(bool(text), "-filtered")
        self.border_title = Text(f"filter: /{text}") if text else None  # Text: a regex's [..] is not markup

    def action_filter(self) -> None:
        if not isinstance(self.parent, Widget):
            return
        field = next((w for w in self.parent.query_children(FilterInput) if w.target is self), None)
        if field is None:
            field = FilterInput(self, self.filter_text)
            self.parent.mount(field, before=self)
        field.focus()

    def on_filter_input_applied(self, event: FilterInput.Applied) -> None:
        event.stop()
        if event.text != self.filter_text:
            self.set_filter(event.text)
        if event.done and isinstance(self.parent, Widget):
            for field in self.parent.query_children(FilterInput):
                if field.target is self:
                    field.remove()
            self.focus()

    @property
    def pending(self) -> int:
        """Lines queued and not yet written."""
        return len(self._queued)

    def _flush(self) -> None:
        self._flush_timer = None
        if not self._queued:
            return
        lines = list(self._queued)
        self._queued.clear()
        self._kept.extend(lines)
        shown = [line for line in lines if self._filter((line,))] if self.filter_text else lines
        if shown:
            self.write_lines(shown)
