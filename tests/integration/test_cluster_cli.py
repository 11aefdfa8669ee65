"""``cluster status`` and ``ps --all-hosts`` as a subprocess against a real daemon without ZooKeeper (the
multi-daemon ZooKeeper tests live in tests/cluster)."""

from __future__ import annotations

import json

import pytest

from tests.helpers.daemon import DaemonProcess

pytestmark = pytest.mark.integration

NOT_CONFIGURED = "cluster: not configured (set [cluster] zookeeper in the daemon's config)"


@pytest.fixture(scope="module")
def daemon(module_daemon: DaemonProcess) -> DaemonProcess:
    """One daemon for the module: every test here only reads (or is refused)."""
    return module_daemon


def test_cluster_status_without_a_cluster(daemon: DaemonProcess) -> None:
    human = daemon.cli("cluster", "status")
    assert human.returncode == 0, human.stderr
    assert human.stdout.strip() == NOT_CONFIGURED
    assert human.stderr == ""

    res = daemon.cli("cluster", "status", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)  # exactly one JSON document on stdout
    assert doc["enabled"] is False
    assert doc["state"] == "disabled"
    assert doc["hosts"] == []
    assert doc["deployments"] == []
    assert doc["leaders"] == {}


def test_ps_all_hosts_without_a_cluster(daemon: DaemonProcess) -> None:
    res = daemon.cli("ps", "--all-hosts", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["items"] == []
    assert doc["remote"] == []
    assert doc["cluster_state"] == "disabled"
    assert doc["staleness_seconds"] == 0
    assert "warning" in res.stderr  # one line: only this host's deployments
    assert len(res.stderr.strip().splitlines()) == 1

    human = daemon.cli("ps", "--all-hosts")
    assert human.returncode == 0, human.stderr
    assert "no deployments on any host" in human.stdout
    assert "no cluster configured" in human.stderr

    # plain `ps` is unchanged: no cluster fields asked for, no warning
    plain = daemon.cli("ps", "--json")
    assert plain.returncode == 0, plain.stderr
    assert json.loads(plain.stdout)["cluster_state"] is None
    assert plain.stderr == ""


def test_ps_all_hosts_refuses_a_name(daemon: DaemonProcess) -> None:
    res = daemon.cli("ps", "demo", "--all-hosts")
    assert res.returncode == 2
    assert "--all-hosts" in res.stderr
    assert res.stdout == ""
