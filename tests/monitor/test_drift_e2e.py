"""Drift end to end: two deployments of the breast-cancer example (its eval.csv is the reference), one fed
rows like the reference, one fed shifted rows. Only the shifted one shows PSI/KS past 0.2 and fires a
`drift_psi > 0.2` alert — through a real daemon, real runtimes, real scrapes and the real CLI."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonProcess
from tests.deploy.test_process import cli_json, post, wait_for

pytestmark = pytest.mark.integration


def _rows(example: Path) -> tuple[list[str], list[list[float]]]:
    with open(example / "eval.csv") as f:
        table = list(csv.reader(f))
    header = table[0]
    keep = [i for i, c in enumerate(header) if c != "target"]
    return [header[i] for i in keep], [[float(r[i]) for i in keep] for r in table[1:]]


def _send(endpoint: str, rows: list[list[float]]) -> None:
    for start in range(0, len(rows), 50):
        status, body = post(endpoint + "/predict", {"inputs": rows[start : start + 50]})
        assert status == 200, body


def test_shifted_inputs_raise_drift_and_fire_the_alert(daemon_factory: Any, example_dir: Path) -> None:
    d: DaemonProcess = daemon_factory()
    Path(d.env["MODELTUI_CONFIG"]).write_text("[monitor]\nscrape_interval_seconds = 1\n")
    d.start()
    assert d.cli("push", str(example_dir)).returncode == 0
    steady = cli_json(d, "deploy", "breast-cancer:1", "--name", "steady")["deployment"]["endpoint"]
    shifted = cli_json(d, "deploy", "breast-cancer:1", "--name", "shifted")["deployment"]["endpoint"]
    for name in ("steady", "shifted"):
        assert d.cli("alerts", "add", name, "drift_psi > 0.2 for 0", "--name", "drift").returncode == 0
    _, rows = _rows(example_dir)
    _send(steady, rows)  # the reference data itself: no drift
    _send(shifted, [[v * 1.6 + 0.5 for v in row] for row in rows])  # every feature moved up

    def drift(name: str) -> dict[str, Any]:
        got: dict[str, Any] = cli_json(d, "metrics", name, "--window", "5m")["drift"]
        return got

    moved = wait_for(lambda: (x := drift("shifted")) and x, "drift figures of the shifted deployment", timeout=20)
    calm = wait_for(lambda: (x := drift("steady")) and x, "drift figures of the steady deployment", timeout=20)
    assert max(f["psi"] for f in moved.values()) > 0.2
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
