"""The metrics view says "not enough data" for a feature the daemon has not judged yet (too few live
observations), instead of a verdict from its PSI: a few identical requests must not show 30 shifted
features. The answer is built here as the daemon sends it and shown by the real widgets."""

from __future__ import annotations

from datetime import UTC, datetime

from textual.app import App, ComposeResult

from daemon.protocol import results
from modeltui.widgets import DriftTable, MetricsSummary

NOW = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)


def metrics(drift: dict[str, results.FeatureDrift]) -> results.DeploymentMetrics:
    return results.DeploymentMetrics(
        deployment="d", window_seconds=3600, start=NOW, end=NOW, up=True, last_scrape=NOW, requests=3,
        request_rate=0.0, error_rate=0.0, client_error_rate=0.0, latency_p50_seconds=None,
        latency_p95_seconds=None, latency_p99_seconds=None, labelled=0, accuracy=None, precision=None,
        recall=None, f1=None, drift=drift, step_seconds=60,
    )


def few(psi: float) -> results.FeatureDrift:
    return results.FeatureDrift(psi=psi, ks=0.9, count=3, state="not_enough_data", min_count=50)


class Drift(App[None]):
    def compose(self) -> ComposeResult:
        yield MetricsSummary(id="summary")
        yield DriftTable(id="drift")


async def test_unjudged_features_say_not_enough_data() -> None:
    app = Drift()
    async with app.run_test(size=(120, 30)) as pilot:
        m = metrics({"mean radius": few(7.5), "mean area": few(3.1)})
        app.query_one(MetricsSummary).show(m)
        app.query_one(DriftTable).show(m)
        await pilot.pause()
        table = app.query_one(DriftTable)
        statuses = [str(table.get_row_at(i)[-1]) for i in range(table.row_count)]
        assert statuses == ["not enough data", "not enough data"]
        summary = str(app.query_one(MetricsSummary).render())
        assert "not enough data for 2 feature(s): at most 3 observations, 50 needed" in summary
        assert "SHIFTED" not in summary


async def test_judged_features_keep_their_verdict_beside_unjudged_ones() -> None:
    app = Drift()
    async with app.run_test(size=(120, 30)) as pilot:
        shifted = results.FeatureDrift(psi=0.5, ks=0.3, count=500, state="shifted", min_count=50)
        m = metrics({"mean radius": shifted, "mean area": few(9.0)})
        app.query_one(MetricsSummary).show(m)
        app.query_one(DriftTable).show(m)
        await pilot.pause()
        table = app.query_one(DriftTable)
        by_feature = {str(table.get_row_at(i)[0]): str(table.get_row_at(i)[-1]) for i in range(table.row_count)}
        assert by_feature == {"mean radius": "shifted", "mean area": "not enough data"}
        summary = str(app.query_one(MetricsSummary).render())
        assert "worst mean radius PSI 0.500" in summary
        assert "SHIFTED" in summary
        assert "1 with not enough data" in summary
