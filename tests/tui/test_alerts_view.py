"""The alerts view and the alert notification, driven with Pilot against a REAL daemon scraping a REAL
process deployment every second: a rule ``up == 0 for 1s`` fires when the serving process is stopped
(SIGSTOP) and resolves once it runs again."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
from textual.widgets import Footer, Static, TabbedContent

from daemon.protocol import requests
from modeltui.screens import AlertsScreen, DeploymentsScreen, HelpScreen, ModelsScreen
from modeltui.widgets import AlertHistoryTable, AlertsTable
from tests.helpers.daemon import DaemonProcess
from tests.helpers.tui import SIZE, deploy, make_app, query, rows, until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

COLUMNS = list(AlertsTable.COLUMNS)


def notes(app: Any, text: str) -> list[Any]:
    return [n for n in app._notifications if text in n.message or text in (n.title or "")]


async def test_an_alert_fires_is_notified_listed_and_resolves(scraped: DaemonProcess) -> None:
    dep = await deploy(scraped, "sign@production")
    added = await query(scraped, requests.AlertAdd(deployment=dep.name, rule="up == 0 for 1s",
                                                   severity="critical", name="gone"))
    assert [r.expr for r in added.items if r.name == "gone"] == ["up == 0 for 1s"]
    (pid,) = scraped.serving_pids(dep.name)
    app = make_app(scraped)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected", "connected")
        assert isinstance(app.screen, ModelsScreen)

        def footer() -> str:
            return " ".join(str(w.render()) for w in app.screen.query_one(Footer).query("FooterKey"))

        # The footer composes its keys after the screen shows: wait for them (a loaded machine read it empty).
        await until(pilot, lambda: "Alerts" in footer(), "the footer's keys")
        await pilot.press("A")
        await until(pilot, lambda: isinstance(app.screen, AlertsScreen), "alerts view")
        view = app.screen
        assert isinstance(view, AlertsScreen)
        table = view.query_one(AlertsTable)
        await until(pilot, lambda: view.alerts is not None, "loaded")
        # Nothing fires yet (the built-in rule 'down', up == 0 for 1m, may be pending if a first scrape of
        # the new instance failed; it cannot fire within this test).
        await until(pilot, lambda: view.alerts is not None
                    and all(a.state != "firing" for a in view.alerts.items), "nothing firing", 10)
        assert "0 firing" in str(view.query_one("#alerts-title", Static).render())

        os.kill(pid, signal.SIGSTOP)
        try:
            # Pending, then firing: the view re-reads on each alert event, without a key press.
            await until(pilot, lambda: f"{dep.name}/gone" in table.items
                        and table.items[f"{dep.name}/gone"].state == "firing", "the alert firing", 30)
            row = dict(zip(COLUMNS, rows(table)[0], strict=True))  # firing rows come first
            assert row["state"] == "firing"
            assert row["severity"] == "critical"
            assert row["deployment"] == dep.name
            assert row["rule"] == "gone"
            assert row["value"] == "0"
            cell = table.get_row_at(0)[COLUMNS.index("state")]
            assert cell.style  # type: ignore[union-attr]  # coloured
            assert "1 firing" in str(view.query_one("#alerts-title", Static).render())
            # The notification, whatever the screen.
            await until(pilot, lambda: notes(app, "alert firing"), "the notification")
            note = notes(app, "alert firing")[0]
            assert note.severity == "error"
            assert dep.name in note.message
            assert "gone" in note.message
            # The same as alerts.list says.
            listed = await query(scraped, requests.AlertsListRequest())
            assert (dep.name, "gone", "firing") in [(a.deployment, a.rule, a.state) for a in listed.items]
            # (the built-in rule 'down', up == 0 for 1m, is pending meanwhile; it is listed too)
            await until(pilot, lambda: set(table.items) == {f"{a.deployment}/{a.rule}" for a in listed.items},
                        "the view lists what alerts.list says")
            # History: pending then firing, newest first.
            await pilot.press("h")
            assert view.query_one(TabbedContent).active == "history"
            states = [r[1] for r in rows(view.query_one(AlertHistoryTable)) if r[4] == "gone"]
            assert states[:2] == ["firing", "pending"], states
        finally:
            os.kill(pid, signal.SIGCONT)
        await until(pilot, lambda: f"{dep.name}/gone" not in table.items, "the alert resolved", 30)
        await until(pilot, lambda: notes(app, "alert resolved"), "resolved notification")
        await until(pilot, lambda: [r[1] for r in rows(view.query_one(AlertHistoryTable)) if r[4] == "gone"][:1]
                    == ["resolved"], "resolved in the history")

        # Fits at 80x24.
        assert view.query_one(AlertHistoryTable).region.right <= 80
        assert view.query_one(Footer).region.y == 23


async def test_a_firing_alert_is_notified_on_any_screen_and_a_is_on_deployments(scraped: DaemonProcess) -> None:
    dep = await deploy(scraped, "sign@production")
    await query(scraped, requests.AlertAdd(deployment=dep.name, rule="up == 0 for 1s", severity="warning",
                                           name="gone"))
    (pid,) = scraped.serving_pids(dep.name)
    app = make_app(scraped)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected", "connected")
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = " ".join(str(s.render()) for s in app.screen.query("Static"))
        assert "Alerts" in text
        assert "Metrics" in text
        os.kill(pid, signal.SIGSTOP)
        try:
            await until(pilot, lambda: notes(app, "alert firing"), "the notification on the help screen", 30)
            assert notes(app, "alert firing")[0].severity == "warning"
        finally:
            os.kill(pid, signal.SIGCONT)
        await pilot.press("escape", "d")
        await until(pilot, lambda: isinstance(app.screen, DeploymentsScreen), "deployments")
        # Every key of the deployments table shows at 80 columns ('A' is listed by ? rather than the footer).
        for key_widget in app.screen.query_one(Footer).query("FooterKey"):
            assert key_widget.region.right <= 80, str(key_widget.render())
        await pilot.press("A")
        await until(pilot, lambda: isinstance(app.screen, AlertsScreen), "alerts from deployments")
