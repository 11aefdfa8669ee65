"""The App's shell against a real daemon: views switched (not stacked), esc one level back, the breadcrumb and
the state in every screen's header, the footer's ``? help`` and three keys at 80x24, contexts' production cue
and read-only, and the reconnection by itself after the daemon was stopped and started again."""

from __future__ import annotations

import asyncio
import json
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from textual.app import App
from textual.color import Color
from textual.pilot import Pilot
from textual.widgets._footer import FooterKey

from daemon.protocol import requests
from modeltui.app import ModelTuiApp
from modeltui.client import DaemonClient, DaemonUnavailable, connect
from modeltui.contexts import Context
from modeltui.screens import (
    DeploymentsScreen,
    FleetScreen,
    HelpScreen,
    ModelScreen,
    ModelsScreen,
    RegistryScreen,
    VersionScreen,
)
from modeltui.widgets import ModelsTable, ShellFooter, StatusHeader, VersionsTable
from tests.helpers.daemon import DaemonProcess
from tests.helpers.models import make_model_dir
from tests.helpers.tui import SIZE, make_app, push, rows, show_json, until

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
        model = app.screen
        # Blocked as well as hidden: keys are handled in order, so once help (pressed after) is up, `a` was
        # handled too, and no dialog came between the model and the help.
        await pilot.press("a", "question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "help, pressed after a")
        assert app.screen_stack[-2] is model


async def test_switching_context_shows_none_of_the_old_data_and_sends_nothing_to_the_new(
    shell_daemon: DaemonProcess,
) -> None:
    """Contexts ``a`` and ``b`` reach the one daemon, each through a gate the test opens: what ``a`` showed
    is gone as soon as ``b`` is chosen, while ``b`` is still connecting; an alias move posted on one context
    is not sent once the user switched to the other (the daemon never gets it), and the user is told."""
    contexts = [Context(name="a", socket=shell_daemon.socket), Context(name="b", socket=shell_daemon.socket)]
    gates = {"a": asyncio.Event(), "b": asyncio.Event()}
    gates["a"].set()

    async def open_context(ctx: Context) -> DaemonClient:
        await gates[ctx.name].wait()
        assert ctx.socket is not None
        return await connect(ctx.socket)

    def told(text: str) -> bool:
        return any(text in n.message for n in app._notifications)

    move = requests.AliasSet(name="shell-demo", alias="leak", version=1)
    app = ModelTuiApp(lambda: open_context(contexts[0]), contexts=contexts, context="a",
                      connect_context=open_context)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(ModelsTable)
        await until(pilot, lambda: "shell-demo" in names(table), "a's models")
        app.show_view("deployments")
        await until(pilot, lambda: isinstance(app.screen, DeploymentsScreen), "the deployments view")
        # Posted on a, the switch before the App reads it: it never leaves.
        app.screen.post_message(RegistryScreen.Call(app.screen, move))  # type: ignore[arg-type]
        app.switch_context("b")
        await until(pilot, lambda: told("aliases.set not sent: the context changed from a to b"), "told (a→b)")
        await until(pilot, lambda: shown(app, " b › deployments"), "b's header")
        assert "connecting" in header(app)
        await pilot.press("escape")
        await until(pilot, lambda: shown(app, " b › models"), "b's models view, still connecting")
        assert app.connection == "connecting"
        assert "shell-demo" not in names(table), names(table)  # nothing of a under b's header

        # Posted on b while it connects; the user switches back to a, which answers: not sent to a.
        assert isinstance(app.screen, ModelsScreen)
        app.screen.call(move, success="moved")
        await until(pilot, lambda: [m.request for m in app._waiting if m.request.changes_state] == [move],
                    "the move waits for b")
        app.switch_context("a")
        await until(pilot, lambda: told("aliases.set not sent: the context changed from b to a"), "told (b→a)")
        await until(pilot, lambda: "shell-demo" in names(table), "a's models again")
        assert "leak" not in json.dumps(await asyncio.to_thread(show_json, shell_daemon, "shell-demo"))
        assert not told("moved")


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
