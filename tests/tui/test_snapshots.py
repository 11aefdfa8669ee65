"""Snapshots of the main views at 80x24, fed by the fake client's canned registry (tests/helpers/canned.py):
a change to what a view shows at the standard terminal size shows up as a diff of a text file. The views
reached with a ``:`` command (home, hosts, fleet) are opened that way, as an operator would.

Update the stored screens (tests/tui/snapshots/*.txt) after an intended change, then review their diff::

    MODELTUI_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/tui/test_snapshots.py
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from daemon.protocol import requests
from daemon.protocol import results as r
from modeltui.app import ModelTuiApp
from modeltui.screens import AlertsScreen, DeploymentsScreen, FleetScreen, HomeScreen, MaintenanceScreen, ModelScreen
from modeltui.screens.hosts import HostsScreen, HostsTable
from modeltui.screens.maintenance import MaintenanceRunsTable
from modeltui.widgets import AlertsTable, DeploymentsTable, ModelsTable, VersionsTable
from tests.helpers.canned import MODELS, NOW, SHA, alerts, canned_client
from tests.helpers.fake_client import FakeClient, fake_app
from tests.helpers.snapshots import assert_snapshot, screen_text
from tests.helpers.tui import SIZE, until


def versions(name: str, count: int, aliases: dict[str, int]) -> r.VersionList:
    """``count`` versions of model ``name``, newest first, at fixed times."""
    items = [
        r.VersionSummary(model=name, number=n, digest=SHA, parent=n - 1 or None, flavor="sklearn",
                         message=f"retrained with week {40 + n}'s data", tags={"team": "risk"}, created_by="alice",
                         created_at=NOW - timedelta(days=count - n), size=48_213 * n, file_count=3,
                         aliases=sorted(a for a, v in aliases.items() if v == n))
        for n in range(count, 0, -1)
    ]
    return r.VersionList.model_validate({"items": items, "total": count})


def canned() -> FakeClient:
    """The canned registry, and what the model view asks of its first model."""
    churn = MODELS[0]
    client = canned_client()
    client.answer(requests.GetModel, r.ModelDetail(model=churn))
    client.answer(requests.Log, versions(churn.name, churn.versions, dict(churn.aliases)))
    client.answer(requests.ClusterStatusRequest, r.ClusterStatus(enabled=False))
    return client


def app_of_canned_registry() -> ModelTuiApp:
    return fake_app(canned())


async def command(pilot: Any, line: str) -> None:
    """``:LINE`` enter, typed."""
    await until(pilot, lambda: pilot.app.connection == "connected", "connected")
    await pilot.press("colon", *line, "enter")


async def test_models_view() -> None:
    app = app_of_canned_registry()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.screen.query_one(ModelsTable).row_count == 3, "the models")
        await pilot.pause()
        assert_snapshot("models", screen_text(app))


async def test_deployments_view() -> None:
    app = app_of_canned_registry()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected", "connected")
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, DeploymentsScreen)
                    and app.screen.query_one(DeploymentsTable).row_count == 2, "the deployments")
        await pilot.pause()
        assert_snapshot("deployments", screen_text(app))


async def test_alerts_view() -> None:
    app = app_of_canned_registry()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected", "connected")
        await pilot.press("A")
        await until(pilot, lambda: isinstance(app.screen, AlertsScreen)
                    and app.screen.query_one(AlertsTable).row_count == 1, "the alert")
        await pilot.pause()
        assert_snapshot("alerts", screen_text(app))


async def test_maintenance_view() -> None:
    app = app_of_canned_registry()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected", "connected")
        await pilot.press("M")
        await until(pilot, lambda: isinstance(app.screen, MaintenanceScreen)
                    and app.screen.query_one(MaintenanceRunsTable).row_count == 2
                    and "better by 0.07" in screen_text(app), "the runs and the selected run")
        await pilot.pause()
        assert_snapshot("maintenance", screen_text(app))


async def test_model_view() -> None:
    app = app_of_canned_registry()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.screen.query_one(ModelsTable).row_count == 3, "the models")
        await pilot.press("enter")  # the first row: churn
        await until(pilot, lambda: isinstance(app.screen, ModelScreen)
                    and app.screen.query_one(VersionsTable).row_count == 3, "churn's versions")
        await pilot.pause()
        assert_snapshot("model", screen_text(app))


async def test_home_view() -> None:
    client = canned()
    firing = alerts()  # the home view shows when an alert started (the alerts view: for how long)
    client.answer(requests.AlertsListRequest, firing.model_copy(
        update={"items": [a.model_copy(update={"since": NOW, "active_since": NOW}) for a in firing.items]}))
    app = fake_app(client)
    async with app.run_test(size=SIZE) as pilot:
        await command(pilot, "home")
        await until(pilot, lambda: isinstance(app.screen, HomeScreen) and app.screen.awaiting is not None
                    and app.screen.firing is not None and app.screen.deployments is not None, "the three lists")
        await pilot.pause()
        assert_snapshot("home", screen_text(app))


async def test_hosts_view() -> None:
    app = app_of_canned_registry()
    async with app.run_test(size=SIZE) as pilot:
        await command(pilot, "hosts")
        await until(pilot, lambda: isinstance(app.screen, HostsScreen)
                    and app.screen.query_one(HostsTable).row_count == 2, "this host's deployments")
        await pilot.pause()
        assert_snapshot("hosts", screen_text(app))


async def test_fleet_view() -> None:
    app = app_of_canned_registry()
    async with app.run_test(size=SIZE) as pilot:
        await command(pilot, "fleet")
        await until(pilot, lambda: isinstance(app.screen, FleetScreen) and "churn-production" in screen_text(app)
                    and "loading" not in screen_text(app), "the fleet's deployments and the cluster's state")
        await pilot.pause()
        assert_snapshot("fleet", screen_text(app))
