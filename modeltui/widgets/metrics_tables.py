"""Numbers of the metrics view: a summary block, per-class quality and per-feature drift tables.

They only display a :class:`~daemon.protocol.results.DeploymentMetrics` handed to them; the screen asks
the daemon for it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

from rich.text import Text
from textual.widgets import Static

from daemon.protocol.results import DeploymentMetrics

from ._format import duration
from .keyed_table import KeyedTable

#: PSI above this is shown as a shifted feature (the usual rule of thumb, as in ``modeltui metrics``).
PSI_SHIFTED = 0.2


def num(v: float | None, fmt: str = "{:.3f}") -> str:
    """A number, ``-`` for None."""
    return "-" if v is None else fmt.format(v)


def ms(v: float | None) -> str:
    """Seconds shown as milliseconds."""
    return "-" if v is None else f"{v * 1000:.1f} ms"


def pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.2f}%"


def window_label(seconds: int) -> str:
    """``300`` → ``5m``, ``3600`` → ``1h``, ``86400`` → ``24h``."""
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def target_state(m: DeploymentMetrics, now: datetime | None = None) -> str:
    """``UP``/``DOWN (reason)``/``never scraped``, then when the last scrape was (markup)."""
    now = now or datetime.now(UTC)
    if m.up is None:
        state = "[b]never scraped[/b]"
    elif m.up:
        state = "[b $success]UP[/]"
    else:
        reason = Text(m.scrape_error[:40]).markup if m.scrape_error else ""
        state = "[b $error]DOWN[/]" + (f" ({reason})" if reason else "")
    if m.last_scrape is None:
        return state
    at = m.last_scrape if m.last_scrape.tzinfo else m.last_scrape.replace(tzinfo=UTC)
    ago = duration(max(0.0, (now - at).total_seconds()))
    return f"{state}  last scrape {at.astimezone().strftime('%H:%M:%S')} ({ago} ago)"


class MetricsSummary(Static):
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
        if m.drift:
            feature, worst = max(m.drift.items(), key=lambda kv: kv[1].psi)
            flag = "  [b $error]SHIFTED[/]" if worst.psi > PSI_SHIFTED else ""
            lines.append(f"[b]drift[/b]    {len(m.drift)} feature(s), worst {Text(feature[:20]).markup} "
                         f"PSI {worst.psi:.3f} KS {worst.ks:.3f}{flag}")
        else:
            lines.append("[b]drift[/b]    -")
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
    """PSI and KS of each feature against its reference; shifted ones are flagged."""

    COLUMNS: ClassVar[tuple[str, ...]] = ("feature", "psi", "ks", "n", "status")
    COMPONENT_CLASSES: ClassVar[set[str]] = {"drift--shifted"}

    def show(self, m: DeploymentMetrics) -> None:
        shifted = self.get_component_rich_style("drift--shifted", partial=True)
        self.replace_rows(
            (
                name,
                (
                    Text(name),
                    f"{d.psi:.3f}",
                    f"{d.ks:.3f}",
                    f"{d.count:.0f}",
                    Text("shifted", style=shifted) if d.psi > PSI_SHIFTED else Text("ok"),
                ),
            )
            for name, d in sorted(m.drift.items())
        )
