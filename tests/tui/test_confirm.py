"""Safety rails against a REAL daemon running one REAL process deployment that follows ``echo@prod`` (two
versions pushed): the home view counts it; an alias move and a rollback confirm naming the deployment that
will roll out, enter and n change nothing (the daemon says so), y moves the alias and the deployment rolls
out; undeploy names the endpoint; read-only offers none of these. One daemon and one deployment for the
module: each test leaves ``prod`` on v1 and the deployment running."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from textual.widgets import Button

from daemon.protocol import requests
from daemon.protocol.deploy import DeploymentInfo
from modeltui.client import connect
from modeltui.screens import (
    AliasDialog,
    ConfirmDialog,
    DeploymentsScreen,
    HomeScreen,
    ModelScreen,
    RollbackDialog,
)
from modeltui.widgets import VersionsTable
from tests.helpers.daemon import DaemonProcess
from tests.helpers.models import echo_model
from tests.helpers.tui import SIZE, deploy, make_app, push, query, table_row, undeploy_all, until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

Echo = tuple[DaemonProcess, DeploymentInfo]


@pytest.fixture(scope="module")
def echo(module_daemon: DaemonProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Echo]:
    """echo:1 (alias prod) and echo:2, and a process deployment of echo@prod (serving v1)."""
    base = tmp_path_factory.mktemp("echo")
    push(module_daemon, echo_model(base / "v1"), "--alias", "prod", "-m", "first")
    push(module_daemon, echo_model(base / "v2", note="v2"), "-m", "second")
    d = asyncio.run(deploy(module_daemon, "echo@prod"))
    assert d.version == 1
    yield module_daemon, d
    if module_daemon.proc is not None and module_daemon.proc.poll() is None:

        async def clean() -> None:
            async with await connect(module_daemon.socket) as client:
                await undeploy_all(client)

        asyncio.run(clean())


async def prod_version(daemon: DaemonProcess) -> int:
    """What ``echo@prod`` points to, asked of the daemon."""
    detail = await query(daemon, requests.GetModel(name="echo"))
    return detail.model.aliases["prod"]


async def serving(daemon: DaemonProcess, name: str) -> DeploymentInfo:
    detail = await query(daemon, requests.GetDeployment(name=name))
    return detail.deployment


def question(app: Any) -> str:
    dialog = app.screen
    assert isinstance(dialog, ConfirmDialog)
    return str(dialog.query_one("#question").render())


async def open_screen(pilot: Any, screen: Any) -> Any:
    app = pilot.app
    await until(pilot, lambda: app.connection == "connected", "connected")
    app.push_screen(screen)
    await until(pilot, lambda: app.screen is screen and screen.is_mounted, type(screen).__name__)
    return screen


async def test_home_view_counts_the_running_deployment(echo: Echo) -> None:
    daemon, _d = echo
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        home = await open_screen(pilot, HomeScreen())
        await until(pilot, lambda: "1 deployment(s): 1 running" in str(home.query_one("#home-title").render()),
                    "the deployment counted")
        await until(pilot, lambda: "0 run(s) awaiting approval" in str(home.query_one("#home-title").render()),
                    "the runs counted")
        assert "0 alert(s) firing" in str(home.query_one("#home-title").render())
        assert "all 1 running" in str(home.query_one("#home-deployments-label").render())


async def test_alias_move_and_rollback_name_the_deployment_that_rolls_out(echo: Echo) -> None:
    daemon, d = echo
    assert await prod_version(daemon) == 1
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        model = await open_screen(pilot, ModelScreen("echo"))
        await until(pilot, lambda: model.aliases == {"prod": 1}
                    and model.query_one(VersionsTable).current_version == 2, "v2 highlighted, prod on v1")

        async def ask_to_move() -> str:
            await pilot.press("a")
            await until(pilot, lambda: isinstance(app.screen, AliasDialog), "alias dialog")
            await pilot.press("enter", *"v2", "enter")  # alias "prod" (suggested), then a reason
            await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "confirmation")
            return question(app)

        text = await ask_to_move()
        assert "Move prod of echo from v1 to v2?" in text, text
        assert f"1 deployment(s) follow echo@prod and roll out v2: {d.name}." in text, text
        dialog = app.screen
        assert str(dialog.query_one("#yes", Button).label) == "Move (y)"
        box = dialog.query_one(".dialog")
        assert box.region.bottom <= 24
        assert box.region.right <= 80
        # Enter on a fresh dialog cancels (the focus starts on Cancel): the daemon moved nothing.
        await pilot.press("enter")
        await until(pilot, lambda: app.screen is model, "back on the model")
        await pilot.pause(0.3)
        assert await prod_version(daemon) == 1

        await ask_to_move()
        await pilot.press("y")
        await until(pilot, lambda: model.aliases == {"prod": 2}, "prod moved on screen")
        assert await prod_version(daemon) == 2
        for _ in range(300):  # the deployment follows: it rolls out v2
            now = await serving(daemon, d.name)
            if now.version == 2 and now.state == "running":
                break
            await pilot.pause(0.1)
        assert (now.version, now.state) == (2, "running")

        # Rollback names where the alias goes back to and the deployment again; n cancels, y rolls back.
        for answer in ("n", "y"):
            await pilot.press("r")
            await until(pilot, lambda: isinstance(app.screen, RollbackDialog), "rollback dialog")
            await pilot.press(*"bad", "enter")
            await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "confirmation")
            text = question(app)
            assert "Roll prod of echo back from v2 to v1?" in text, text
            assert f"1 deployment(s) follow echo@prod and roll out v1: {d.name}." in text, text
            await pilot.press(answer)
            await until(pilot, lambda: app.screen is model, "back on the model")
        await until(pilot, lambda: model.aliases == {"prod": 1}, "prod back on v1 on screen")
        assert await prod_version(daemon) == 1
        for _ in range(300):
            now = await serving(daemon, d.name)
            if now.version == 1 and now.state == "running":
                break
            await pilot.pause(0.1)
        assert (now.version, now.state) == (1, "running")


async def test_undeploy_names_the_endpoint_and_read_only_offers_no_dangerous_action(echo: Echo) -> None:
    daemon, d = echo
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_screen(pilot, DeploymentsScreen())
        await until(pilot, lambda: table_row(screen, d.name)["state"] == "running", "row")
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "confirmation")
        text = question(app)
        assert f"Undeploy {d.name}" in text, text
        assert f"{d.endpoint} stops answering" in text, text
        assert "traffic" in text
        await pilot.press("n")
        await until(pilot, lambda: app.screen is screen, "back")
        await pilot.pause(0.3)
    assert (await serving(daemon, d.name)).state == "running"

    app = make_app(daemon, readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        model = await open_screen(pilot, ModelScreen("echo"))
        await until(pilot, lambda: model.aliases == {"prod": 1}, "aliases shown")
        shown = {b.binding.action for b in model.active_bindings.values()}
        assert not shown & {"set_alias", "rollback"}, shown
        for key in ("a", "r"):
            await pilot.press(key)
            await pilot.pause(0.1)
            assert app.screen is model, key
        app.pop_screen()
        deployments = await open_screen(pilot, DeploymentsScreen())
        await until(pilot, lambda: table_row(deployments, d.name)["state"] == "running", "row")
        shown = {b.binding.action for b in deployments.active_bindings.values()}
        assert not shown & {"undeploy", "rollback", "restart", "new"}, shown
        for key in ("x", "b"):
            await pilot.press(key)
            await pilot.pause(0.1)
            assert app.screen is deployments, key
    assert await prod_version(daemon) == 1
    assert (await serving(daemon, d.name)).state == "running"
