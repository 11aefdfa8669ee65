"""Numbers of the metrics view: a summary block, per-class quality and per-feature drift tables.

They only display a :class:`~daemon.protocol.results.DeploymentMetrics` handed to them; the screen asks
the daemon for it.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text

from daemon.protocol.results import DeploymentMetrics

from ..format import PALETTE, clock, drift_summary, ms, pct
from .keyed_table import KeyedTable
from .quiet_static import QuietStatic

#: What the drift table says of a feature in each state the daemon gives (it claims nothing on too few
#: observations: "not_enough_data" until ``min_count`` live values were seen in the window).
DRIFT_WORDS = {"ok": "ok", "shifted": "shifted", "not_enough_data": "not enough data"}


def num(v: float | None, fmt: str = "{:.3f}") -> str:
    """A number, ``-`` for None."""
    return "-" if v is None else fmt.format(v)


def target_state(m: DeploymentMetrics) -> str:
    """``UP``/``DOWN (reason)``/``never scraped``, then when the last scrape was, to the minute (markup):
    a time to the second would change, and repaint the title, on every scrape of an idle deployment."""
    if m.up is None:
        state = "[b]never scraped[/b]"
    elif m.up:
        state = f"[b {PALETTE['ok'].variable}]UP[/]"
    else:
        reason = Text(m.scrape_error[:40]).markup if m.scrape_error else ""
        state = f"[{PALETTE['bad'].markup}]DOWN[/]" + (f" ({reason})" if reason else "")
    if m.last_scrape is None:
        return state
    return f"{state}  last scrape {clock(m.last_scrape)}"


def drift_line(m: DeploymentMetrics) -> str:
    """:func:`~modeltui.format.drift_summary` as markup, ``SHIFTED`` in the palette's "bad" tone."""
    text = Text(drift_summary(m.drift)).markup
    return text.replace("SHIFTED", f"[{PALETTE['bad'].markup}]SHIFTED[/]") if text.endswith("SHIFTED") else text


class MetricsSummary(QuietStatic):
    """Request rate, errors, latency percentiles, macro quality and the worst drift, four short lines."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("waiting for metrics…", id=id, classes=classes)
        self.metrics: DeploymentMetrics | None = None
        """The metrics shown."""

    def show(self, m: DeploymentMetrics) -> None:
        self.metrics = m
        lines = [
            f"[b]requests[/b] {m.requests:.0f}  [b]rate[/b] {m.request_rate:.3f}/s  "
            f"[b]errors[/b] {pct(m.error_rate)}  4xx {pct(m.client_error_rate)}",
            f"[b]latency[/b]  p50 {ms(m.latency_p50_seconds)}  p95 {ms(m.latency_p95_seconds)}  "
            f"p99 {ms(m.latency_p99_seconds)}",
            f"[b]quality[/b]  {m.labelled:.0f} labelled  accuracy {num(m.accuracy)}  "
            f"P {num(m.precision)}  R {num(m.recall)}  F1 {num(m.f1)} (macro)",
        ]
        lines.append(f"[b]drift[/b]    {drift_line(m)}")
        self.update("\n".join(lines))


class ClassMetricsTable(KeyedTable):
    """Precision, recall, F1 and support of each class."""

    COLUMNS: ClassVar[tuple[str, ...]] = ("class", "precision", "recall", "f1", "support")

    def show(self, m: DeploymentMetrics) -> None:
        self.replace_rows(
            (name, (Text(name), f"{c.precision:.3f}", f"{c.recall:.3f}", f"{c.f1:.3f}", f"{c.support:.0f}"))
            for name, c in sorted(m.per_class.items())
        )


class DriftTable(KeyedTable):
    """PSI and KS of each feature against its reference; shifted ones are flagged, and a feature with too few
    observations says so instead of a verdict."""

    COLUMNS: ClassVar[tuple[str, ...]] = ("feature", "psi", "ks", "n", "status")
    def show(self, m: DeploymentMetrics) -> None:
        self.replace_rows(
            (
                name,
                (
                    Text(name),
                    f"{d.psi:.3f}",
                    f"{d.ks:.3f}",
                    f"{d.count:.0f}",
                    self.tone(DRIFT_WORDS.get(d.state, d.state), "bad" if d.state == "shifted" else None),
                ),
            )
            for name, d in sorted(m.drift.items())
        )
