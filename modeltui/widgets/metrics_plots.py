"""Plots of the metrics view, drawn with textual-plotext (Plotext in a Textual widget).

A plot holds the series it was last given (:attr:`MetricsPlot.data`), so what it draws can be checked
without reading terminal cells. Time runs along x, before the end of the window (0 = now), in minutes for
windows up to 6 hours and in hours beyond; the x axis always spans the whole window.

A plot is drawn again only when what it shows changed: the view re-reads every scrape interval, and a
redrawn plot is some 2 KB sent to the terminal. The daemon's steps end at the window's end, so an idle
deployment's points keep their x positions from one answer to the next; a rate that is zero throughout is
shown as "none" rather than as a line that grows by a step each minute.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from textual_plotext import PlotextPlot


class MetricsPlot(PlotextPlot):
    """A line over time with a one-line title."""

    def __init__(self, title: str, *, zero_as: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.plot_title = title
        self.zero_as = zero_as
        """Shown instead of the line when every value is zero or there is none (e.g. ``no requests``); None
        draws zeros."""
        self.data: list[tuple[float, float]] = []
        """(x, y) points drawn: time before the end of the window (in ``unit``), value."""
        self.span = 0.0
        """Width of the x axis (the window, in the x unit)."""
        self.unit = "min"
        self._drawn = self._look()
        """The look last drawn."""
        self._draw()

    def show(self, points: Sequence[tuple[datetime, float | None]], start: datetime, end: datetime) -> None:
        """Draw ``(t, value)`` points; those without a value (no traffic, no feedback) are left out."""
        window = (end - start).total_seconds()
        scale, self.unit = (60, "min") if window <= 6 * 3600 else (3600, "h")
        self.span = window / scale
        self.data = [(-(end - t).total_seconds() / scale, v) for t, v in points if v is not None]
        look = self._look()
        if look != self._drawn:
            self._drawn = look
            self._draw()

    def _look(self) -> tuple[object, ...]:
        """What the plot shows: equal looks draw the same picture (a series without data, or zero
        throughout, shows as a title whatever its points)."""
        if self.zero_as is not None and not any(y for _x, y in self.data):
            return ("zero", self.span, self.unit)
        if not self.data:
            return ("no data", self.span, self.unit)
        return (tuple(self.data), self.span, self.unit)

    def _draw(self) -> None:
        plt = self.plt
        plt.clear_figure()
        plt.title(f"{self.plot_title} ({self.unit} ago)" if self.span else self.plot_title)
        plt.frame(False)
        if self.zero_as is not None and not any(y for _x, y in self.data):
            plt.title(f"{self.plot_title}: {self.zero_as}")
        elif not self.data:
            plt.title(f"{self.plot_title}: no data")
        else:
            xs = [x for x, _y in self.data]
            ys = [y for _x, y in self.data]
            plt.plot(xs, ys, marker="braille")
            plt.xlim(-self.span, 0)
            if min(ys) == max(ys):  # a flat line would otherwise sit on the frame with one tick
                pad = abs(ys[0]) * 0.1 or 1.0
                plt.ylim(ys[0] - pad, ys[0] + pad)
        self.refresh()
