"""A Static that repaints only when what it shows changes, and lays the screen out again only when its
height changes.

``Static.update`` repaints even for the same text, and by default asks for a layout, which repaints the
whole screen (some 15 KB at 120×40, sent over SSH each time). Titles and status lines are updated on every
answer of a view that re-reads on a timer; most answers change nothing.
"""

from __future__ import annotations

from typing import cast

from textual.css.styles import RulesMap
from textual.visual import VisualType
from textual.widgets import Static


class QuietStatic(Static):
    """A Static whose :meth:`update` is free when the content is the one shown."""

    def update(self, content: VisualType = "", *, layout: bool = True) -> None:
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
