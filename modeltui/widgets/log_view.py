"""A deployment's log: Textual's ``Log`` with a line cap and coalesced writes, so a flood stays responsive.

Lines arrive in batches (one per log event). Instead of writing each batch at once, :meth:`LogView.append`
queues it and one timer flushes everything queued with a single ``write_lines`` — at most
``1 / FLUSH_SECONDS`` writes a second whatever the rate of events, and never more than ``max_lines`` lines
per write (older queued lines would be pruned at once anyway).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from textual.timer import Timer
from textual.widgets import Log

from ..format import printable

#: Lines kept by default (older lines are dropped).
MAX_LINES = 5000
#: Queued lines are written at most this often.
FLUSH_SECONDS = 0.05


class LogView(Log):
    """Log lines of one deployment, newest at the bottom; follows the end unless scrolled up."""

    def __init__(self, *, max_lines: int = MAX_LINES, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(max_lines=max_lines, auto_scroll=True, id=id, classes=classes)
        self._queued: deque[str] = deque(maxlen=max_lines)
        self._flush_timer: Timer | None = None
        self.received = 0
        """Lines received since the last :meth:`reset` (including those dropped by the cap)."""

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
        self.received = 0
        self.clear()

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
        self.write_lines(lines)
