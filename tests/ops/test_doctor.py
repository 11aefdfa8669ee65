"""``modeltui doctor`` against real daemons: a healthy one passes every check it makes; a configured
ZooKeeper that is not there fails with the fix; no daemon, or a stale socket, fails at the socket with how to
start one. The doctor never starts an embedded daemon itself."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import DaemonProcess

pytestmark = pytest.mark.integration


def doctor(d: DaemonProcess) -> tuple[int, dict[str, dict[str, Any]]]:
    done = d.cli("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    return done.returncode, checks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_healthy_daemon_passes(daemon: DaemonProcess) -> None:
    code, checks = doctor(daemon)
    assert code == 0, checks
    for name in ("socket", "access", "database", "disk", "state directory"):
        assert checks[name]["status"] == "ok", checks[name]
    assert "quick_check ok" in checks["database"]["detail"]
    assert "admin role" in checks["access"]["detail"]  # the daemon's own user
    assert not [c for c in checks.values() if c["status"] == "fail"]
    human = daemon.cli("doctor")
    assert "✓ ok" in human.stdout
    assert "database" in human.stdout


def test_a_missing_zookeeper_fails_with_the_fix(daemon_factory: Callable[[str], DaemonProcess]) -> None:
    d = daemon_factory("d")
    where = f"127.0.0.1:{free_port()}"
    d.env["MODELTUI_ZK_CREDENTIALS"] = "modeltui:doctor-test"  # a cluster needs one ([cluster] zk_auth)
    Path(d.env["MODELTUI_CONFIG"]).write_text(f'[cluster]\nzookeeper = "{where}"\nregistry = "127.0.0.1:5000"\n')
    d.start()
    code, checks = doctor(d)
    assert code == 1
    zk = checks["zookeeper"]
    assert zk["status"] == "fail"
    assert where in zk["detail"]
    assert "start ZooKeeper" in zk["fix"]
    assert checks["database"]["status"] == "ok"  # the rest is still checked
    human = d.cli("doctor")
    assert "[cluster]" in human.stdout  # the fix names the config section, printed as text (not markup)


def test_no_daemon_or_a_stale_socket_fails_at_the_socket(daemon_factory: Callable[[str], DaemonProcess]) -> None:
    d = daemon_factory("d")
    code, checks = doctor(d)
    assert code == 1
    assert checks["socket"]["status"] == "fail"
    assert "no daemon is running" in checks["socket"]["detail"]
    assert "systemctl start modeltuid" in checks["socket"]["fix"]
    assert not d.socket.exists()  # the doctor started nothing

    d.socket.parent.mkdir(parents=True, exist_ok=True)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(d.socket))  # a socket file nobody listens on: what a killed daemon leaves
    stale.close()
    code, checks = doctor(d)
    assert code == 1
    assert checks["socket"]["status"] == "fail"
    assert "stale" in checks["socket"]["fix"]
