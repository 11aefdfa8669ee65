"""Metrics of one deployment: numbers, plots over time, per-class quality and drift, over a chosen window.

Metrics are sampled by the daemon's monitor every scrape interval, so the view re-asks on a timer (and on
the deployment's own events). The protocol does not tell the interval: the view learns it from how far
apart successive ``last_scrape`` times are, and asks again that often (never more than every
:data:`MIN_REFRESH` seconds). The timer runs only while the screen is shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid
from textual.events import ScreenResume, ScreenSuspend
from textual.timer import Timer
from textual.widgets import Static, TabbedContent, TabPane

from daemon.protocol import requests, results
from daemon.protocol.events import DeploymentEvent, RegistryEvent

from ..format import window
from ..widgets import ClassMetricsTable, DriftTable, MetricsSummary, QuietStatic, literal
from ..widgets.metrics_tables import target_state
from ..widgets.shell_footer import ShellFooter
from ..widgets.status_header import StatusHeader
from .base import RegistryScreen

#: The windows the keys 1-4 choose, in seconds.
WINDOWS: tuple[int, ...] = (300, 3600, 6 * 3600, 24 * 3600)
#: Never ask more often than this (seconds), whatever the scrape interval.
MIN_REFRESH = 2.0
#: Never wait longer than this between two asks (seconds).
MAX_REFRESH = 60.0


class MetricsScreen(RegistryScreen):
    """A deployment's derived metrics (``metrics.get``) with plots of request rate, p95 latency, F1 and drift."""

    BINDINGS: ClassVar[list[BindingType]] = [
        # The footer shows the first three (? help lists them all).
        Binding("p", "tab('plots')", "Plots"),
        Binding("t", "tab('drift')", "Drift"),
        Binding("2", "window(3600)", "1h"),
        Binding("1", "window(300)", "5m"),
        Binding("3", "window(21600)", "6h"),
        Binding("4", "window(86400)", "24h"),
        Binding("c", "tab('classes')", "Classes"),
        Binding("R", "refresh", "Refresh", key_display="R", show=False),  # g: the first row of a list
    ]

    def __init__(self, name: str, *, window_seconds: int = 3600) -> None:
        super().__init__()
        self.deployment_name = name
        self.window_seconds = window_seconds
        self.metrics: results.DeploymentMetrics | None = None
        """The last answer shown."""
        self.refresh_seconds = MIN_REFRESH
        """How often the view asks again (learned from the scrape interval)."""
        self.timer: Timer | None = None
        """The pending re-ask; None while the screen is not shown."""
        self.answers = 0
        """How many answers were shown (for tests and the status line)."""
        self._last_scrape: datetime | None = None
        self._gap: float | None = None

    def compose(self) -> ComposeResult:
        from ..widgets.metrics_plots import MetricsPlot  # Plotext: imported when the view is first shown

        yield StatusHeader()
        yield QuietStatic(self.deployment_name, id="metrics-title", classes="title")
        yield MetricsSummary(id="metrics-summary")
        with TabbedContent(id="metrics-tabs", initial="plots"):
            with TabPane("Plots", id="plots"), Grid(id="metrics-plots"):
                yield MetricsPlot("requests/s", zero_as="no requests in the window", id="plot-rate")
                yield MetricsPlot("p95 latency ms", id="plot-p95")
                yield MetricsPlot("F1 (macro)", id="plot-f1")
                yield MetricsPlot("drift PSI (worst feature)", id="plot-drift")
            with TabPane("Classes", id="classes"):
                yield ClassMetricsTable(id="metrics-classes")
            with TabPane("Drift", id="drift"):
                yield DriftTable(id="metrics-drift")
        yield ShellFooter(show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = f"metrics {self.deployment_name}"
        self._show_title()
        super().on_mount()

    # -- asking ----------------------------------------------------------------------------------------
    def reload(self) -> None:
        self._stop_timer()
        request = requests.MetricsRequest(name=self.deployment_name, window_seconds=self.window_seconds)
        self.call(request, self._show, group="metrics")

    def wants(self, events: Sequence[RegistryEvent]) -> bool:
        return False

    def deployments_changed(self, events: Sequence[DeploymentEvent]) -> None:
        if any(e.deployment == self.deployment_name for e in events) and self.timer is not None:
            self.reload()

    def _arm(self) -> None:
        """Ask again after the refresh period, if the screen is shown."""
        self._stop_timer()
        if self.is_current:
            self.timer = self.set_timer(self.refresh_seconds, self.reload)

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.stop()
            self.timer = None

    def on_screen_suspend(self, _event: ScreenSuspend) -> None:
        self._stop_timer()

    def on_screen_resume(self, _event: ScreenResume) -> None:
        if self.answers:  # the first ask is on_mount's
            self.reload()

    # -- showing ---------------------------------------------------------------------------------------
    def _show(self, m: results.DeploymentMetrics) -> None:
        if m.window_seconds != self.window_seconds:
            return  # an answer for the window before a key press
        self.metrics = m
        self.answers += 1
        self._learn_interval(m.last_scrape)
        self._show_title()
        self.query_one(MetricsSummary).show(m)
        self.query_one(ClassMetricsTable).show(m)
        self.query_one(DriftTable).show(m)
        from ..widgets.metrics_plots import MetricsPlot

        self.query_one("#plot-rate", MetricsPlot).show([(p.t, p.request_rate) for p in m.points], m.start, m.end)
        self.query_one("#plot-p95", MetricsPlot).show(
            [(p.t, None if p.p95_seconds is None else p.p95_seconds * 1000) for p in m.points], m.start, m.end
        )
        self.query_one("#plot-f1", MetricsPlot).show([(p.t, p.f1) for p in m.points], m.start, m.end)
        self.query_one("#plot-drift", MetricsPlot).show([(p.t, p.drift_psi) for p in m.points], m.start, m.end)
        self._arm()

    def _learn_interval(self, last_scrape: datetime | None) -> None:
        """The smallest gap seen between two distinct scrapes is the scrape interval (or a multiple)."""
        if last_scrape is None:
            return
        before, self._last_scrape = self._last_scrape, last_scrape
        if before is None or last_scrape <= before:
            return
        gap = (last_scrape - before).total_seconds()
        self._gap = gap if self._gap is None else min(self._gap, gap)
        self.refresh_seconds = min(MAX_REFRESH, max(MIN_REFRESH, self._gap))

    def _show_title(self) -> None:
        m = self.metrics
        first = f"[b]{literal(self.deployment_name)}[/b]  window [b]{window(self.window_seconds)}[/b]"
        second = "loading…" if m is None else f"{target_state(m)}  every {self.refresh_seconds:.0f}s"
        self.query_one("#metrics-title", Static).update(f"{first}  {second}")

    # -- actions ---------------------------------------------------------------------------------------
    def action_window(self, seconds: int) -> None:
        if seconds == self.window_seconds:
            return
        self.window_seconds = seconds
        self.metrics = None
        self._show_title()
        self.reload()

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def action_refresh(self) -> None:
        self.reload()
