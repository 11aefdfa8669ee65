"""A real daemon scraping a real process deployment; `modeltui metrics` through the real CLI."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import DaemonProcess, cli_json
from tests.helpers.endpoints import post
from tests.helpers.models import classifier
from tests.helpers.waiting import wait_for

pytestmark = pytest.mark.integration

INTERVAL = 1.0
def metrics(d: DaemonProcess, name: str) -> dict[str, Any]:
    return cli_json(d, "metrics", name, "--window", "5m")  # type: ignore[no-any-return]


def test_metrics_of_a_live_deployment(daemon_factory: Any, tmp_path: Path) -> None:
    d: DaemonProcess = daemon_factory()
    Path(d.env["MODELTUI_CONFIG"]).write_text(f"[monitor]\nscrape_interval_seconds = {INTERVAL}\n")
    d.start()
    assert d.cli("push", str(classifier(tmp_path / "sign")), "--alias", "production").returncode == 0
    dep = cli_json(d, "deploy", "sign@production")["deployment"]
    name, endpoint = dep["name"], dep["endpoint"]
    xs = [-2.0, -1.0, 1.0, 2.0, 3.0, -3.0, 0.5, -0.5]
    ids: list[str] = []
    for i in range(0, len(xs), 2):
        status, body = post(endpoint + "/predict", {"inputs": [[x] for x in xs[i : i + 2]]})
        assert status == 200, body
        ids += body["ids"]
    # Truth: positive means 1, except the last two, whose labels say the model got them wrong.
    truth = [int(x > 0) for x in xs[:-2]] + [0, 1]
    status, fb = post(
        endpoint + "/feedback", {"items": [{"id": i, "label": t} for i, t in zip(ids, truth, strict=True)]}
    )
    assert status == 200
    assert fb["matched"] == len(xs)

    got = wait_for(lambda: (m := metrics(d, name))["labelled"] == len(xs) and m["requests"] >= 4 and m, "a scrape")
    assert got["up"] is True
    assert got["request_rate"] > 0
    assert got["requests"] == 4
    assert got["error_rate"] == 0
    for q in ("p50", "p95", "p99"):
        assert got[f"latency_{q}_seconds"] is not None
        assert got[f"latency_{q}_seconds"] > 0
    assert got["accuracy"] == pytest.approx(6 / 8)
    assert set(got["per_class"]) == {"0", "1"}
    assert got["points"], "a time series for plots"
    human = d.cli("metrics", name, "--window", "15m")
    assert human.returncode == 0, human.stderr
    assert "accuracy 0.750" in human.stdout

    # A deployment that stops answering is down within two scrape intervals.
    (pid,) = d.serving_pids(name)
    os.kill(pid, signal.SIGSTOP)
    stopped = time.time()
    try:
        down = wait_for(lambda: (m := metrics(d, name))["up"] is False and m, "the target to be down", timeout=10)
        seen = time.time() - stopped
        assert "no answer" in down["scrape_error"]
        assert seen < 2 * INTERVAL + 1.5, seen  # CLI start-up included
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: metrics(d, name)["up"] is True, "the target to be up again", timeout=10)

    bad = d.cli("metrics", name, "--window", "30s")
    assert bad.returncode != 0
    assert "window_seconds" in bad.stderr
    missing = d.cli("metrics", "nope")
    assert missing.returncode != 0
    assert "no deployment named" in missing.stderr
