"""Snapshots of the main views at 80x24, fed by the fake client's canned registry (tests/helpers/canned.py):
a change to what a view shows at the standard terminal size shows up as a diff of a text file.

Update the stored screens (tests/tui/snapshots/*.txt) after an intended change, then review their diff::

    MODELTUI_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/tui/test_snapshots.py
"""

from __future__ import annotations

from modeltui.app import ModelTuiApp
from modeltui.screens import AlertsScreen, DeploymentsScreen, MaintenanceScreen
from modeltui.screens.maintenance import MaintenanceRunsTable
from modeltui.widgets import AlertsTable, DeploymentsTable, ModelsTable
from tests.helpers.canned import canned_client
from tests.helpers.fake_client import fake_app
from tests.helpers.snapshots import assert_snapshot, screen_text
from tests.helpers.tui import SIZE, until


def app_of_canned_registry() -> ModelTuiApp:
    return fake_app(canned_client())


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
