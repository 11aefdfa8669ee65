"""The TUI driven with Textual's Pilot against a REAL modeltuid, with the real CLI making changes beside it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Footer, Input, Label, TabbedContent, TextArea

from modeltui.app import ModelTuiApp
from modeltui.client import DaemonClient, connect
from modeltui.screens import (
    AliasDialog,
    ConfirmDialog,
    DiffScreen,
    HelpScreen,
    HistoryScreen,
    ModelScreen,
    ModelsScreen,
    RollbackDialog,
    VersionScreen,
)
from modeltui.widgets import (
    PUSH_EXAMPLE,
    AliasHistoryTable,
    EmptyRegistry,
    FileChangesTable,
    FilesTable,
    LineageTable,
    MetricChangesTable,
    ModelsTable,
    ParamsTable,
    RequirementsTable,
    ValueChangesTable,
    VersionsTable,
)
from tests.helpers.daemon import DaemonProcess
from tests.helpers.models import make_model_dir
from tests.helpers.tui import SIZE, make_app, push, rows, show_json, until

pytestmark = pytest.mark.integration

def push_two_versions(daemon: DaemonProcess, tmp_path: Path) -> DaemonProcess:
    """demo:1 (production, accuracy 0.9, C 1.0) and demo:2 (accuracy 0.95, C 2.0, one more file)."""
    push(daemon, make_model_dir(tmp_path / "v1", "demo"), "--alias", "production", "-m", "first")
    v2 = make_model_dir(tmp_path / "v2", "demo", weights=b"w2-bigger", params="C = 2.0",
                        metrics="accuracy = 0.95", extra={"notes.txt": b"hello"})
    push(daemon, v2, "-m", "second", "--tag", "team=ml")
    return daemon


@pytest.fixture(scope="module")
def two_versions(module_daemon: DaemonProcess, tmp_path_factory: pytest.TempPathFactory) -> DaemonProcess:
    """The two versions in one daemon shared by the tests that only look (or cancel before any change)."""
    return push_two_versions(module_daemon, tmp_path_factory.mktemp("two-versions"))


@pytest.fixture
def own_two_versions(daemon: DaemonProcess, tmp_path: Path) -> DaemonProcess:
    """The two versions in a daemon of the test's own, for the tests that push or move aliases."""
    return push_two_versions(daemon, tmp_path)


async def open_model(pilot: Pilot[None], name: str = "demo") -> ModelScreen:
    app = pilot.app
    await until(pilot, lambda: name in [r[0] for r in rows(app.screen.query_one(ModelsTable))], "model row")
    table = app.screen.query_one(ModelsTable)
    table.move_cursor(row=table.get_row_index(name))
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, ModelScreen), "model screen")
    screen = app.screen
    assert isinstance(screen, ModelScreen)
    await until(pilot, lambda: screen.query_one(VersionsTable).row_count > 0, "versions")
    return screen


async def test_empty_registry_says_how_to_push_the_example(daemon: DaemonProcess) -> None:
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.screen.has_class("-empty"), "empty state")
        hint = app.screen.query_one(EmptyRegistry)
        await until(pilot, lambda: hint.region.width > 0 and hint.region.height > 0, "hint laid out")
        assert hint.region.right <= 80
        assert hint.region.bottom <= 24
        assert PUSH_EXAMPLE in str(hint.render())
        assert not app.screen.query_one(ModelsTable).display


async def test_models_table_and_live_update_from_cli_push(own_two_versions: DaemonProcess, tmp_path: Path) -> None:
    daemon = own_two_versions
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(ModelsTable)
        await until(pilot, lambda: table.row_count == 1, "one model")
        assert rows(table)[0][:4] == ["demo", "2", "v2", "production→1"]
        assert "models 1-1 of 1" in str(app.screen.query_one("#page-status").render())

        # Another process pushes: the row shows up with no key pressed.
        other = make_model_dir(tmp_path / "other", "other")
        await asyncio.to_thread(push, daemon, other, "--alias", "staging")
        await until(pilot, lambda: "other" in [r[0] for r in rows(table)], "live update of a CLI push")
        assert {r[0]: r[3] for r in rows(table)}["other"] == "staging→1"
        assert not app.screen.has_class("-empty")


async def test_filter_asks_the_daemon(own_two_versions: DaemonProcess, tmp_path: Path) -> None:
    push(own_two_versions, make_model_dir(tmp_path / "other", "other"))
    app = make_app(own_two_versions)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(ModelsTable)
        await until(pilot, lambda: table.row_count == 2, "two models")
        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        footer = app.screen.query_one(Footer)
        # The filter line takes every letter, `?` too; the footer still says where help is.
        await until(pilot, lambda: "Filter" in " ".join(str(w.render()) for w in footer.query("FooterKey")), "keys")
        assert "? Help" in " ".join(str(w.render()) for w in footer.query("FooterKey"))
        await pilot.press(*"oth")
        await until(pilot, lambda: [r[0] for r in rows(table)] == ["other"], "filtered list")
        await pilot.press("enter", "escape")
        await until(pilot, lambda: table.row_count == 2, "filter cleared")


async def test_model_screen_lists_versions_and_aliases(two_versions: DaemonProcess) -> None:
    app = make_app(two_versions)
    digest1 = show_json(two_versions, "demo:1")["version"]["digest"]
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_model(pilot)
        seen = rows(screen.query_one(VersionsTable))
        assert [r[1] for r in seen] == ["v2", "v1"]  # newest first
        assert seen[1][2] == "production"
        assert seen[1][3] == digest1[:12]
        assert seen[1][4] == "first"
        assert seen[0][4] == "second"
        assert seen[0][5] == "team=ml"
        assert "production→1" in str(screen.query_one("#model-title").render())
        assert screen.aliases == {"production": 1}
        await pilot.press("escape")
        assert isinstance(app.screen, ModelsScreen)


async def test_version_detail_tabs(two_versions: DaemonProcess) -> None:
    app = make_app(two_versions)
    detail = show_json(two_versions, "demo:2")
    async with app.run_test(size=SIZE) as pilot:
        await open_model(pilot)
        await pilot.press("enter")  # cursor is on the newest version
        await until(pilot, lambda: isinstance(app.screen, VersionScreen), "version screen")
        screen = app.screen
        await until(pilot, lambda: 'name = "demo"' in screen.query_one(TextArea).text, "manifest")
        assert "accuracy = 0.95" in screen.query_one(TextArea).text

        await pilot.press("f")
        assert screen.query_one(TabbedContent).active == "files"
        files = {r[0]: r for r in rows(screen.query_one(FilesTable))}
        assert set(files) == {"modeltui.toml", "model.skops", "notes.txt"}
        expected = {f["path"]: f["sha256"] for f in detail["files"]}
        assert all(files[p][2] == sha for p, sha in expected.items())

        await pilot.press("p")
        params = {(r[0], r[1]): r[2] for r in rows(screen.query_one(ParamsTable))}
        assert params[("param", "C")] == "2.0"
        assert params[("metric", "accuracy")] == "0.95"

        await pilot.press("l")
        lineage = {r[0]: r[1] for r in rows(screen.query_one(LineageTable))}
        assert lineage["parent"] == "v1"
        assert lineage["ancestors"] == "v1"
        await pilot.press("escape")
        assert isinstance(app.screen, ModelScreen)


async def test_mark_two_versions_and_diff(two_versions: DaemonProcess) -> None:
    app = make_app(two_versions)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_model(pilot)
        await pilot.press("d")  # nothing marked: a warning, no diff
        assert app.screen is screen
        await pilot.press("space", "down", "space")
        assert sorted(screen.query_one(VersionsTable).marked) == [1, 2]
        assert [r[0] for r in rows(screen.query_one(VersionsTable))] == ["●", "●"]
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, DiffScreen), "diff screen")
        diff = app.screen
        await until(pilot, lambda: diff.query_one(FileChangesTable).row_count > 0, "diff loaded")
        files = {r[1]: r for r in rows(diff.query_one(FileChangesTable))}
        assert files["notes.txt"][0] == "added"
        assert files["notes.txt"][2] == "-"
        assert files["model.skops"][0] == "changed"
        assert files["model.skops"][2:4] == ["2 B", "9 B"]
        assert files["model.skops"][4] != files["model.skops"][5]
        assert "v1" in str(diff.query_one("#diff-title").render())

        await pilot.press("m")
        metrics = rows(diff.query_one(MetricChangesTable))
        assert metrics == [["accuracy", "0.9", "0.95", "+0.05"]]
        delta = diff.query_one(MetricChangesTable).get_row_at(0)[3]
        assert delta.style, "a positive delta is coloured"  # type: ignore[union-attr]
        params = rows(diff.query_one("#diff-params", ValueChangesTable))
        assert params == [["C", "1.0", "2.0"]]
        assert diff.query_one(RequirementsTable).row_count == 0


async def test_alias_move_through_the_modal(own_two_versions: DaemonProcess) -> None:
    app = make_app(own_two_versions)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_model(pilot)
        assert screen.query_one(VersionsTable).current_version == 2
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, AliasDialog), "alias dialog")
        dialog = app.screen
        alias_box = dialog.query_one("#alias", Input)
        assert alias_box.value == "production"

        # An invalid alias is refused with the protocol's own message; the dialog stays.
        alias_box.value = "Bad Alias"
        await pilot.press("enter")  # to the reason box
        await pilot.press("enter")  # submit
        assert app.screen is dialog
        assert "invalid alias" in str(dialog.query_one("#error", Label).render())

        alias_box.value = ""
        alias_box.focus()
        await pilot.press(*"production")
        await pilot.press("enter", *"better", "space", *"f1", "enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "confirmation")
        await pilot.press("y")
        await until(pilot, lambda: show_json(own_two_versions, "demo@production")["version"]["number"] == 2,
                    "production moved to 2")
        await until(pilot, lambda: screen.aliases == {"production": 2}, "screen shows the move")
        seen = rows(screen.query_one(VersionsTable))
        assert seen[0][2] == "production"
        assert seen[1][2] == ""

        # History shows the move with its reason.
        await pilot.press("h")
        await until(pilot, lambda: isinstance(app.screen, HistoryScreen), "history screen")
        history = app.screen.query_one(AliasHistoryTable)
        await until(pilot, lambda: history.row_count >= 2, "two alias events")
        moves = {(r[0], r[1], r[4]) for r in rows(history)}
        assert ("production", "v1 → v2", "better f1") in moves
        assert ("production", "- → v1", "") in {(r[0], r[1], r[4]) for r in rows(history)} or any(
            r[1].endswith("→ v1") for r in rows(history)
        )


async def test_cancelled_alias_move_changes_nothing(two_versions: DaemonProcess) -> None:
    app = make_app(two_versions)
    async with app.run_test(size=SIZE) as pilot:
        await open_model(pilot)
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, AliasDialog), "alias dialog")
        await pilot.press("enter", "enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "confirmation")
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, ModelScreen), "back on the model")
        await pilot.pause(0.3)
    assert show_json(two_versions, "demo@production")["version"]["number"] == 1


async def test_rollback_with_reason_and_confirmation(own_two_versions: DaemonProcess) -> None:
    moved = own_two_versions.cli("alias", "set", "demo", "production", "2", "--reason", "promote")
    assert moved.returncode == 0, moved.stderr
    app = make_app(own_two_versions)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_model(pilot)
        await until(pilot, lambda: screen.aliases == {"production": 2}, "aliases loaded")
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, RollbackDialog), "rollback dialog")
        await pilot.press(*"broken", "enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "confirmation")
        await pilot.press("y")
        await until(pilot, lambda: screen.aliases == {"production": 1}, "rolled back on screen")
    assert show_json(own_two_versions, "demo@production")["version"]["number"] == 1


async def test_live_update_on_the_model_screen(own_two_versions: DaemonProcess, tmp_path: Path) -> None:
    app = make_app(own_two_versions)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_model(pilot)
        v3 = make_model_dir(tmp_path / "v3", "demo", weights=b"w3")
        await asyncio.to_thread(push, own_two_versions, v3, "-m", "third")
        table = screen.query_one(VersionsTable)
        await until(pilot, lambda: rows(table)[0][1] == "v3", "v3 appears without a key press")
        await asyncio.to_thread(own_two_versions.cli, "alias", "set", "demo", "production", "3", "--reason", "x")
        await until(pilot, lambda: screen.aliases == {"production": 3}, "alias move appears")


async def test_readonly_hides_alias_actions(two_versions: DaemonProcess) -> None:
    app = make_app(two_versions, readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_model(pilot)
        shown = {b.binding.action for b in screen.active_bindings.values()}
        assert "diff" in shown
        assert "set_alias" not in shown
        assert "rollback" not in shown
        await pilot.press("a")
        await pilot.pause(0.2)
        assert app.screen is screen
        await pilot.press("r")
        await pilot.pause(0.2)
        assert app.screen is screen
        assert "read-only" in app.sub_title


async def test_a_viewer_gets_the_read_only_tui(two_versions: DaemonProcess) -> None:
    """The daemon says the connection has the viewer role (another uid, as docs/operations.md sets up;
    the role comes from the real welcome, changed here because the test runs as the daemon's owner): the
    TUI offers no change, as with --readonly, and says why."""

    async def as_viewer() -> DaemonClient:
        client = await connect(two_versions.socket)
        client.welcome = client.welcome.model_copy(update={"role": "viewer"})
        return client

    app = ModelTuiApp(as_viewer)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_model(pilot)
        assert app.readonly
        assert "read-only" in app.sub_title
        assert "set_alias" not in {b.binding.action for b in screen.active_bindings.values()}
        assert app.client is not None
        assert app.client.readonly  # and its client refuses to send one


async def test_help_screen_and_quit(two_versions: DaemonProcess) -> None:
    app = make_app(two_versions)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = " ".join(str(s.render()) for s in app.screen.query("Static"))
        assert "Diff" in text
        assert "Rollback" in text
        assert "Filter" in text
        await pilot.press("escape")
        assert isinstance(app.screen, ModelsScreen)
        await pilot.press("q")
        await pilot.pause(0.1)
    assert app.return_code == 0


async def test_usable_at_80x24(two_versions: DaemonProcess) -> None:
    app = make_app(two_versions)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_model(pilot)
        table = screen.query_one(VersionsTable)
        footer = screen.query_one(Footer)
        assert table.region.height >= 5
        assert table.region.right <= 80
        assert footer.region.y == 23
        assert footer.region.width == 80
        # ? help, then the model screen's three most useful keys (Rollback and History: in ? help).
        footer_text = " ".join(str(w.render()) for w in footer.query("FooterKey"))
        for key in ("? Help", "Mark", "Diff", "Alias"):
            assert key in footer_text, key
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, AliasDialog), "alias dialog")
        dialog = app.screen.query_one(".dialog")
        assert dialog.region.bottom <= 24
        assert dialog.region.right <= 80
        assert app.screen.query_one("#ok").region.bottom <= 24


async def test_lost_daemon_shows_a_clear_state(daemon: DaemonProcess) -> None:
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected", "connected")
        await asyncio.to_thread(daemon.stop)
        await until(pilot, lambda: app.connection == "disconnected", "disconnected state")
        assert "DISCONNECTED" in app.sub_title
        assert app.has_class("-disconnected")
        assert any(b.binding.action == "reconnect" for b in app.screen.active_bindings.values())
