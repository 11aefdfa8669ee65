"""Lists behave the same everywhere (issue 16, items 2 and 7), against a REAL daemon: one model of three
versions and one process-backend deployment, shared by the module. The versions list filters on its message
column, inverts, sorts, jumps to its last row and shows the marks; the deployments list at 80x24 keeps the
columns an operator needs and filters on its state column."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from textual.widgets import Static

from modeltui.client import connect
from modeltui.screens import DeploymentScreen, ModelScreen
from modeltui.widgets import DeploymentsTable, LogView, VersionsTable
from tests.helpers.daemon import DaemonProcess
from tests.helpers.endpoints import predictions
from tests.helpers.models import echo_model
from tests.helpers.tui import SIZE, deploy, make_app, open_deployments, push, rows, undeploy_all, until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def echo3(module_daemon: DaemonProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """``echo`` v1 "first" (production, deployed as ``echo-production``), v2 "tuned", v3 "retrained"."""
    base = tmp_path_factory.mktemp("echo3")
    push(module_daemon, echo_model(base / "v1"), "--alias", "production", "-m", "first")
    push(module_daemon, echo_model(base / "v2", note="2"), "-m", "tuned")
    push(module_daemon, echo_model(base / "v3", note="3"), "-m", "retrained")
    asyncio.run(deploy(module_daemon, "echo@production", name="echo-production"))
    yield module_daemon

    async def clean() -> None:
        async with await connect(module_daemon.socket) as client:
            await undeploy_all(client)

    if module_daemon.proc is not None and module_daemon.proc.poll() is None:
        asyncio.run(clean())


def versions(table: VersionsTable) -> list[str]:
    return [row[1] for row in rows(table)]


async def test_versions_filter_sort_jump_and_marks(echo3: DaemonProcess) -> None:
    app = make_app(echo3)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected", "connected")
        screen = ModelScreen("echo")
        await app.push_screen(screen)
        table = screen.query_one(VersionsTable)
        await until(pilot, lambda: versions(table) == ["v3", "v2", "v1"], "three versions, newest first")
        table.focus()

        await pilot.press("G")
        assert table.current_version == 1, "G: the last row"
        await pilot.press("g")
        assert table.current_version == 3, "g: the first row"

        # `/` matches the message column, not only names; `!` inverts; esc clears.
        await pilot.press("slash", *"tuned", "enter")
        assert versions(table) == ["v2"]
        assert table.border_title == "filter: /tuned (1 of 3)"
        await pilot.press("slash", "ctrl+u", *"!tuned", "enter")
        assert versions(table) == ["v3", "v1"]
        await pilot.press("slash", "escape")
        assert versions(table) == ["v3", "v2", "v1"]

        # `>` moves the sort column (the first is version: the mark column has no name), `-` reverses.
        await pilot.press("greater_than_sign")
        assert versions(table) == ["v1", "v2", "v3"]
        assert "version ▲" in [str(c.label) for c in table.ordered_columns]
        await pilot.press("minus")
        assert versions(table) == ["v3", "v2", "v1"]

        # Two marks: visible in the mark column and listed on the status line.
        await pilot.press("g", "space", "j", "space")
        assert [row[0] for row in rows(table)] == ["●", "●", ""]
        assert table.ordered_columns[0].get_render_width(table) >= 3, "the mark column has room"
        status = str(screen.query_one("#version-status", Static).render())
        assert "marked: v3, v2" in status, status


async def test_deployments_at_80x24_keep_the_needed_columns_and_filter_on_state(echo3: DaemonProcess) -> None:
    app = make_app(echo3)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_deployments(pilot)
        table = screen.query_one(DeploymentsTable)
        await until(pilot, lambda: table.row_count == 1, "the deployment")
        d = table.items["echo-production"]
        assert table.shown_columns[:7] == ["name", "state", "health", "endpoint", "uptime", "restarts", "message"]
        assert sum(c.get_render_width(table) for c in table.ordered_columns) <= 80
        row = dict(zip(table.shown_columns, rows(table)[0], strict=True))
        assert row["name"] == "echo-production"
        assert row["state"] == "running"
        assert row["endpoint"].endswith(f":{d.port}"), "shortened at the start, if at all: the port shows"
        assert row["restarts"] == "0"

        table.focus()
        await pilot.press("slash", *"runn", "enter")
        assert table.row_count == 1, "running is in the state column"

        # The log view filters its lines with the same `/`: the log takes the keys when its tab shows.
        assert d.endpoint is not None
        await asyncio.to_thread(predictions, d.endpoint, [4.0])
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DeploymentScreen), "the deployment's detail")
        await pilot.press("l")
        log = app.screen.query_one(LogView)
        await until(pilot, lambda: any("4.0" in line for line in log.lines), "the log's tail")
        assert app.focused is log
        await pilot.press("slash", *"^zzz", "enter")
        assert log.line_count == 0
        await pilot.press("slash", "escape")
        assert any("4.0" in line for line in log.lines)
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen, "back to the list")

        table.focus()
        await pilot.press("slash", "ctrl+u", *"!running", "enter")
        assert table.row_count == 0
        assert table.border_title == "filter: /!running (0 of 1)"
