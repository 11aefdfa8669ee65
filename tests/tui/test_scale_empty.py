"""The models view from an EMPTY registry: the first model pushed shows without a key pressed, on the live
event and after a reconnect, and the list comes back from every way of showing nothing (a filter matching
nothing, a tiny terminal, the last model removed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.app import App
from textual.pilot import Pilot

from modeltui.app import ModelTuiApp
from modeltui.screens import ModelsScreen
from tests.helpers.daemon import DaemonProcess
from tests.helpers.models import make_model_dir
from tests.helpers.snapshots import screen_text
from tests.helpers.tui import SIZE, make_app, push, until


def models_screen(app: ModelTuiApp) -> ModelsScreen:
    screen = app.screen
    assert isinstance(screen, ModelsScreen)
    return screen


def listed(app: App[Any], name: str) -> bool:
    """``name`` is a row of the models list on screen (the empty-registry box is gone)."""
    text = screen_text(app)
    return "registry is empty" not in text and any(line.lstrip().startswith(name + " ") for line in text.splitlines())


async def shows(pilot: Pilot[None], name: str) -> None:
    await until(pilot, lambda: listed(pilot.app, name), f"{name} in the models list", timeout=20)


async def test_first_model_shows_on_the_event_after_a_reconnect_and_after_every_empty_list(
    daemon_factory: Any, tmp_path: Path
) -> None:
    daemon: DaemonProcess = daemon_factory().start()
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "registry is empty" in screen_text(app), "the empty-registry box")

        # the live registry event
        push(daemon, make_model_dir(tmp_path / "m1", "alpha-one"))
        await shows(pilot, "alpha-one")

        # every model removed: the box again; the daemon restarted and a model pushed while the App reconnects
        assert daemon.cli("rm", "--model", "alpha-one").returncode == 0
        await until(pilot, lambda: "registry is empty" in screen_text(app), "the empty-registry box again")
        daemon.stop()
        await until(pilot, lambda: app.connection != "connected", "the connection lost", timeout=15)
        daemon.start()
        push(daemon, make_model_dir(tmp_path / "m2", "beta-two"))
        await until(pilot, lambda: app.connection == "connected", "reconnected by itself", timeout=30)
        await shows(pilot, "beta-two")

        # a filter that matches nothing, then a model that matches it
        await pilot.press("slash", *"gamma", "enter")
        await until(pilot, lambda: "no model matches 'gamma'" in screen_text(app), "no match")
        push(daemon, make_model_dir(tmp_path / "m3", "gamma-three"))
        await shows(pilot, "gamma-three")
        await pilot.press("escape")
        await shows(pilot, "beta-two")

        # a terminal too small for any row, a model pushed, the terminal large again
        await pilot.resize_terminal(80, 5)
        await pilot.pause()
        push(daemon, make_model_dir(tmp_path / "m4", "delta-four"))
        await until(pilot, lambda: "of 3" in str(models_screen(app).query_one("#page-status").render()),
                    "the count of three models")
        await pilot.resize_terminal(*SIZE)
        await shows(pilot, "delta-four")
        assert all(listed(app, name) for name in ("beta-two", "gamma-three"))
