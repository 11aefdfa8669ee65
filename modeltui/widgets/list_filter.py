"""The `/` filter every list shares: one regex over every visible cell, smart-case, ``!`` inverts.

:func:`compile_filter` turns what the user typed into a predicate over a row's cells (the same one the
tables and the log view use); :class:`FilterInput` is the line the user types it into.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Input

RowFilter = Callable[[Sequence[str]], bool]


def _everything(_cells: Sequence[str]) -> bool:
    return True


def compile_filter(text: str) -> RowFilter:
    """A predicate that keeps a row when any of its cells matches ``text`` as a regex (case-insensitive
    unless ``text`` has a capital letter); a leading ``!`` keeps the rows that do NOT match. An empty
    filter keeps everything. A bad regex raises ``ValueError`` with a message a user can read."""
    inverse = text.startswith("!")
    pattern = text[1:] if inverse else text
    if not pattern:
        return _everything
    flags = 0 if any(c.isupper() for c in pattern) else re.IGNORECASE
    try:
        regex = re.compile(pattern, flags)
    except re.error as exc:
        where = f" at {exc.pos}" if exc.pos is not None else ""
        raise ValueError(f"bad regex {pattern!r}: {exc.msg}{where}") from None
    search = regex.search

    def matches(cells: Sequence[str]) -> bool:
        return any(search(cell) for cell in cells) != inverse

    return matches


class FilterInput(Input):
    """The line a `/` opens above a list: every keystroke applies the filter to its ``target`` (the list
    that opened it) with :class:`Applied`; enter keeps the filter and hands focus back, esc clears it. A
    bad regex turns the border red with the reason and the last good filter stays."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "clear", "Clear filter", show=False)]

    class Applied(Message):
        """The filter to show (``""`` for none); ``done`` when the user left the input."""

        def __init__(self, text: str, *, done: bool) -> None:
            super().__init__()
            self.text = text
            self.done = done

    def __init__(self, target: Widget, value: str = "", *, id: str | None = None) -> None:
        super().__init__(value=value, placeholder="regex (!regex: the others) · enter keeps · esc clears", id=id)
        self.target = target
        """The list this input filters: it receives :class:`Applied`."""
        self.border_title = "/ filter"

    def show_count(self, shown: int, total: int) -> None:
        """Say how many rows pass (the border's title)."""
        self.border_title = f"/ filter ({shown} of {total})"

    def _apply(self, text: str, *, done: bool) -> None:
        try:
            compile_filter(text)
        except ValueError as exc:
            self.add_class("-bad")
            self.border_title = Text(str(exc))  # Text: the regex's [..] is not markup
            return
        self.remove_class("-bad")
        self.target.post_message(self.Applied(text, done=done))

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._apply(event.value, done=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._apply(event.value, done=True)

    def action_clear(self) -> None:
        self.remove_class("-bad")
        self.target.post_message(self.Applied("", done=True))
