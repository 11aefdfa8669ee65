"""The header's counts against the fake client (fast; test_shell.py drives the same App against a real
daemon): what needs the operator, kept current from events at one call per kind per burst."""

from __future__ import annotations

from daemon.protocol import requests
from daemon.protocol import results as r
from daemon.protocol.events import DeploymentEvent
from modeltui.widgets import StatusHeader
from tests.helpers.canned import canned_client, deployment
from tests.helpers.fake_client import fake_app
from tests.helpers.tui import SIZE, until


async def test_the_header_counts_what_needs_the_operator_and_follows_events_cheaply() -> None:
    client = canned_client()  # fraud-production stopped, one alert firing, one run awaiting approval
    app = fake_app(client)
    async with app.run_test(size=SIZE) as pilot:
        def header() -> str:
            return app.screen.query_one(StatusHeader).text(SIZE[0])

        await until(pilot, lambda: "1 not running · 1 firing · 1 to approve" in header(), "the counts")
        assert header().rstrip().endswith("connected")
        asked = len(client.sent_of(requests.ListDeployments))

        client.answer(requests.ListDeployments, r.DeploymentList(items=[
            deployment("churn-production", "churn@production", 2, 8081),
            deployment("fraud-production", "fraud@production", 1, 8083),
        ]))
        for _ in range(5):  # a burst: one re-count
            client.push(DeploymentEvent(kind="changed", deployment="fraud-production", state="running"))
        await until(pilot, lambda: "not running" not in header(), "fraud-production runs again")
        await pilot.pause(0.3)
        assert len(client.sent_of(requests.ListDeployments)) == asked + 1  # one call for the burst
        assert "1 firing · 1 to approve" in header()
        assert not client.sent_of(requests.MaintainRuns)[1:]  # no registry event: runs not asked again
