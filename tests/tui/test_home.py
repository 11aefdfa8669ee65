"""The home view against canned answers (tests/helpers/canned.py): what needs attention, counted and listed,
kept live by alert events, and enter opening the thing. tests/tui/test_confirm.py shows it against a real
daemon."""

from __future__ import annotations

from typing import Any

from daemon.protocol import requests
from daemon.protocol import results as r
from daemon.protocol.events import AlertEvent, RegistryEvent
from modeltui.screens import AlertsScreen, DeploymentScreen, HomeScreen, MaintenanceScreen
from modeltui.screens.home import AwaitingRunsTable, FiringAlertsTable, NotRunningTable
from modeltui.widgets import KeyedTable
from tests.helpers.canned import canned_client, deployments
from tests.helpers.fake_client import FakeClient, fake_app
from tests.helpers.tui import SIZE, rows, until


def home_client() -> FakeClient:
    """Two deployments (one stopped), one alert firing, one run awaiting approval; a deployment's detail."""
    client = canned_client()
    stopped = deployments()[1]
    client.answer(requests.GetDeployment, r.DeploymentDetail(deployment=stopped))
    client.answer(requests.Logs, r.LogLines(deployment=stopped.name, lines=["stopped by alice"]))
    return client


async def open_home(pilot: Any) -> HomeScreen:
    app = pilot.app
    await until(pilot, lambda: app.connection == "connected", "connected")
    app.push_screen(HomeScreen())
    await until(pilot, lambda: isinstance(app.screen, HomeScreen), "home")
    screen = app.screen
    assert isinstance(screen, HomeScreen)
    await until(pilot, lambda: screen.awaiting is not None and screen.firing is not None
                and screen.deployments is not None, "the three answers")
    return screen


def text(screen: HomeScreen, selector: str) -> str:
    return str(screen.query_one(selector).render())


async def test_home_counts_and_lists_what_needs_attention_live() -> None:
    client = home_client()
    app = fake_app(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_home(pilot)
        title = text(screen, "#home-title")
        assert "2 deployment(s): 1 stopped · 1 running" in title, title
        assert "1 alert(s) firing" in title
        assert "1 run(s) awaiting approval" in title
        assert rows(screen.query_one(NotRunningTable)) == [["fraud-production", "stopped", ""]]
        assert [row[:3] for row in rows(screen.query_one(FiringAlertsTable))] == [
            ["churn-production", "low-f1", "warning"]
        ]
        assert rows(screen.query_one(AwaitingRunsTable)) == [["churn", "2", "v2 → v3", "f1 0.810 → 0.880"]]
        assert "not running: 1 of 2" in text(screen, "#home-deployments-label")
        # Usable at 80x24: every list whole on screen, above the footer.
        for table in screen.query(KeyedTable):
            assert table.region.height >= 2, table.id
            assert table.region.bottom <= 23, table.id
            assert table.region.right <= 80, table.id

        # The alert resolves: the daemon's event makes the view ask again; the list empties and hides.
        asked = len(client.sent_of(requests.AlertsListRequest))
        client.answer(requests.AlertsListRequest, r.AlertList(items=[]))
        client.push(AlertEvent(deployment="churn-production", rule="low-f1", severity="warning", state="resolved"))
        await until(pilot, lambda: "firing alerts: none" in text(screen, "#home-alerts-label"), "alerts re-read")
        assert len(client.sent_of(requests.AlertsListRequest)) > asked
        assert not screen.query_one(FiringAlertsTable).display
        assert "0 alert(s) firing" in text(screen, "#home-title")

        # A registry event (a run pushes its challenger, an approval moves an alias) re-reads the runs soon after.
        client.answer(requests.MaintainRuns, r.MaintainRunList(items=[]))
        client.push(RegistryEvent(kind="alias.moved", model="churn", version=3, alias="production"))
        await until(pilot, lambda: "runs awaiting approval: none" in text(screen, "#home-runs-label"), "runs re-read")

        # Enter on the stopped deployment opens its screen.
        assert screen.focused is screen.query_one(NotRunningTable)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DeploymentScreen), "the deployment's screen")
        detail = app.screen
        assert isinstance(detail, DeploymentScreen)
        assert detail.deployment_name == "fraud-production"


async def test_enter_opens_the_alerts_and_the_maintenance_views() -> None:
    app = fake_app(home_client())
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_home(pilot)
        await pilot.press("tab")
        assert screen.focused is screen.query_one(FiringAlertsTable)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, AlertsScreen), "the alerts view")

    app = fake_app(home_client())
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_home(pilot)
        await pilot.press("tab", "tab")
        assert screen.focused is screen.query_one(AwaitingRunsTable)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, MaintenanceScreen), "the maintenance view")
        maintenance = app.screen
        assert isinstance(maintenance, MaintenanceScreen)
        await until(pilot, lambda: maintenance.current is not None and maintenance.current.id == 2, "run 2 shown")
