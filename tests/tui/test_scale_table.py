"""The virtual models table on its own (no daemon): as tall as its source, rows not fetched drawn as ``…``,
the rows on screen told to its screen, the keys reaching the real ends."""

from __future__ import annotations

from datetime import UTC, datetime

from textual.app import App, ComposeResult

from daemon.protocol.results import ModelSummary
from modeltui.widgets import ModelsTable
from modeltui.widgets.virtual_table import VirtualTable
from tests.helpers.snapshots import screen_text
from tests.helpers.tui import SIZE

NOW = datetime(2026, 12, 1, tzinfo=UTC)


class Holes:
    """10,000 rows of which only the first 30 and the last 30 are known."""

    count = 10_000

    def item(self, index: int) -> ModelSummary | None:
        if 30 <= index < self.count - 30:
            return None
        return ModelSummary(name=f"m{index:05d}", description="", created_at=NOW, updated_at=NOW, versions=1,
                            latest=1, aliases={})


class TableApp(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.wanted: list[tuple[int, int]] = []
        self.sorted: list[tuple[str, bool]] = []

    def compose(self) -> ComposeResult:
        yield ModelsTable()

    def on_virtual_table_wanted(self, event: VirtualTable.Wanted) -> None:
        self.wanted.append((event.first, event.last))

    def on_virtual_table_sorted(self, event: VirtualTable.Sorted) -> None:
        self.sorted.append((event.column, event.descending))


async def test_keys_reach_the_ends_and_unknown_rows_show_as_placeholders() -> None:
    app = TableApp()
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(ModelsTable)
        table.set_source(Holes())
        table.focus()
        await pilot.pause()
        assert table.virtual_size.height == 10_001  # every row, and the header
        assert app.wanted[-1] == (0, 22)  # 24 lines, the header takes one

        await pilot.press("end")
        assert table.cursor == 9_999
        assert "m09999" in screen_text(app)
        assert app.wanted[-1] == (9_977, 9_999)

        await pilot.press("pageup", "pageup")
        assert table.cursor == 9_999 - 2 * 23
        assert "…" in screen_text(app)  # rows 9,930-9,969 are not known

        await pilot.press("g")
        assert table.cursor == 0
        assert screen_text(app).splitlines()[1].startswith("m00000")

        await pilot.press("greater_than_sign", "minus")
        assert app.sorted == [("versions", False), ("versions", True)]
        assert "versions ▼" in screen_text(app)
