"""Tables of the alerts view: the alerts that hold now (pending or firing) and the transitions before.

Severity and state are coloured in the palette of :mod:`modeltui.format`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import ClassVar

from rich.text import Text

from daemon.protocol.results import AlertStateInfo, AlertTransitionInfo

from ..format import ALERT_TONE, short, uptime, when_short
from .keyed_table import KeyedTable


def value_text(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


class _AlertTable(KeyedTable):
    def toned_alert(self, word: str) -> Text:
        """An alert state or severity in its colour."""
        return self.toned(word, ALERT_TONE)


class AlertsTable(_AlertTable):
    """One row per alert that holds now: firing first, then by severity."""

    COLUMNS: ClassVar[tuple[str, ...]] = ("state", "severity", "deployment", "rule", "value", "for", "expr")
    COLUMN_PRIORITY: ClassVar[Mapping[str, int]] = {"for": 1, "value": 2, "expr": 3}
    FLEX_COLUMN = "expr"
    ORDER: ClassVar[dict[str, int]] = {"critical": 0, "warning": 1, "info": 2}

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.items: dict[str, AlertStateInfo] = {}
        """The alerts shown, by ``deployment/rule``."""

    def show(self, alerts: Sequence[AlertStateInfo], now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        self.items = {f"{a.deployment}/{a.rule}": a for a in alerts}
        ordered = sorted(alerts, key=lambda a: (a.state != "firing", self.ORDER.get(a.severity, 3),
                                                a.deployment, a.rule))
        self.replace_rows(
            (
                f"{a.deployment}/{a.rule}",
                (self.toned_alert(a.state), self.toned_alert(a.severity), Text(a.deployment), Text(a.rule),
                 value_text(a.value), uptime(a.since, now), Text(short(a.expr, 80))),
            )
            for a in ordered
        )


class AlertHistoryTable(_AlertTable):
    """Transitions of alerts, newest first, as the daemon returns them."""

    COLUMNS: ClassVar[tuple[str, ...]] = ("at", "state", "severity", "deployment", "rule", "value", "message")
    COLUMN_PRIORITY: ClassVar[Mapping[str, int]] = {"message": 1, "value": 2, "severity": 3}
    FLEX_COLUMN = "message"

    def show(self, transitions: Sequence[AlertTransitionInfo]) -> None:
        self.replace_rows(
            (
                str(i),
                (when_short(t.at), self.toned_alert(t.state), self.toned_alert(t.severity),
                 Text(t.deployment), Text(t.rule), value_text(t.value), Text(short(t.message, 120))),
            )
            for i, t in enumerate(transitions)
        )
