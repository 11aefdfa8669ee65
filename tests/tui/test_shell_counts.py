"""The header's counts against the fake client (fast; test_shell.py drives the same App against a real
daemon): what needs the operator, kept current from events (which carry the new states: no call for them)."""

from __future__ import annotations

from dataclasses import replace

from textual.widgets import Static

from daemon.protocol import requests
from daemon.protocol.events import AlertEvent, DeploymentEvent
from modeltui.screens import HelpScreen
from modeltui.screens.home import RUN_LIMIT
from modeltui.widgets import StatusHeader
from tests.helpers.canned import canned_client
from tests.helpers.fake_client import fake_app
from tests.helpers.tui import SIZE, until


async def test_the_header_counts_what_needs_the_operator_and_follows_events_without_calls() -> None:
    client = canned_client()  # fraud-production stopped, one alert firing, one run awaiting approval
    app = fake_app(client)
    async with app.run_test(size=SIZE) as pilot:
        def header() -> str:
            return app.screen.query_one(StatusHeader).text(SIZE[0])

        await until(pilot, lambda: "1 not running · 1 firing · 1 to approve" in header(), "the counts")
        assert header().rstrip().endswith("connected")
        # The header counts the runs the home view lists (the same limit: both say the same number).
        assert {r.limit for r in client.sent_of(requests.MaintainRuns)} == {RUN_LIMIT}  # type: ignore[attr-defined]
        sent = len(client.sent)

        for state in ("starting", "running"):  # a burst
            client.push(DeploymentEvent(kind="changed", deployment="fraud-production", state=state))
        await until(pilot, lambda: "not running" not in header(), "fraud-production runs again")
        assert header().startswith(" local › models  ")
        client.push(DeploymentEvent(kind="changed", deployment="churn-production", state="crashloop"))
        client.push(AlertEvent(deployment="churn-production", rule="low-f1", severity="warning", state="resolved"))
        await until(pilot, lambda: "1 not running · 1 to approve" in header(), "churn crashes, its alert resolved")
        await pilot.pause(0.3)
        assert client.sent[sent:] == []  # the events said it all: nothing asked


async def test_a_narrow_header_keeps_the_state_and_help_lists_every_key() -> None:
    client = canned_client()
    app = fake_app(client)
    async with app.run_test(size=SIZE) as pilot:
        bar = app.screen.query_one(StatusHeader)
        await until(pilot, lambda: "1 to approve" in bar.text(80), "the counts")
        narrow = bar.text(40)  # the counts go first; the state stays
        assert "connected" in narrow
        assert "firing" not in narrow
        app.status = replace(app.status, connection="disconnected", reason="the daemon went away " * 5, retry_in=3)
        text = bar.text(80)
        assert len(text) <= 80
        assert text.startswith(" local › models  ")
        assert "DISCONNECTED, retry in 3s (ctrl+r): the daemon went away" in text
        assert text.rstrip().endswith("…")

        # The PROD label: a prod* name whatever its colour, or a red-ish colour whatever the name.
        for context, color, prod in [("prod-eu", "blue", True), ("live", "#c00000", True), ("live", "dark_red", True),
                                     ("live", "#3060c0", False), ("staging", None, False)]:
            app.status = replace(app.status, context=context, color=color)
            assert bar.text(80).startswith(" PROD ") is prod, (context, color, bar.text(80))

        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "help")
        shown = " ".join(str(s.render()) for s in app.screen.query(Static))
        for words in ("Everywhere", "Reconnect now", "Maintenance", "Hosts:", "Home:", "Filter", "Rollback"):
            assert words in shown, words
