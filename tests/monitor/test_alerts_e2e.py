"""A real daemon, a real process deployment whose version's manifest carries an alert rule: the rule applies,
fires after SIGSTOP of the serving process and resolves after SIGCONT; `modeltui watch` subscribed to
"alerts" receives the events; rules are edited and refused through the real CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import DaemonProcess, cli_json
from tests.helpers.models import CLASSIFIER
from tests.helpers.waiting import wait_for

pytestmark = pytest.mark.integration

INTERVAL = 1.0


def classifier(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "modeltui.toml").write_text(
        'name = "sign"\nflavor = "python"\nmodel_file = "predict.py:predict"\nrequirements = []\n\n'
        '[signature]\ninputs = [{name = "x", type = "double"}]\n\n'
        '[[alerts]]\nrule = "up == 0 for 2s"\nseverity = "critical"\nname = "down-fast"\n'
    )
    (path / "predict.py").write_text(CLASSIFIER)
    return path


def firing(d: DaemonProcess, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cli_json(d, "alerts", "--deployment", name)["items"]
    return items


def test_manifest_rule_fires_and_resolves_with_events(daemon_factory: Any, tmp_path: Path) -> None:
    d: DaemonProcess = daemon_factory()
    Path(d.env["MODELTUI_CONFIG"]).write_text(f"[monitor]\nscrape_interval_seconds = {INTERVAL}\n")
    d.start()
    assert d.cli("push", str(classifier(tmp_path / "sign")), "--alias", "production").returncode == 0
    name = cli_json(d, "deploy", "sign@production")["deployment"]["name"]

    rules = cli_json(d, "alerts", "rules", name)["items"]
    assert [(x["name"], x["expr"], x["severity"], x["source"]) for x in rules] == [
        ("down-fast", "up == 0 for 2s", "critical", "manifest")
    ]

    with subprocess.Popen(
        [sys.executable, "-m", "modeltui", "watch", "--topics", "alerts"],
        env=d.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as watcher:
        _watch_alerts(d, name, watcher)

    # Editing rules from the CLI: the first edit copies the manifest's rule; bad rules exit 4 with the reason.
    added = cli_json(d, "alerts", "add", name, "f1 < 0.85 for 10m", "--severity", "warning", "--window", "15m")
    assert [(x["name"], x["source"], x["window_seconds"]) for x in added["items"]] == [
        ("down-fast", "deployment", 300),
        ("f1_lt_0.85", "deployment", 900),
    ]
    human = d.cli("alerts", "rules", name)
    assert human.returncode == 0
    assert "f1 < 0.85 for 10m" in human.stdout
    for bad, reason in (
        ("f2 < 1", "unknown metric 'f2'"),
        ("f1 < x", "bad number 'x'"),
        ("f1 < 1 for 9", "bad duration"),
    ):
        res = d.cli("alerts", "add", name, bad)
        assert res.returncode == 4, res.stderr
        assert reason in res.stderr
    assert d.cli("alerts", "add", name, "f1 < 1", "--window", "soon").returncode == 4
    missing = d.cli("alerts", "rm", name, "nope")
    assert missing.returncode == 3
    assert "no alert rule named 'nope'" in missing.stderr
    assert d.cli("alerts", "add", "no-such-deployment", "f1 < 1").returncode == 3
    cli_json(d, "alerts", "rm", name, "f1_lt_0.85")
    left = cli_json(d, "alerts", "rm", name, "down-fast")["items"]
    assert [(x["name"], x["source"]) for x in left] == [("down-fast", "manifest")]


def _watch_alerts(d: DaemonProcess, name: str, watcher: subprocess.Popen[str]) -> None:
    lines: list[dict[str, Any]] = []

    def read() -> None:
        assert watcher.stdout is not None
        for line in watcher.stdout:
            lines.append(json.loads(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        # The watcher is connected once the daemon counts it (besides the asking CLI).
        wait_for(lambda: cli_json(d, "daemon", "status")["clients"] >= 2, "the watcher to connect", timeout=15)
        time.sleep(0.5)  # its subscribe follows the hello at once
        wait_for(lambda: firing(d, name) == [], "no alert while the deployment answers", timeout=10)

        (pid,) = d.serving_pids(name)
        os.kill(pid, signal.SIGSTOP)
        try:
            got = wait_for(
                lambda: [a for a in firing(d, name) if a["state"] == "firing"], "the alert to fire", timeout=20
            )
            (alert,) = got
            assert (alert["rule"], alert["severity"], alert["value"]) == ("down-fast", "critical", 0.0)
            held = datetime.fromisoformat(alert["since"]) - datetime.fromisoformat(alert["active_since"])
            assert held.total_seconds() >= 2.0, alert  # pending for at least `for`
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_for(lambda: firing(d, name) == [], "the alert to resolve", timeout=20)
        hist = cli_json(d, "alerts", "--deployment", name, "--history")["history"]
        assert [h["state"] for h in hist][:3] == ["resolved", "firing", "pending"]
        wait_for(lambda: any(e["state"] == "resolved" for e in lines), "the resolved event", timeout=10)
        states = [(e["deployment"], e["rule"], e["severity"], e["state"]) for e in lines]
        assert states[:3] == [
            (name, "down-fast", "critical", "pending"),
            (name, "down-fast", "critical", "firing"),
            (name, "down-fast", "critical", "resolved"),
        ]
        assert all(e["topic"] == "alerts" for e in lines)
    finally:
        watcher.send_signal(signal.SIGINT)
        try:
            assert watcher.wait(timeout=10) == 0, watcher.stderr.read() if watcher.stderr else ""
        finally:
            if watcher.poll() is None:
                watcher.kill()
            reader.join(timeout=5)
