"""Driving the real TUI (``modeltui.app.ModelTuiApp``) with Textual's Pilot, against a real daemon, and
asking that daemon directly what a test needs to set up or check."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from textual.notifications import Notification
from textual.pilot import Pilot

from daemon.protocol import requests, results
from daemon.protocol.deploy import DeploymentInfo
from modeltui.app import ModelTuiApp
from modeltui.client import DaemonClient, connect
from modeltui.screens import DeploymentsScreen, ModelsScreen
from modeltui.widgets import DeploymentsTable, KeyedTable
from tests.helpers.daemon import DaemonProcess

R = TypeVar("R", bound=results.Result)

#: The terminal every Pilot test runs in.
SIZE = (80, 24)


def make_app(daemon: DaemonProcess, *, readonly: bool = False) -> ModelTuiApp:
    """The real App, connecting to ``daemon``'s socket."""
    return ModelTuiApp(lambda: connect(daemon.socket), readonly=readonly)


def rows(table: KeyedTable) -> list[list[str]]:
    """What the user sees in a table, as plain strings."""
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


async def until(pilot: Pilot[None], check: Callable[[], Any], what: str, timeout: float = 8.0) -> None:
    """Let the app run (no key pressed) until ``check()`` is true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            if check():
                return
        except Exception:  # the widget may not be mounted yet
            pass
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for: {what}")


def push(daemon: DaemonProcess, path: Path, *args: str) -> None:
    """``modeltui push PATH ARGS`` through the CLI, which must succeed."""
    done = daemon.cli("push", str(path), *args)
    assert done.returncode == 0, done.stderr


def show_json(daemon: DaemonProcess, ref: str) -> dict[str, Any]:
    """``modeltui show REF --json`` through the CLI."""
    done = daemon.cli("show", ref, "--json")
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


async def deploy(daemon: DaemonProcess, ref: str, **fields: Any) -> DeploymentInfo:
    """Deploy ``ref`` over a connection of its own and wait until it runs."""
    async with await connect(daemon.socket) as client:
        detail = await client.call(requests.Deploy(ref=ref, wait=True, timeout_seconds=60, **fields))
    d = detail.deployment
    assert d.state == "running", d
    return d


async def query(daemon: DaemonProcess, request: requests.BaseRequest[R]) -> R:
    """One request over a connection of its own (not the App's)."""
    async with await connect(daemon.socket) as client:
        return await client.call(request)


async def undeploy_all(client: DaemonClient) -> None:
    """Teardown: running instances outlive the daemon, so every test removes what it deployed."""
    listing = await client.call(requests.ListDeployments())
    for d in listing.items:
        try:
            await client.call(requests.Undeploy(name=d.name))
        except Exception:
            if d.instance is not None and d.backend == "process":
                with contextlib.suppress(ValueError, OSError):
                    os.kill(int(d.instance.key.split(":")[0]), signal.SIGKILL)


#: The deployments table's columns, to read a row by column name.
DEPLOYMENT_COLUMNS = list(DeploymentsTable.COLUMNS)


def table_row(screen: DeploymentsScreen, name: str) -> dict[str, str]:
    """The deployments table's row of deployment ``name``, by column."""
    return screen.query_one(DeploymentsTable).row_of(name)  # columns hidden for room included


async def open_deployments(pilot: Any) -> DeploymentsScreen:
    """Wait for the connection, then open the deployments view from the models view."""
    app = pilot.app
    await until(pilot, lambda: app.connection == "connected", "connected")
    assert isinstance(app.screen, ModelsScreen)
    await pilot.press("d")
    await until(pilot, lambda: isinstance(app.screen, DeploymentsScreen), "deployments screen")
    screen = app.screen
    assert isinstance(screen, DeploymentsScreen)
    return screen


def notifications(app: ModelTuiApp, text: str) -> list[Notification]:
    """The App's notifications whose message or title holds ``text``."""
    return [n for n in app._notifications if text in n.message or text in (n.title or "")]
