"""The table of models on the Models screen."""

from __future__ import annotations

from collections.abc import Sequence

from textual.message import Message
from textual.widgets import DataTable

from daemon.protocol.results import ModelSummary

from ..format import aliases_of, short, version_label, when
from .keyed_table import KeyedTable


class ModelsTable(KeyedTable):
    """One row per model: name, versions, latest, aliases, updated, description."""

    COLUMNS = ("name", "versions", "latest", "aliases", "updated", "description")

    class ModelChosen(Message):
        """The user pressed enter on a model."""

        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

    def show(self, models: Sequence[ModelSummary]) -> None:
        """Replace the rows, keeping the cursor on the same model."""
        self.replace_rows(
            (
                m.name,
                (
                    m.name,
                    str(m.versions),
                    version_label(m.latest),
                    aliases_of(m.aliases),
                    when(m.updated_at),
                    short(m.description, 50),
                ),
            )
            for m in models
        )

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.ModelChosen(event.row_key.value))
