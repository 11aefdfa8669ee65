"""Tables of the Diff screen. Metric deltas are coloured through component classes (styled in app.tcss)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text

from daemon.protocol.results import FileChange, MetricChange, ValueChange

from ..format import digest, size, value
from .keyed_table import KeyedTable


class FileChangesTable(KeyedTable):
    """Files added, removed or changed between two versions."""

    COLUMNS = ("status", "path", "size a", "size b", "sha256 a", "sha256 b")

    def show(self, changes: Sequence[FileChange]) -> None:
        self.replace_rows(
            (
                c.path,
                (c.status, c.path, size(c.size_a), size(c.size_b),
                 digest(c.sha256_a), digest(c.sha256_b)),
            )
            for c in changes
        )


class ValueChangesTable(KeyedTable):
    """Keys whose value differs between two versions (params, signature)."""

    COLUMNS = ("key", "a", "b")

    def show(self, changes: Sequence[ValueChange]) -> None:
        self.replace_rows((c.key, (c.key, value(c.a), value(c.b))) for c in changes)


class MetricChangesTable(KeyedTable):
    """Metrics of both versions and the delta b - a, green when it went up, red when it went down."""

    COLUMNS = ("metric", "a", "b", "delta")
    COMPONENT_CLASSES: ClassVar[set[str]] = {"metric-changes--up", "metric-changes--down"}

    def show(self, changes: Sequence[MetricChange]) -> None:
        up = self.get_component_rich_style("metric-changes--up", partial=True)
        down = self.get_component_rich_style("metric-changes--down", partial=True)

        def num(x: float | None) -> str:
            return "-" if x is None else f"{x:.6g}"

        def delta(d: float | None) -> Text:
            if d is None or d == 0:
                return Text("-" if d is None else "0")
            return Text(f"{d:+.6g}", style=up if d > 0 else down)

        self.replace_rows((c.key, (c.key, num(c.a), num(c.b), delta(c.delta))) for c in changes)


class RequirementsTable(KeyedTable):
    """Requirements added (+) or removed (-)."""

    COLUMNS = ("change", "requirement")

    def show(self, added: Sequence[str], removed: Sequence[str]) -> None:
        rows = [(f"+{r}", ("+ added", r)) for r in added] + [(f"-{r}", ("- removed", r)) for r in removed]
        self.replace_rows(rows)
