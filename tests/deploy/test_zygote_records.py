"""Adopting zygote-forked instances after a daemon restart: the zygote's records lie where workloads write,
so the daemon takes an instance's deployment and ports from its own copy; a workload that rewrites another
deployment's record cannot make the daemon send that deployment's admin token to a port of its own."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

from tests.helpers.daemon import DaemonProcess, cli_json, deployment
from tests.helpers.endpoints import predictions
from tests.helpers.models import python_model
from tests.helpers.waiting import wait_for


def healthy(d: DaemonProcess, name: str) -> dict[str, object]:
    return wait_for(lambda: (x := deployment(d, name))["health"] == "healthy" and x, f"{name} to be healthy")


def test_a_rewritten_zygote_record_is_not_trusted_after_a_restart(daemon: DaemonProcess, tmp_path: Path) -> None:
    d = daemon
    assert d.cli("push", str(python_model(tmp_path / "dbl")), "--alias", "production").returncode == 0
    cli_json(d, "deploy", "dbl:1", "--name", "first")  # starts the zygote (this one may still start cold)
    wait_for(lambda: "serving zygote" in (d.state_dir / "daemon.log").read_text(), "the zygote to be ready")
    victim = cli_json(d, "deploy", "dbl:1", "--name", "victim")["deployment"]
    legacy = cli_json(d, "deploy", "dbl:1", "--name", "legacy")["deployment"]
    records = d.state_dir / "deploy" / "instances"
    path = records / f"{victim['instance']['id']}.json"
    assert path.exists()  # forked from the zygote
    (victim_pid,) = d.serving_pids("victim")
    (legacy_pid,) = d.serving_pids("legacy")
    admin_url = victim["instance"]["admin_url"]

    with socket.socket() as thief:
        thief.bind(("127.0.0.1", 0))
        thief.listen(8)
        thief.setblocking(False)
        d.stop(signal.SIGTERM)
        record = json.loads(path.read_text())
        record["admin_port"] = thief.getsockname()[1]  # what a workload could write there
        path.write_text(json.dumps(record))
        # As if forked before the daemon kept its own records: the zygote's record alone is no ground to adopt.
        (d.state_dir / "deploy" / "forked" / f"{legacy['instance']['id']}.json").unlink()
        d.start()
        adopted = healthy(d, "victim")
        assert adopted["instance"]["admin_url"] == admin_url  # type: ignore[index]
        assert d.serving_pids("victim") == [victim_pid]
        try:
            thief.accept()[0].close()
            raise AssertionError("the daemon connected to the port a rewritten record named")
        except BlockingIOError:
            pass
    restarted = healthy(d, "legacy")
    assert d.serving_pids("legacy") != [legacy_pid]
    assert "no record of its own" in (d.state_dir / "daemon.log").read_text()
    assert predictions(str(restarted["endpoint"]), [2.0]) == [4.0]
    assert predictions(str(victim["endpoint"]), [2.0]) == [4.0]
