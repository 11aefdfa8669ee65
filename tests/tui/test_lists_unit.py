"""Lists behave the same everywhere (issue 16, item 2), fast: the shared `/` filter, the sort order, the keys
that reach the first and last row, and the columns that stay whole at 80 columns — on the real widgets with
canned rows (the Pilot tests against a daemon are in test_lists.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.console import RenderableType
from rich.text import Text
from textual import events
from textual._compositor import CompositorUpdate
from textual.app import App, ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.screen import Screen

from daemon.protocol.deploy import DeploymentInfo
from modeltui.widgets import DeploymentsTable, KeyedTable, LogView
from modeltui.widgets.keyed_table import fit, natural_key
from modeltui.widgets.list_filter import FilterInput, compile_filter
from tests.helpers import canned
from tests.helpers.tui import SIZE, rows, until


def test_compile_filter_is_a_smart_case_regex_over_any_cell_and_bang_inverts() -> None:
    row = ["churn-production", "running", "http://127.0.0.1:8081"]
    assert compile_filter("")(row)
    assert compile_filter("RUN|stopped".lower())(row), "any cell, regex"
    assert compile_filter("8081$")(row)
    assert compile_filter("churn")(["CHURN"]), "all lower case: case-insensitive"
    assert not compile_filter("Churn")(["churn"]), "a capital letter: case-sensitive"
    assert not compile_filter("!running")(row)
    assert compile_filter("!crashloop")(row)
    with pytest.raises(ValueError, match=r"bad regex '\(fr': missing \)"):
        compile_filter("(fr")


def test_a_long_endpoint_loses_its_scheme_then_its_start_never_its_port() -> None:
    assert fit(Text("http://127.0.0.1:40123"), 16, keep_end=True).plain == "127.0.0.1:40123"
    assert fit(Text("http://scorer.models.example.com:8443"), 16, keep_end=True).plain == "…xample.com:8443"
    assert fit(Text("a message too long"), 9).plain == "a messag…"


def test_natural_sort_puts_v10_after_v9() -> None:
    assert sorted(["v10", "v9", "v1", "1.5 s", "12 s"], key=natural_key) == ["1.5 s", "12 s", "v1", "v9", "v10"]


class Things(KeyedTable):
    COLUMNS = ("name", "state", "n")


class Lists(App[None]):
    def compose(self) -> ComposeResult:
        with Vertical():
            yield Things(id="things")
            yield DeploymentsTable()
        yield LogView()


THINGS = [(f"t{i}", (f"t{i}", "crashloop" if i % 4 == 0 else "running", str(i))) for i in range(1, 41)]


async def test_filter_sort_and_jump_on_any_keyed_table() -> None:
    app = Lists()
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(Things)
        table.replace_rows(THINGS)
        table.focus()
        await pilot.press("G")
        assert table.current_key == "t40", "G reaches the last row"
        await pilot.press("g")
        assert table.current_key == "t1"
        await pilot.press("end")
        assert table.current_key == "t40", "End is the last row, not sideways"
        await pilot.press("home", "j", "j", "k")
        assert table.current_key == "t2"

        # `/` filters live over every column (state, not only the name); enter keeps it.
        await pilot.press("slash", *"crash")
        field = app.query_one(FilterInput)
        assert [r[0] for r in rows(table)] == ["t4", "t8", "t12", "t16", "t20", "t24", "t28", "t32", "t36", "t40"]
        assert field.border_title == "/ filter (10 of 40)"
        await pilot.press("enter")
        assert not app.query(FilterInput)
        assert app.focused is table
        assert table.border_title == "filter: /crash (10 of 40)"
        # The filter survives a refresh: new rows, still filtered.
        table.replace_rows([*THINGS, ("t41", ("t41", "crashloop", "41"))])
        assert rows(table)[-1][0] == "t41"
        assert table.row_count == 11
        assert table.border_title == "filter: /crash (11 of 41)"

        # `!` inverts; a bad regex keeps the last good filter and says why.
        await pilot.press("slash", "ctrl+u", *"!crash")
        assert table.row_count == 30
        assert "crashloop" not in {r[1] for r in rows(table)}
        await pilot.press("left_square_bracket")
        assert table.row_count == 30, "the last good filter stays"
        field = app.query_one(FilterInput)
        assert "bad regex" in str(field.border_title)
        assert field.has_class("-bad")
        # A regex with brackets is shown as typed (never read as markup).
        await pilot.press("ctrl+u", *"t[34]0$", "enter")
        assert [r[0] for r in rows(table)] == ["t30", "t40"]
        assert Content.from_markup(str(table.border_title)).plain == "filter: /t[34]0$ (2 of 41)"
        await pilot.press("slash", "escape")
        assert table.row_count == 41
        assert table.border_title is None
        assert app.focused is table

        # `>` sorts on the next column, `-` reverses; the header says which.
        await pilot.press("greater_than_sign")
        assert str(table.ordered_columns[0].label) == "name ▲"
        await pilot.press("greater_than_sign", "greater_than_sign")
        assert [r[2] for r in rows(table)][:3] == ["1", "2", "3"], "numbers by value"
        await pilot.press("minus")
        assert [r[2] for r in rows(table)][:3] == ["41", "40", "39"]
        assert str(table.ordered_columns[2].label) == "n ▼"
        table.replace_rows(THINGS[:5])
        assert [r[2] for r in rows(table)] == ["5", "4", "3", "2", "1"], "the sort survives a refresh"


def deployment(name: str, message: str) -> DeploymentInfo:
    d = canned.deployment(name, f"{name}@production", 12, 40123)
    return d.model_copy(update={"message": message, "restarts": 3})


async def test_deployments_at_80_columns_keep_the_columns_an_operator_needs() -> None:
    app = Lists()
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(DeploymentsTable)
        table.show([deployment("fraud-scorer", "restarted after an out-of-memory kill at 03:12"),
                    deployment("churn", "")])
        await pilot.pause()
        assert table.shown_columns == [
            "name", "version", "state", "health", "endpoint", "uptime", "restarts", "message"]
        assert [str(c.label) for c in table.ordered_columns][-2] == "rst", "a short header before a column hides"
        row = dict(zip(table.shown_columns, rows(table)[1], strict=True))
        assert (row["name"], row["state"], row["health"]) == ("fraud-scorer", "running", "healthy")
        assert row["endpoint"] == "127.0.0.1:40123", "shortened by its scheme: the host and port stay"
        assert (row["uptime"], row["restarts"]) == ("10d00h", "3")
        assert row["message"].startswith("restart")
        assert row["message"].endswith("…")
        widths = sum(c.get_render_width(table) for c in table.ordered_columns)
        assert widths <= 80, widths
        assert table.row_of("fraud-scorer")["ref"] == "fraud-scorer@production", "hidden, not lost"
        await pilot.resize_terminal(160, 24)
        await until(pilot, lambda: "backend" in table.shown_columns, "every column at 160")


async def test_slash_in_the_log_filters_lines() -> None:
    app = Lists()
    async with app.run_test(size=SIZE) as pilot:
        log = app.query_one(LogView)
        log.append(["GET /predict 200", "GET /health 200", "POST /predict 500"])
        await until(pilot, lambda: log.line_count == 3, "lines written")
        log.focus()
        await pilot.press("slash", *"predict", "enter")
        assert list(log.lines) == ["GET /predict 200", "POST /predict 500"]
        log.append(["GET /health 200", "POST /predict 200"])
        await until(pilot, lambda: log.line_count == 3, "a new matching line shows, the other not")
        assert log.lines[-1] == "POST /predict 200"
        await pilot.press("slash", "ctrl+u", *"!predict", "enter")
        assert list(log.lines) == ["GET /health 200", "GET /health 200"]
        await pilot.press("slash", "escape")
        assert log.line_count == 5


async def test_rows_drawn_before_a_wider_row_widened_their_column_are_drawn_again_whole() -> None:
    """Under load the table can paint between ``add_row`` and the idle pass that widens the columns, and
    again before the Resize that pass posts: the second paint must not reuse the first (the alerts snapshot
    kept "firin" for "firing" that way, for good)."""
    app = Lists()
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(Things)
        table.replace_rows([("a", ("a", "ok", "1"))])
        await pilot.pause()
        table.replace_rows([("a", ("a", "ok", "1")), ("b", ("b-a-much-longer-name", "crashlooping", "2"))])
        for y in range(3):  # a paint before the idle pass: the columns are still as wide as before
            table.render_line(y)
        await table._on_idle(events.Idle())  # the idle pass widens the columns and asks for a repaint
        shown = [table.render_line(y).text for y in range(3)]  # that repaint, before anything else runs
        assert shown[0].split() == ["name", "state", "n"], shown
        assert shown[2].split() == ["b-a-much-longer-name", "crashlooping", "2"], shown


async def test_an_uptime_tick_repaints_the_uptime_cells_only() -> None:
    """Over SSH an idle deployments view must stay within 2 KB a minute: the minute's uptime change sends
    its cells, not whole rows (what Textual would write is counted from the screen updates it makes)."""
    app = Lists()
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(DeploymentsTable)
        now = datetime.now(UTC)
        shown = [deployment(f"scorer-{i}", "restarted after an out-of-memory kill at 03:12").model_copy(
            update={"started_at": now - timedelta(minutes=5 + i)}) for i in range(8)]
        written: list[int] = []
        display = app._display

        def counting(screen: Screen[Any], renderable: RenderableType | None) -> None:
            if isinstance(renderable, CompositorUpdate):
                written.append(len(renderable.render_segments(app.console).encode()))
            display(screen, renderable)

        app._display = counting  # type: ignore[method-assign]
        table.show(shown, now)
        await until(pilot, lambda: written, "the first paint")
        table.tick(now + timedelta(minutes=1))  # a first minute: what the first paint left pending goes out
        await until(pilot, lambda: len(written) > 1, "the first minute painted")
        await pilot.pause()
        written.clear()
        table.tick(now + timedelta(minutes=2))
        await until(pilot, lambda: written, "the second minute painted")
        await pilot.pause()
        assert rows(table)[0][table.shown_columns.index("uptime")] == "7m"
        assert 0 < sum(written) <= 8 * 40, f"{written} bytes for 8 cells of 8 characters (a row costs 180)"
