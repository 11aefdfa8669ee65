"""Registry strings with control characters never reach the terminal raw: the diff, version, models and
deployment views are shown with answers whose strings carry ESC sequences (a screen clear, a window title,
a forged colour), and everything the screen renders is checked.

Pushing such strings is refused now (at the client and the daemon), but a registry written before that,
or another daemon, can still answer them: the answers are built here, as the App would receive them, and
handed to the real screens of the real App (whose daemon never answers: nothing else is shown).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from rich.text import Text
from textual.geometry import Region
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import DataTable, TabbedContent

from daemon.protocol import results
from modeltui.app import ModelTuiApp
from modeltui.client import DaemonClient
from modeltui.screens import DiffScreen, VersionScreen
from modeltui.widgets import LogView, ModelsTable

#: Each would act on a terminal that got it raw: clear the screen, retitle the window, colour what follows.
CLEAR, TITLE, RED = "\x1b[2J", "\x1b]0;PWNED\x07", "\x1b[31m"
NOW = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)


async def never_connects() -> DaemonClient:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def summary(number: int, *, message: str = "") -> results.VersionSummary:
    return results.VersionSummary(
        model="evil", number=number, digest="ab" * 32, parent=None, flavor="sklearn", message=message,
        tags={"team": f"ml{RED}"}, created_by="alice", created_at=NOW, size=10, file_count=1, aliases=[],
    )


def hostile_diff() -> results.VersionDiff:
    return results.VersionDiff(
        a=summary(1),
        b=summary(2),
        files=[results.FileChange(path=f"model{CLEAR}.skops", status="changed", size_a=1, size_b=2,
                                  sha256_a="a" * 64, sha256_b="b" * 64)],
        unchanged_files=0,
        params=[results.ValueChange(key=f"C{TITLE}", a="1.0", b=f"2.0{CLEAR}cleared")],
        metrics=[],
        signature=[results.ValueChange(key=f"inputs.x{RED}", a={"name": f"x{RED}bold"}, b=None)],
        requirements_added=[f"scikit-learn{RED}"],
        requirements_removed=[f"numpy{TITLE}"],
        flavor=None,
    )


def hostile_detail() -> results.VersionDetail:
    return results.VersionDetail(
        version=summary(2, message=f"retrained{CLEAR}"),
        description=f"nice{TITLE} model",
        model_file="model.skops",
        manifest=f'name = "evil"\n# {CLEAR}\n',
        params={f"C{TITLE}": f"2.0{CLEAR}"},
        metrics={"accuracy": 0.9},
        signature={"inputs": [{"name": f"x{RED}", "type": "double"}]},
        requirements=[f"scikit-learn{RED}"],
        source=results.SourceInfo(path=f"/src{CLEAR}"),
        files=[results.FileInfo(path=f"model{CLEAR}.skops", size=1, sha256="a" * 64)],
        children=[],
        lineage=[],
    )


def rendered(screen: Screen[Any]) -> str:
    """Every line every visible widget of the screen renders: the text the terminal would be sent."""
    lines: list[str] = []
    for widget in screen.query("*"):
        width, height = widget.size
        if widget.display and width and height:
            lines += [strip.text for strip in widget.render_lines(Region(0, 0, width, height))]
    return "\n".join(lines)


def cells(screen: Screen[Any]) -> list[object]:
    return [cell for table in screen.query(DataTable) for i in range(table.row_count) for cell in table.get_row_at(i)]


def assert_spelt_out(screen: Screen[Any]) -> None:
    text = rendered(screen)
    assert "\x1b" not in text, "an ESC reached the terminal"
    assert "\x07" not in text, "a BEL reached the terminal"
    for cell in cells(screen):
        assert isinstance(cell, Text), f"a str cell is parsed as markup: {cell!r}"
        assert "\x1b" not in cell.plain, f"raw ESC in a cell: {cell.plain!r}"


async def show_every_tab(pilot: Pilot[None], screen: Screen[Any], tabs: list[str]) -> None:
    for tab in tabs:
        screen.query_one(TabbedContent).active = tab
        await pilot.pause()
        assert_spelt_out(screen)


async def test_diff_escapes_params_signature_requirements_and_paths() -> None:
    app = ModelTuiApp(never_connects)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = DiffScreen("evil", 1, 2)
        await app.push_screen(screen)
        screen._show(hostile_diff())
        await pilot.pause()
        await show_every_tab(pilot, screen, ["files", "params", "signature", "requirements"])
        shown = "\n".join(str(cell) for cell in cells(screen))
        assert "\\x1b[2Jcleared" in shown, "the param value is shown, its ESC spelt out"
        assert "\\x1b]0;PWNED\\x07" in shown
        assert "scikit-learn\\x1b[31m" in shown


async def test_version_detail_escapes_params_requirements_and_manifest() -> None:
    app = ModelTuiApp(never_connects)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = VersionScreen("evil", 2)
        await app.push_screen(screen)
        screen._show(hostile_detail())
        await pilot.pause()
        await show_every_tab(pilot, screen, ["manifest", "files", "params", "lineage"])
        assert "2.0\\x1b[2J" in "\n".join(str(cell) for cell in cells(screen)), "the param value, ESC spelt out"


async def test_models_descriptions_log_lines_and_notifications_are_spelt_out() -> None:
    app = ModelTuiApp(never_connects)
    async with app.run_test(size=(120, 30)) as pilot:
        table = app.screen.query_one(ModelsTable)
        table.show([results.ModelSummary(
            name="evil", description=f"[b]nice[/b]{TITLE}", created_at=NOW, updated_at=NOW, versions=1, latest=1,
            aliases={},
        )])
        app.notify(f"alert{CLEAR}", title=f"t{TITLE}")
        await pilot.pause()
        assert_spelt_out(app.screen)
        assert "[b]nice[/b]\\x1b]0;PWNED\\x07" in str(table.get_row_at(0)[-1]), "shown literally, never as markup"
        log = LogView()
        await app.screen.mount(log)
        log.append([f"model output{CLEAR}", f"\tcolour{RED}"])
        await pilot.pause(0.2)
        assert_spelt_out(app.screen)
        assert "model output\\x1b[2J" in "\n".join(log.lines)
