"""Screen updates that send only the cells that changed.

A widget that repaints part of itself (``refresh(region)``: one cell of a :class:`.KeyedTable`) gets a
partial update from Textual's compositor, but Textual 8's ``ChopsUpdate.render_segments`` crops each line
only at the region's right edge: it sends the line from the widget's left edge (Textual issue 5625). A
deployment's uptime cell at column 50 of a table cost its whole row, some 280 bytes a minute a row over
SSH. :func:`send_only_dirty_cells` makes it start at the region's left edge, except for a line holding
wide characters (a cut there could split one).
"""

from __future__ import annotations

from rich.console import Console
from rich.control import Control
from textual._compositor import ChopsUpdate


def render_dirty_cells(update: ChopsUpdate, console: Console) -> str:
    """``ChopsUpdate.render_segments``, each line cropped to its dirty span at both ends."""
    sequences: list[str] = []
    append = sequences.append
    move_to = Control.move_to
    last_y = update.spans[-1][0]
    for y, x1, x2 in update.spans:
        for end, (x, strip) in zip(update.chop_ends[y], update.chops[y].items(), strict=False):
            if strip is None or x >= x2 or end <= x1:
                continue
            start = max(x, x1)
            if start > x and strip.cell_length != len(strip.text):  # wide characters: cut as Textual does
                start = x
            stop = min(end, x2)
            if (start, stop) != (x, end):
                strip = strip.crop(start - x, stop - x)
            append(move_to(start, y).segment.text)
            append(strip.render(console))
        if y != last_y:
            append("\n")
    return "".join(sequences)


def send_only_dirty_cells() -> None:
    """Have every partial screen update send its dirty cells only (idempotent)."""
    ChopsUpdate.render_segments = render_dirty_cells  # type: ignore[method-assign, assignment]
