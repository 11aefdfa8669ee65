"""A Static that shows daemon text safely and cheaply: control characters spelt out, repainted only when
what it shows changes, and the screen laid out again only when its height changes.

Strings from the registry and the daemon reach the terminal through these widgets; Textual passes ESC and
the other control characters through, so a raw ESC in a description or a step message could clear the
screen or retitle the window. Markup stays markup (callers put user text in with :func:`literal`);
only control characters (newlines kept) are spelt out, ESC as ``\\x1b``.

``Static.update`` repaints even for the same text, and by default asks for a layout, which repaints the
whole screen (some 15 KB at 120×40, sent over SSH each time). Titles and status lines are updated on every
answer of a view that re-reads on a timer; most answers change nothing.
"""

from __future__ import annotations

from typing import cast

from textual.css.styles import RulesMap
from textual.visual import VisualType
from textual.widgets import Static

from ..format import printable


def literal(text: str) -> str:
    """Text to put inside markup, shown as it is: control characters spelt out and every ``[`` escaped.
    (``textual.markup.escape`` escapes only brackets that look like Rich tags; Textual's own parser also
    reads ``[2J x=y`` as a tag and fails on it, so registry text would break or restyle the line.)"""
    return printable(text).replace("[", "\\[")


def spelt(content: VisualType) -> VisualType:
    """Markup or text with its control characters spelt out (other visuals unchanged)."""
    return printable(content, keep="\n") if isinstance(content, str) else content


class QuietStatic(Static):
    """A Static whose :meth:`update` is free when the content is the one shown, and never sends a control
    character of its content to the terminal."""

    def __init__(self, content: VisualType = "", *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(spelt(content), id=id, classes=classes)

    def update(self, content: VisualType = "", *, layout: bool = True) -> None:
        content = spelt(content)
        shown = self.content
        if type(shown) is type(content) and shown == content:
            return
        width, height = self.content_size
        if not layout or not self.is_mounted or not width:
            super().update(content, layout=layout)
            return
        super().update(content, layout=False)
        # Textual measures with the widget's styles too (they answer the rules a visual reads).
        if self.visual.get_height(cast(RulesMap, self.styles), width) != height:
            self.clear_cached_dimensions()
            self.refresh(layout=True)
