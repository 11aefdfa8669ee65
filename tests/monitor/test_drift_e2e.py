"""Drift end to end: two deployments of the breast-cancer example (its eval.csv is the reference), one fed
rows like the reference, one fed shifted rows. Only the shifted one shows PSI/KS past 0.2 and fires a
`drift_psi > 0.2` alert — through a real daemon, real runtimes, real scrapes and the real CLI. A few
predictions (the README's request.json sent a few times) are not enough data for any verdict."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import DaemonProcess, cli_json
from tests.helpers.endpoints import free_port, post, send_rows
from tests.helpers.example_data import eval_features
from tests.helpers.waiting import wait_for

pytestmark = pytest.mark.integration


def test_shifted_inputs_raise_drift_and_fire_the_alert(daemon_factory: Any, example_dir: Path) -> None:
    d: DaemonProcess = daemon_factory()
    Path(d.env["MODELTUI_CONFIG"]).write_text("[monitor]\nscrape_interval_seconds = 1\n")
    d.start()
    assert d.cli("push", str(example_dir)).returncode == 0
    steady = cli_json(d, "deploy", "breast-cancer:1", "--name", "steady")["deployment"]["endpoint"]
    shifted = cli_json(d, "deploy", "breast-cancer:1", "--name", "shifted")["deployment"]["endpoint"]
    for name in ("steady", "shifted"):
        assert d.cli("alerts", "add", name, "drift_psi > 0.2 for 0", "--name", "drift").returncode == 0
    _, rows = eval_features(example_dir)
    # 3 × the 143 rows: past the minimum sample, in the window and in at least one minute of the plot.
    send_rows(steady, rows * 3)  # the reference data itself: no drift
    send_rows(shifted, [[v * 1.6 + 0.5 for v in row] for row in rows] * 3)  # every feature moved up

    def drift(name: str) -> dict[str, Any]:
        got: dict[str, Any] = cli_json(d, "metrics", name, "--window", "5m")["drift"]
        return got

    moved = wait_for(lambda: (x := drift("shifted")) and x, "drift figures of the shifted deployment", timeout=20)
    calm = wait_for(lambda: (x := drift("steady")) and x, "drift figures of the steady deployment", timeout=20)
    assert max(f["psi"] for f in moved.values()) > 0.2
    assert {f["state"] for f in moved.values()} >= {"shifted"}
    assert {f["state"] for f in calm.values()} == {"ok"}
    assert max(f["ks"] for f in moved.values()) > 0.2
    assert max(f["psi"] for f in calm.values()) < 0.2

    # Over time (the plot's points, per minute against the window's reference): the shifted traffic's minute
    # is past the threshold; the steady deployment has points too (its traffic may straddle two minutes).
    def points(name: str) -> list[float]:
        got = cli_json(d, "metrics", name, "--window", "5m")["points"]
        return [p["drift_psi"] for p in got if p["drift_psi"] is not None]

    assert max(points("shifted")) > 0.2
    assert points("steady")

    def firing(name: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = cli_json(d, "alerts")["items"]
        return [s for s in items if s["deployment"] == name and s["state"] == "firing"]

    assert wait_for(lambda: firing("shifted"), "the drift alert to fire", timeout=20)
    assert firing("steady") == []


def test_a_few_predictions_are_not_enough_data_for_drift(daemon_factory: Any, example_dir: Path) -> None:
    """The README's request.json (2 rows) sent five times: 10 observations per feature, which PSI would call
    shifted by chance alone. The CLI, its --json and the exporter say "not enough data" until the minimum."""
    d: DaemonProcess = daemon_factory()
    port = free_port()
    Path(d.env["MODELTUI_CONFIG"]).write_text(
        f'[monitor]\nscrape_interval_seconds = 1\n\n[exporter]\naddress = "127.0.0.1:{port}"\n'
    )
    d.start()
    assert d.cli("push", str(example_dir), "--alias", "production").returncode == 0
    endpoint = cli_json(d, "deploy", "breast-cancer@production", "--name", "bc")["deployment"]["endpoint"]
    request = json.loads((example_dir / "request.json").read_text())
    for _ in range(5):
        status, body = post(endpoint + "/invocations", request)
        assert status == 200, body

    def drift(observations: int) -> dict[str, Any] | None:
        got: dict[str, Any] = cli_json(d, "metrics", "bc", "--window", "5m")["drift"]
        return got if got and all(f["count"] == observations for f in got.values()) else None

    few = wait_for(lambda: drift(10), "the scrape of 10 observations per feature", timeout=20)
    assert len(few) == 30
    assert {f["state"] for f in few.values()} == {"not_enough_data"}
    assert {f["min_count"] for f in few.values()} == {200}
    assert max(f["psi"] for f in few.values()) > 0.2  # what PSI says of 10 observations: noise
    human = d.cli("metrics", "bc", "--window", "5m")
    assert human.returncode == 0, human.stderr
    assert "not enough data for 30 feature(s): at most 10 observations, 200 needed" in human.stdout
    assert "SHIFTED" not in human.stdout
    points = cli_json(d, "metrics", "bc", "--window", "5m")["points"]
    assert [p["drift_psi"] for p in points if p["drift_psi"] is not None] == []  # nor does the plot
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        exposition = resp.read().decode()
    assert "modeltui_deployment_drift_psi{" not in exposition
    assert "modeltui_deployment_drift_ks{" not in exposition
    assert 'modeltui_deployment_drift_observations{deployment="bc",feature="mean radius"} 10.0' in exposition

    # The same two rows 95 times more: 200 observations, every one on the same two values per feature — a
    # real shift from the reference, now judged.
    data = request["dataframe_split"]["data"] * 95
    status, body = post(endpoint + "/invocations", {"dataframe_split": {**request["dataframe_split"], "data": data}})
    assert status == 200, body
    judged = wait_for(lambda: drift(200), "the scrape of 200 observations per feature", timeout=20)
    assert "not_enough_data" not in {f["state"] for f in judged.values()}
    assert "SHIFTED" in d.cli("metrics", "bc", "--window", "5m").stdout
