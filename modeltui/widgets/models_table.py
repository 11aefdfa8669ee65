"""The table of models on the Models screen: a virtual table over the whole list (the daemon filters and
sorts it; the screen's cache holds the rows fetched)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual.message import Message

from daemon.protocol.results import ModelSummary

from ..format import aliases_of, short, version_label, when
from .virtual_table import FixedRows, VirtualTable


class ModelsTable(VirtualTable[ModelSummary]):
    """One row per model: name, versions, latest, aliases, updated, description."""

    COLUMNS: ClassVar[Sequence[str]] = ("name", "versions", "latest", "aliases", "updated", "description")
    #: The daemon's sort key of each column (the same names).
    SORT_KEYS: ClassVar[Sequence[str]] = COLUMNS
    COLUMN_PRIORITY: ClassVar[dict[str, int]] = {"description": 2, "updated": 1}
    COLUMN_MIN: ClassVar[dict[str, int]] = {"name": 16, "aliases": 12}
    COLUMN_MAX: ClassVar[dict[str, int]] = {"name": 64, "aliases": 48}
    #: When room is short: then the columns that never hide take at most 76 cells, whole at 80 columns.
    COLUMN_CUT: ClassVar[dict[str, int]] = {"name": 32, "aliases": 24}
    FLEX_COLUMN: ClassVar[str | None] = "description"

    class ModelChosen(Message):
        """The user pressed enter on a model."""

        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

    def cells(self, item: ModelSummary) -> tuple[str, ...]:
        return (
            item.name,
            str(item.versions),
            version_label(item.latest),
            aliases_of(item.aliases),
            when(item.updated_at),
            short(item.description, 50),
        )

    def key_of(self, item: ModelSummary) -> str:
        return item.name

    def show(self, models: Sequence[ModelSummary]) -> None:
        """Show exactly these models (a list not backed by the daemon's cache)."""
        self.set_source(FixedRows(models))

    def on_virtual_table_chosen(self, event: VirtualTable.Chosen) -> None:
        event.stop()
        self.post_message(self.ModelChosen(event.key))
