"""The App's shell against a real daemon: views switched (not stacked), esc one level back, the breadcrumb and
the state in every screen's header, the footer's ``? help`` and three keys at 80x24, contexts' production cue
and read-only, and the reconnection by itself after the daemon was stopped and started again."""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from textual.app import App
from textual.color import Color
from textual.pilot import Pilot
from textual.widgets._footer import FooterKey

from modeltui.app import ModelTuiApp
from modeltui.client import DaemonClient, DaemonUnavailable, connect
from modeltui.contexts import Context
from modeltui.screens import DeploymentsScreen, FleetScreen, ModelScreen, ModelsScreen, VersionScreen
from modeltui.widgets import ModelsTable, ShellFooter, StatusHeader, VersionsTable
from tests.helpers.daemon import DaemonProcess
from tests.helpers.models import make_model_dir
from tests.helpers.tui import SIZE, make_app, push, rows, until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def shell_daemon(module_daemon: DaemonProcess, tmp_path_factory: pytest.TempPathFactory) -> DaemonProcess:
    """The shared daemon with ``shell-demo`` v1 and v2."""
    base = tmp_path_factory.mktemp("shell")
    push(module_daemon, make_model_dir(base / "v1", "shell-demo"), "-m", "first")
    push(module_daemon, make_model_dir(base / "v2", "shell-demo", weights=b"w2"), "-m", "second")
    return module_daemon


def names(table: Any) -> list[str]:
    """The first column of a list as the user sees it (the models list is a virtual table)."""
    return [row[0] for row in rows(table)]


def header(app: App[Any]) -> str:
    """The header line of the screen shown, as the user reads it at 80 columns."""
    return app.screen.query_one(StatusHeader).text(SIZE[0])


def shown(app: App[Any], start: str) -> bool:
    """The header starts with ``start``."""
    return header(app).startswith(start)


def footer_keys(app: App[Any]) -> list[str]:
    """The footer's keys, in order, as ``key description``."""
    return [f"{k.key_display} {k.description}" for k in app.screen.query_one(ShellFooter).query(FooterKey)]


async def footer_fits(pilot: Pilot[None]) -> list[str]:
    """The footer's keys once drawn: ``? Help`` first, three more at most, none past the 80th column."""
    app = pilot.app
    await until(pilot, lambda: footer_keys(app), "the footer's keys")
    await pilot.pause()
    keys = footer_keys(app)
    assert keys[0] == "? Help", keys
    assert len(keys) <= 4, keys
    for widget in app.screen.query_one(ShellFooter).query(FooterKey):
        assert widget.region.right <= SIZE[0], (widget.key_display, widget.region)
    return keys


async def test_views_switch_esc_goes_back_one_level_and_the_breadcrumb_follows(shell_daemon: DaemonProcess) -> None:
    app = make_app(shell_daemon)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(ModelsTable)
        await until(pilot, lambda: "shell-demo" in names(table), "the model row")
        assert header(app).startswith(" local › models")
        assert "connected" in header(app)
        assert await footer_fits(pilot)

        # M F M F M F: six views shown, one esc back on the models (they were switched, not stacked).
        for key in "MFMFMF":
            await pilot.press(key)
        await until(pilot, lambda: isinstance(app.screen, FleetScreen), "the fleet view")
        assert [type(s) for s in app.screen_stack[1:]] == [ModelsScreen, FleetScreen]
        assert header(app).startswith(" local › fleet")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ModelsScreen), "back on the models")

        # Every top-level view: its crumb, `? Help` first in the footer, and esc goes to the models.
        for view, crumb in [("deployments", "deployments"), ("alerts", "alerts"), ("maint", "maintenance"),
                            ("fleet", "fleet"), ("home", "home"), ("hosts", "hosts")]:
            app.show_view(view)
            await until(pilot, partial(shown, app, f" local › {crumb}"), f"the {view} view")
            assert len(app.screen_stack) == 3
            await footer_fits(pilot)
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, ModelsScreen), f"esc from {view}")

        # Drill-downs stack: models › shell-demo › v2, and esc goes back one level at a time.
        table.move_cursor(row=table.get_row_index("shell-demo"))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ModelScreen), "the model")
        versions = app.screen.query_one(VersionsTable)
        await until(pilot, lambda: versions.row_count == 2, "its versions")
        assert header(app).startswith(" local › models › shell-demo")
        await footer_fits(pilot)
        versions.move_cursor(row=versions.get_row_index("2"))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, VersionScreen), "the version")
        await until(pilot, lambda: header(app).startswith(" local › models › shell-demo › v2"), "v2 crumb")
        # A view switched to from a drill-down replaces the whole stack above the models.
        app.show_view("deployments")
        await until(pilot, lambda: isinstance(app.screen, DeploymentsScreen), "deployments")
        assert [type(s) for s in app.screen_stack[1:]] == [ModelsScreen, DeploymentsScreen]
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ModelsScreen), "models again")


async def test_a_production_context_is_red_labelled_and_read_only(shell_daemon: DaemonProcess) -> None:
    """Two contexts on the one daemon: ``local``, and ``prod-eu`` (read-only in the client config, red by
    its name). Switching shows the cue and hides every action that changes the registry."""
    contexts = [Context(name="local", socket=shell_daemon.socket),
                Context(name="prod-eu", socket=shell_daemon.socket, readonly=True)]

    async def open_context(ctx: Context) -> DaemonClient:
        assert ctx.socket is not None
        return await connect(ctx.socket)

    app = ModelTuiApp(lambda: open_context(contexts[0]), contexts=contexts, connect_context=open_context)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected", "connected")
        bar = app.screen.query_one(StatusHeader)
        assert "PROD" not in header(app)
        assert "READ-ONLY" not in header(app)
        table = app.screen.query_one(ModelsTable)
        await until(pilot, lambda: "shell-demo" in names(table), "the model row")
        table.move_cursor(row=table.get_row_index("shell-demo"))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ModelScreen), "the model")
        assert "set_alias" in {b.binding.action for b in app.screen.active_bindings.values()}

        app.switch_context("prod-eu")
        await until(pilot, lambda: isinstance(app.screen, ModelsScreen), "the drill-down closed")
        await until(pilot, lambda: app.connection == "connected", "connected to prod-eu")
        bar = app.screen.query_one(StatusHeader)
        text = header(app)
        assert text.startswith(" PROD  prod-eu › models"), text
        assert "READ-ONLY" in text
        assert bar.styles.background == Color.parse("red")
        assert app.client is not None
        assert app.client.readonly
        await until(pilot, lambda: "shell-demo" in names(table), "prod-eu's models")
        table.move_cursor(row=table.get_row_index("shell-demo"))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ModelScreen), "the model on prod-eu")
        shown = {b.binding.action for b in app.screen.active_bindings.values()}
        assert "diff" in shown
        assert not shown & {"set_alias", "rollback"}
        assert not any(k.endswith(("Alias", "Rollback")) for k in footer_keys(app))
        await pilot.press("a")  # blocked as well as hidden
        await pilot.pause(0.2)
        assert isinstance(app.screen, ModelScreen)


async def test_the_tui_reconnects_by_itself_and_shows_fresh_data(daemon: DaemonProcess, tmp_path: Path) -> None:
    """The real daemon is stopped (SIGTERM) while the deployments view is up: its header says so, and keys
    still work (esc goes back to the models, whose header says so too). A model is pushed while the TUI
    cannot connect; once it can, it reconnects without a key press, re-subscribes and re-reads the view."""
    reachable = asyncio.Event()
    reachable.set()

    async def factory() -> DaemonClient:
        if not reachable.is_set():
            raise DaemonUnavailable("cannot reach the daemon (test)")
        return await connect(daemon.socket)

    push(daemon, make_model_dir(tmp_path / "early", "early-model"))
    app = ModelTuiApp(factory)
    async with app.run_test(size=SIZE) as pilot:
        models = app.screen.query_one(ModelsTable)
        await until(pilot, lambda: names(models) == ["early-model"], "connected, the first model")
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, DeploymentsScreen), "the deployments view")

        await asyncio.to_thread(daemon.stop)
        await until(pilot, lambda: "DISCONNECTED" in header(app), "the header says disconnected", timeout=15)
        assert "retry in" in header(app) or "reconnecting" in header(app)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ModelsScreen), "back on the models while disconnected")
        await until(pilot, lambda: "DISCONNECTED" in header(app), "the models' header says so too")
        reachable.clear()
        await asyncio.to_thread(daemon.start)
        await asyncio.to_thread(push, daemon, make_model_dir(tmp_path / "late", "late-model"))
        assert "late-model" not in names(models)
        reachable.set()

        await until(pilot, lambda: app.connection == "connected", "reconnected by itself", timeout=30)
        await until(pilot, lambda: "late-model" in names(models), "fresh data", timeout=15)
        assert "connected" in header(app)
        assert "DISCONNECTED" not in header(app)
