"""The alias history table: every move of every alias of a model, newest first."""

from __future__ import annotations

from collections.abc import Sequence

from daemon.protocol.results import AliasEventInfo

from ..format import version_label, when
from .keyed_table import KeyedTable


class AliasHistoryTable(KeyedTable):
    """alias, from → to, by, at, reason."""

    COLUMNS = ("alias", "from → to", "by", "at", "reason")

    def show(self, events: Sequence[AliasEventInfo]) -> None:
        self.replace_rows(
            (
                str(i),
                (
                    e.alias,
                    f"{version_label(e.from_version)} → {version_label(e.to_version)}",
                    e.by,
                    when(e.at),
                    e.reason,
                ),
            )
            for i, e in enumerate(events)
        )
