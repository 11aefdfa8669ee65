"""The deployments views driven with Textual's Pilot against a REAL modeltuid that runs REAL deployments
(process backend, a tiny python-flavor model), with predictions sent to the real endpoint over HTTP."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Footer, Static, TabbedContent

from daemon.protocol import requests
from modeltui.client import connect
from modeltui.screens import (
    ConfirmDialog,
    DeployDialog,
    DeploymentScreen,
    HelpScreen,
    RollbackDialog,
)
from modeltui.widgets import DeploymentEventsTable, DeploymentFieldsTable, DeploymentsTable, LogView
from tests.helpers.daemon import DaemonProcess
from tests.helpers.models import echo_model
from tests.helpers.tui import (
    SIZE,
    deploy,
    make_app,
    open_deployments,
    push,
    query,
    rows,
    show_json,
    table_row,
    undeploy_all,
    until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FLOODS = 10
#: Keys answered while the flood streams, and the longest the flood grows to let them be.
PRESSES = 3
MAX_FLOODS = 3 * FLOODS


def http(method: str, url: str, body: dict[str, Any] | None = None, timeout: float = 10) -> tuple[int, Any]:
    """One request to a deployment, never through a proxy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with opener.open(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None


def predict(endpoint: str, value: float) -> list[float]:
    status, out = http("POST", f"{endpoint}/predict", {"inputs": [[value]]}, timeout=30)
    assert status == 200, out
    predictions: list[float] = out["predictions"]
    return predictions


def answers(endpoint: str) -> bool:
    try:
        http("GET", f"{endpoint}/health", timeout=2)
    except (OSError, urllib.error.URLError):
        return False
    return True


async def loop_lag(done: Callable[[], bool], tick: float = 0.01, limit: float = 60.0) -> float:
    """The longest the event loop (the app's, in a Pilot test) was busy between two wakes of a 10 ms sleep, until
    done(): the loop thread's own CPU time, which a loaded machine's other processes do not add to."""
    loop = asyncio.get_running_loop()
    worst, end = 0.0, loop.time() + limit
    while not done() and loop.time() < end:
        before = time.thread_time()
        await asyncio.sleep(tick)
        worst = max(worst, time.thread_time() - before)
    return worst


async def settle_clients(pilot: Any, daemon: DaemonProcess, expected: int) -> None:
    """Wait until the daemon counts ``expected`` connections besides the one asking."""
    loop = asyncio.get_running_loop()
    deadline, clients = loop.time() + 5, -1
    while loop.time() < deadline:
        clients = (await query(daemon, requests.DaemonStatusRequest())).clients
        if clients == expected:
            return
        await pilot.pause(0.1)
    raise AssertionError(f"the daemon has {clients} client(s), expected {expected}")


@pytest.fixture
async def echo(daemon: DaemonProcess, tmp_path: Path) -> AsyncIterator[DaemonProcess]:
    """A daemon with the python model ``echo`` (v1, alias production); whatever a test deploys is removed."""
    push(daemon, echo_model(tmp_path / "echo-v1"), "--alias", "production", "-m", "first")
    yield daemon
    if daemon.proc is not None and daemon.proc.poll() is None:
        async with await connect(daemon.socket) as client:
            await undeploy_all(client)


async def test_table_shows_a_deployment_live(echo: DaemonProcess) -> None:
    app = make_app(echo)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_deployments(pilot)
        status = screen.query_one("#deployments-status", Static)
        await until(pilot, lambda: "no deployments" in str(status.render()), "empty state")

        # Deployed by another client while the view is open: it appears without a key press.
        d = await deploy(echo, "echo:1")
        table = screen.query_one(DeploymentsTable)
        await until(pilot, lambda: table_row(screen, d.name)["state"] == "running", "row running", 15)
        row = table_row(screen, d.name)
        assert row["ref"] == "echo:1"
        assert row["version"] == "v1"
        assert row["endpoint"] == d.endpoint
        assert row["backend"] == "process"
        assert row["restarts"] == "0"
        assert row["uptime"] != "-"
        assert d.endpoint is not None
        assert await asyncio.to_thread(predict, d.endpoint, 21.0) == [42.0]
        # State is coloured.
        state = table.get_cell(d.name, "state")
        assert state.style  # type: ignore[union-attr]

        # Enter opens the detail: fields and recent events.
        table.focus()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DeploymentScreen), "detail screen")
        detail = app.screen
        assert isinstance(detail, DeploymentScreen)
        await until(pilot, lambda: detail.deployment is not None, "detail loaded")
        title = str(detail.query_one("#deployment-title", Static).render())
        assert d.name in title
        assert "running" in title
        assert str(d.endpoint) in title
        await pilot.press("i")
        fields = {r[0]: r[1] for r in rows(detail.query_one(DeploymentFieldsTable))}
        assert fields["state"] == "running"
        assert fields["endpoint"] == d.endpoint
        assert fields["ref"] == "echo:1"
        await pilot.press("e")
        await until(pilot, lambda: detail.query_one(DeploymentEventsTable).row_count > 0, "events")
        await pilot.press("escape")
        assert app.screen is screen


async def test_undeploy_with_confirmation_stops_the_process(echo: DaemonProcess) -> None:
    d = await deploy(echo, "echo@production")
    assert d.name == "echo-production"
    assert d.endpoint is not None
    assert answers(d.endpoint)
    app = make_app(echo)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_deployments(pilot)
        await until(pilot, lambda: table_row(screen, d.name)["state"] == "running", "row")

        # "no" changes nothing.
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "confirmation")
        assert d.name in str(app.screen.query_one(".title", Static).render())
        await pilot.press("n")
        await until(pilot, lambda: app.screen is screen, "back")
        await pilot.pause(0.3)
        assert screen.query_one(DeploymentsTable).row_count == 1

        await pilot.press("delete")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "confirmation")
        await pilot.press("y")
        await until(pilot, lambda: screen.query_one(DeploymentsTable).row_count == 0, "row removed", 20)
    listing = await query(echo, requests.ListDeployments())
    assert listing.items == []
    deadline = time.monotonic() + 10
    while answers(d.endpoint) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not answers(d.endpoint), "the endpoint still answers after undeploy"


async def test_logs_follow_and_a_flood_keeps_the_app_responsive(echo: DaemonProcess) -> None:
    d = await deploy(echo, "echo:1")
    assert d.endpoint is not None
    endpoint = d.endpoint
    await asyncio.to_thread(predict, endpoint, 1.5)  # a line in the log before the view opens
    app = make_app(echo)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_deployments(pilot)
        await until(pilot, lambda: table_row(screen, d.name)["state"] == "running", "row")
        clients_before = (await query(echo, requests.DaemonStatusRequest())).clients

        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, DeploymentScreen), "log view")
        detail = app.screen
        assert isinstance(detail, DeploymentScreen)
        log = detail.query_one(LogView)
        assert log.max_lines == 5000
        # The tail holds the earlier line; a new prediction's line arrives live.
        await until(pilot, lambda: any("first 1.5" in line for line in log.lines), "tail of the log", 10)
        await asyncio.to_thread(predict, endpoint, 7.0)
        await until(pilot, lambda: any("first 7.0" in line for line in log.lines), "a followed line", 10)
        # The log is followed over a connection of its own.
        await settle_clients(pilot, echo, clients_before + 1)

        # A flood: predictions of 20,000 lines each, a tenth of a second apart (one after the other: concurrent
        # requests would be batched into one predict call). Keys are pressed all the while it streams, and each
        # is answered promptly. The flood lasts FLOODS predictions, and longer (up to MAX_FLOODS) until PRESSES
        # keys were answered while it streamed: a loaded machine's slow keys lengthen the flood, not fail the
        # test; keys the flood blocks still fail it.
        base = log.received
        answered = threading.Event()
        sent = 0

        def floods() -> None:
            nonlocal sent
            while sent < FLOODS or (not answered.is_set() and sent < MAX_FLOODS):
                predict(endpoint, 20000.0)
                sent += 1
                time.sleep(0.1)

        flood = asyncio.create_task(asyncio.to_thread(floods))

        def streaming() -> bool:
            return not flood.done() or log.received < base + sent * 20_000

        lag = asyncio.create_task(loop_lag(lambda: not streaming()))
        tabs = detail.query_one(TabbedContent)
        slowest, pressed, presses = 0.0, 0, 0
        while streaming() and pressed < 400:
            tab = "events" if pressed % 2 == 0 else "logs"
            started = time.thread_time()  # the loop's own work for the key, not a busy machine's delays
            await pilot.press(tab[0])
            slowest = max(slowest, time.thread_time() - started)
            assert tabs.active == tab
            pressed += 1
            if streaming():  # answered while the flood still streamed
                presses += 1
                if presses >= PRESSES:
                    answered.set()
            await pilot.pause(0.02)
        await flood
        target = base + sent * 20_000
        assert log.received >= target, "the whole flood arrived"
        assert presses >= PRESSES, f"{presses} key(s) answered while {sent} floods streamed"
        assert slowest < 2.0, f"a key took {slowest:.2f}s during the flood"
        worst_lag = await lag
        assert worst_lag < 0.5, f"the event loop stalled for {worst_lag:.2f}s during the flood"
        await until(pilot, lambda: log.pending == 0, "the flood is written")
        assert log.line_count <= 5000
        assert log.lines[-1].startswith("flood line 19999")
        started = time.thread_time()
        await pilot.press("i")
        assert time.thread_time() - started < 2.0
        assert tabs.active == "info"

        # f follows again: the log starts over from the tail, on a new connection replacing the old one.
        await pilot.press("l", "f")
        await until(pilot, lambda: 0 < log.line_count <= 200 and log.lines[-1].startswith("flood line 19999"),
                    "the tail again")
        await settle_clients(pilot, echo, clients_before + 1)

        # Closing the view closes its connection.
        await pilot.press("escape")
        assert app.screen is screen
        await settle_clients(pilot, echo, clients_before)


async def test_new_deployment_dialog_deploys(echo: DaemonProcess) -> None:
    app = make_app(echo)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_deployments(pilot)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, DeployDialog), "deploy dialog")
        dialog = app.screen
        # Usable at 80x24.
        box = dialog.query_one(".dialog")
        assert box.region.bottom <= 24
        assert box.region.right <= 80
        assert dialog.query_one("#ok").region.bottom <= 24
        # An invalid ref is refused with the protocol's message; the dialog stays.
        await pilot.press(*"echo:x", "enter")
        assert app.screen is dialog
        assert "invalid version number" in str(dialog.query_one("#error").render())
        await pilot.press("backspace", "1", "enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "confirmation")
        assert "echo:1" in str(app.screen.query_one(".title", Static).render())
        await pilot.press("y")
        await until(pilot, lambda: app.screen is screen, "back on the table")
        await until(pilot, lambda: table_row(screen, "echo")["state"] == "running", "deployed and running", 30)
        # The deployment's events showed in the status line as they arrived.
        assert str(screen.query_one("#deployments-status", Static).render()).startswith("echo: ")
        row = table_row(screen, "echo")
        assert row["endpoint"].startswith("http://127.0.0.1:")
        assert await asyncio.to_thread(predict, row["endpoint"], 2.0) == [4.0]


async def test_rollback_moves_the_alias_back_and_the_deployment_follows(
    echo: DaemonProcess, tmp_path: Path
) -> None:
    push(echo, echo_model(tmp_path / "echo-v2", note="v2"), "-m", "second")
    d = await deploy(echo, "echo@production")
    assert d.version == 1
    moved = await asyncio.to_thread(echo.cli, "alias", "set", "echo", "production", "2", "--reason", "try v2")
    assert moved.returncode == 0, moved.stderr
    app = make_app(echo)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_deployments(pilot)
        await until(pilot, lambda: table_row(screen, d.name)["version"] == "v2"
                    and table_row(screen, d.name)["state"] == "running", "rolled out to v2", 30)
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, RollbackDialog), "rollback dialog")
        await pilot.press(*"bad", "space", *"v2", "enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "confirmation")
        question = str(app.screen.query_one(".title", Static).render())
        assert "from v2 to v1" in question, question
        await pilot.press("y")
        await until(pilot, lambda: table_row(screen, d.name)["version"] == "v1"
                    and table_row(screen, d.name)["state"] == "running", "rolled back to v1", 30)
    assert show_json(echo, "echo@production")["version"]["number"] == 1


async def test_pinned_deployment_does_not_roll_back(echo: DaemonProcess) -> None:
    d = await deploy(echo, "echo:1")
    app = make_app(echo)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_deployments(pilot)
        await until(pilot, lambda: table_row(screen, d.name)["state"] == "running", "row")
        await pilot.press("b")
        await pilot.pause(0.3)
        assert app.screen is screen  # a warning, no dialog


async def test_restart_with_confirmation_starts_a_new_instance(echo: DaemonProcess) -> None:
    d = await deploy(echo, "echo:1")
    assert d.instance is not None
    app = make_app(echo)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_deployments(pilot)
        await until(pilot, lambda: table_row(screen, d.name)["state"] == "running", "row")
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "confirmation")
        await pilot.press("y")
        table = screen.query_one(DeploymentsTable)

        def restarted() -> bool:
            now = table.items[d.name]
            return (now.state == "running" and now.instance is not None and d.instance is not None
                    and now.instance.id != d.instance.id)

        await until(pilot, restarted, "a new instance running", 30)


async def test_readonly_hides_and_refuses_deployment_actions(echo: DaemonProcess) -> None:
    d = await deploy(echo, "echo@production")
    app = make_app(echo, readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_deployments(pilot)
        await until(pilot, lambda: table_row(screen, d.name)["state"] == "running", "row")
        shown = {b.binding.action for b in screen.active_bindings.values()}
        assert "logs" in shown
        assert not shown & {"new", "undeploy", "restart", "rollback"}
        for key in ("n", "x", "delete", "r", "b"):
            await pilot.press(key)
            await pilot.pause(0.1)
            assert app.screen is screen, key
        # The detail view reads (and follows the log) but offers no action either.
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, DeploymentScreen), "detail")
        detail = app.screen
        shown = {b.binding.action for b in detail.active_bindings.values()}
        assert not shown & {"undeploy", "restart", "rollback"}
        for key in ("x", "r", "b"):
            await pilot.press(key)
            await pilot.pause(0.1)
            assert app.screen is detail, key
    listing = await query(echo, requests.ListDeployments())
    assert [x.state for x in listing.items] == ["running"]


async def test_keys_fit_at_80x24_and_help_lists_them(echo: DaemonProcess) -> None:
    d = await deploy(echo, "echo:1")
    app = make_app(echo)
    async with app.run_test(size=SIZE) as pilot:
        footer_text = " ".join(str(w.render()) for w in app.screen.query_one(Footer).query("FooterKey"))
        assert "Deployments" in footer_text
        screen = await open_deployments(pilot)
        await until(pilot, lambda: table_row(screen, d.name)["state"] == "running", "row")
        table = screen.query_one(DeploymentsTable)
        assert table.region.right <= 80
        assert table.region.height >= 5
        # name, ref, version, state, health and endpoint are visible without scrolling at 80 columns.
        widths = sum(c.get_render_width(table) for c in table.ordered_columns[:6])
        assert widths <= 80, widths
        footer = screen.query_one(Footer)
        assert footer.region.y == 23
        footer_text = " ".join(str(w.render()) for w in footer.query("FooterKey"))
        for key in ("? Help", "Logs", "Metrics", "Restart"):  # ? help first, then the view's three keys
            assert key in footer_text, key

        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DeploymentScreen), "detail")
        detail = app.screen
        log = detail.query_one(LogView)
        await until(pilot, lambda: log.region.height >= 8, "log laid out")
        assert log.region.bottom <= 23
        footer_text = " ".join(str(w.render()) for w in detail.query_one(Footer).query("FooterKey"))
        for key in ("? Help", "Logs", "Events", "Metrics"):  # Info, Undeploy, Restart, Rollback: in ? help
            assert key in footer_text, key

        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = " ".join(str(s.render()) for s in app.screen.query("Static"))
        for key in ("Deployments", "Undeploy", "Restart", "Rollback", "Follow", "New"):
            assert key in text, key
