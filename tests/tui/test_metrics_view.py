"""The metrics view driven with Pilot against a REAL daemon that scrapes a REAL process deployment every
second: predictions and feedback go to the real endpoint, and what the view shows is checked against
``metrics.get`` for the same window."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Footer, Static, TabbedContent

from daemon.protocol import requests, results
from modeltui.screens import DeploymentScreen, HelpScreen, MetricsScreen
from modeltui.widgets import ClassMetricsTable, DeploymentsTable, DriftTable, MetricsPlot, MetricsSummary
from tests.helpers.daemon import DaemonProcess
from tests.helpers.endpoints import post, send_rows
from tests.helpers.example_data import eval_features
from tests.helpers.tui import SIZE, deploy, make_app, open_deployments, push, query, rows, table_row, until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

XS = [-2.0, -1.0, 1.0, 2.0, 3.0, -3.0, 0.5, -0.5]
#: Truth: positive means 1, except the last two, which the model gets wrong: accuracy 6/8.
TRUTH = [int(x > 0) for x in XS[:-2]] + [0, 1]


def traffic(endpoint: str) -> None:
    """Four predict calls of two rows each, then feedback for all eight predictions."""
    ids: list[str] = []
    for i in range(0, len(XS), 2):
        status, body = post(endpoint + "/predict", {"inputs": [[x] for x in XS[i : i + 2]]})
        assert status == 200, body
        ids += body["ids"]
    status, fb = post(endpoint + "/feedback",
                      {"items": [{"id": i, "label": t} for i, t in zip(ids, TRUTH, strict=True)]})
    assert status == 200, fb
    assert fb["matched"] == len(XS)


async def metrics_get(d: DaemonProcess, name: str, window: int) -> results.DeploymentMetrics:
    return await query(d, requests.MetricsRequest(name=name, window_seconds=window))


async def test_metrics_view_shows_what_metrics_get_returns(scraped: DaemonProcess) -> None:
    dep = await deploy(scraped, "sign@production")
    assert dep.endpoint is not None
    await asyncio.to_thread(traffic, dep.endpoint)
    app = make_app(scraped)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_deployments(pilot)
        await until(pilot, lambda: table_row(screen, dep.name)["state"] == "running", "row")
        screen.query_one(DeploymentsTable).focus()
        await pilot.press("m")
        await until(pilot, lambda: isinstance(app.screen, MetricsScreen), "metrics view")
        view = app.screen
        assert isinstance(view, MetricsScreen)
        assert view.window_seconds == 3600
        # The window keys: 5m.
        await pilot.press("1")
        assert view.window_seconds == 300

        # Re-asked on its timer until the scrapes of all the traffic are in.
        def complete() -> bool:
            m = view.metrics
            return m is not None and m.window_seconds == 300 and m.labelled == len(XS) and m.requests >= 4

        await until(pilot, complete, "the traffic in the view", 30)
        shown = view.metrics
        assert shown is not None
        assert shown.up is True
        # Learned from 1 s scrapes, floored at 2 s; the gaps it sees grow with a busy machine's delays, never to
        # the 60 s ceiling.
        assert 2.0 <= view.refresh_seconds < 10.0, view.refresh_seconds
        truth = await metrics_get(scraped, dep.name, 300)
        assert truth.requests == shown.requests == 4
        assert truth.labelled == shown.labelled == len(XS)
        assert truth.accuracy == shown.accuracy == pytest.approx(6 / 8)

        # The numbers as the user reads them.
        summary = str(view.query_one(MetricsSummary).render())
        assert "requests 4 " in summary
        assert f"rate {shown.request_rate:.3f}/s" in summary
        assert shown.request_rate > 0
        assert f"accuracy {truth.accuracy:.3f}" in summary
        assert "accuracy 0.750" in summary
        assert f"F1 {truth.f1:.3f}" in summary
        assert shown.latency_p95_seconds is not None
        assert shown.latency_p95_seconds == truth.latency_p95_seconds
        assert f"p95 {shown.latency_p95_seconds * 1000:.1f} ms" in summary
        assert "errors 0.00%" in summary
        title = str(view.query_one("#metrics-title", Static).render())
        assert dep.name in title
        assert "window 5m" in title
        assert "UP" in title
        assert "last scrape" in title

        # Plots got data points (the per-minute series of metrics.get).
        rate = view.query_one("#plot-rate", MetricsPlot)
        assert rate.data, "request rate points"
        assert len(rate.data) <= len(shown.points)
        assert max(y for _x, y in rate.data) > 0
        assert view.query_one("#plot-p95", MetricsPlot).data, "p95 points"
        assert view.query_one("#plot-f1", MetricsPlot).data, "F1 points"
        assert view.query_one("#plot-drift", MetricsPlot).region.height >= 5
        for plot in view.query(MetricsPlot):
            assert plot.region.right <= 80, plot.id
            assert plot.region.bottom <= 23, plot.id
        rendered = str(rate.render())
        assert "requests/s (min ago)" in rendered

        # Per class, as metrics.get says.
        await pilot.press("c")
        assert view.query_one(TabbedContent).active == "classes"
        per_class = {r[0]: r for r in rows(view.query_one(ClassMetricsTable))}
        assert set(per_class) == set(truth.per_class) == {"0", "1"}
        for name, c in truth.per_class.items():
            assert per_class[name][1:] == [f"{c.precision:.3f}", f"{c.recall:.3f}", f"{c.f1:.3f}",
                                           f"{c.support:.0f}"]
        await pilot.press("t")
        assert view.query_one(TabbedContent).active == "drift"
        assert len(rows(view.query_one(DriftTable))) == len(truth.drift)

        # Fits at 80x24, with its keys in the footer.
        footer = view.query_one(Footer)
        assert footer.region.y == 23
        keys = " ".join(str(w.render()) for w in footer.query("FooterKey"))
        for key in ("? Help", "Plots", "Drift", "1h"):  # the other windows and Classes: in ? help
            assert key in keys, key
        for key_widget in footer.query("FooterKey"):  # every key visible, none pushed past the edge
            assert key_widget.region.right <= 80, str(key_widget.render())
        assert view.query_one(MetricsSummary).region.right <= 80

        # The timer stops while another screen covers the view, and starts again when it is back.
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await until(pilot, lambda: view.timer is None, "timer stopped", 5)
        answers = view.answers
        await pilot.pause(2.5)
        assert view.answers == answers, "asked while hidden"
        await pilot.press("escape")
        assert app.screen is view
        await until(pilot, lambda: view.answers > answers, "asked again when shown", 5)
        await until(pilot, lambda: view.timer is not None, "timer running", 5)

        # Another window: asked again, and the view says which.
        await pilot.press("4")
        await until(pilot, lambda: view.metrics is not None and view.metrics.window_seconds == 86400, "24h")
        assert "window 24h" in str(view.query_one("#metrics-title", Static).render())

        # Back to the table; m on the detail view opens the same view.
        await pilot.press("escape")
        assert app.screen is screen
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DeploymentScreen), "detail")
        await pilot.press("m")
        await until(pilot, lambda: isinstance(app.screen, MetricsScreen), "metrics from the detail")
        other = app.screen
        assert isinstance(other, MetricsScreen)
        await until(pilot, lambda: other.metrics is not None and other.metrics.requests >= 4, "loaded")


async def test_metrics_of_an_unknown_deployment_notify_and_keep_the_app(scraped: DaemonProcess) -> None:
    app = make_app(scraped)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected", "connected")
        view = MetricsScreen("nope")
        app.push_screen(view)
        await until(pilot, lambda: any("no deployment named" in n.message for n in app._notifications),
                    "an error notification")
        assert app.screen is view
        assert view.metrics is None
        assert app.connection == "connected"
        await pilot.press("escape")
        assert app.screen is not view


async def test_drift_table_and_plot_show_a_shifted_deployment(daemon_factory: Any, example_dir: Path) -> None:
    """The breast-cancer example (its eval.csv is the drift reference) fed every feature moved up."""
    d: DaemonProcess = daemon_factory()
    Path(d.env["MODELTUI_CONFIG"]).write_text("[monitor]\nscrape_interval_seconds = 1\n")
    d.start()
    push(d, example_dir)
    dep = await deploy(d, "breast-cancer:1", name="shifted")
    assert dep.endpoint is not None
    _, data = eval_features(example_dir)
    shifted = [[v * 1.6 + 0.5 for v in row] for row in data] * 3  # past the minimum sample for a drift verdict
    await asyncio.to_thread(send_rows, dep.endpoint, shifted)
    app = make_app(d)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected", "connected")
        view = MetricsScreen(dep.name, window_seconds=300)
        app.push_screen(view)
        await until(pilot, lambda: view.metrics is not None and view.metrics.drift, "drift figures", 30)
        shown = view.metrics
        assert shown is not None
        table = {r[0]: r for r in rows(view.query_one(DriftTable))}
        assert set(table) == set(shown.drift)
        worst = max(shown.drift, key=lambda f: shown.drift[f].psi)
        assert shown.drift[worst].psi > 0.2
        assert table[worst][1:] == [f"{shown.drift[worst].psi:.3f}", f"{shown.drift[worst].ks:.3f}",
                                    f"{shown.drift[worst].count:.0f}", "shifted"]
        assert "SHIFTED" in str(view.query_one(MetricsSummary).render())
        # Over time: the worst feature's PSI of each step (the reference is the window's), past the threshold.
        line = view.query_one("#plot-drift", MetricsPlot)
        assert line.data == [
            (pytest.approx(x), pytest.approx(p.drift_psi)) for p in shown.points if p.drift_psi is not None
            for x in [-(shown.end - p.t).total_seconds() / 60]
        ]  # fmt: skip
        assert max(v for _x, v in line.data) > 0.2
