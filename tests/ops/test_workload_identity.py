"""Workloads never hold the daemon's identity (docs/security.md, "Workloads run under their own uid"): with real
users, a system-mode daemon running as ``mtui-svc`` with the unit's capabilities, and ``[workloads] user =
"mtui-run"``.

An operator (``mtui-bob``) pushes and deploys a python-flavour model whose code, when the runtime loads it,
tries what the attack review did: connect to the daemon's socket (where the daemon's own uid is welcomed as
admin) and read ``registry.db``. Both are refused, the serving process runs as ``mtui-run`` with no groups and
no capabilities, and the audit trail names the operator. On the old code the model ran as ``mtui-svc``: it
connected, was welcomed as admin, and read the database.
"""

from __future__ import annotations

import errno
import json
import os
import pwd
import shutil
import stat
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.daemon import DaemonProcess
from tests.helpers.example_data import EXAMPLE_MODEL
from tests.helpers.paths import EXAMPLE
from tests.helpers.real_users import (
    SERVICE,
    WORKLOAD,
    cli,
    start_system_daemon,
    system_daemon_process,
)
from tests.helpers.waiting import wait_for
from tests.helpers.workloads import CONFIG, probe_model, status

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def system_daemon() -> Iterator[DaemonProcess]:
    yield from system_daemon_process(CONFIG, "mtui-workload-")


def test_an_operators_model_runs_as_the_workload_account_and_reaches_nothing_of_the_daemon(
    system_daemon: DaemonProcess,
) -> None:
    d = system_daemon
    run, svc = pwd.getpwnam(WORKLOAD), pwd.getpwnam(SERVICE)
    model = probe_model(d)
    pushed = cli(d, "mtui-bob", "push", str(model))
    assert pushed.returncode == 0, pushed.stderr
    deployed = cli(d, "mtui-bob", "deploy", "probe:1", "--name", "probe", "--json")
    assert deployed.returncode == 0, deployed.stderr
    detail = json.loads(deployed.stdout)["deployment"]
    assert detail["state"] == "running", detail
    events = json.loads(cli(d, "mtui-bob", "ps", "probe", "--events", "5", "--json").stdout)["events"]
    assert any("for mtui-bob" in e["message"] for e in events), events  # whom its instances act for

    body = json.dumps({"inputs": [[0], [1], [2], [3], [4], [5], [6]]}).encode()
    req = urllib.request.Request(
        detail["endpoint"] + "/predict", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        sock_errno, db_errno, role, uid, euid, gid, groups = json.loads(resp.read())["predictions"]
    assert sock_errno == errno.EACCES, f"the workload reached the daemon's socket (errno {sock_errno})"
    assert role == -1, f"the workload was welcomed with role {role}"
    assert db_errno == errno.EACCES, f"the workload could open registry.db (errno {db_errno})"
    assert (uid, euid, gid, groups) == (run.pw_uid, run.pw_uid, run.pw_gid, 0)

    # From outside: every serving process of the deployment runs as the workload account, with nothing more.
    pids = d.serving_pids("probe")
    assert pids
    for pid in pids:
        st = status(pid)
        assert st["Uid"].split() == [str(run.pw_uid)] * 4, st["Uid"]
        assert st["Gid"].split() == [str(run.pw_gid)] * 4, st["Gid"]
        assert str(svc.pw_uid) not in st["Uid"].split()
        assert st["Groups"] == ""
        for caps in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
            assert int(st[caps], 16) == 0, (caps, st[caps])
        assert st["NoNewPrivs"] == "1"

    # A deployment with its own environment starts cold (a fresh interpreter, not a fork of the zygote): the
    # same account, the same refusals.
    cold = cli(d, "mtui-bob", "deploy", "probe:1", "--name", "probe-cold", "--env", "OMP_NUM_THREADS=1", "--json")
    assert cold.returncode == 0, cold.stderr
    endpoint = json.loads(cold.stdout)["deployment"]["endpoint"]
    req = urllib.request.Request(endpoint + "/predict", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert json.loads(resp.read())["predictions"] == [errno.EACCES, errno.EACCES, -1, *[run.pw_uid] * 2,
                                                          run.pw_gid, 0]  # fmt: skip
    (cold_pid,) = d.serving_pids("probe-cold")
    assert status(cold_pid)["Uid"].split() == [str(run.pw_uid)] * 4
    assert cli(d, "mtui-bob", "undeploy", "probe-cold").returncode == 0

    checks = {c["name"]: c for c in json.loads(cli(d, "mtui-bob", "doctor", "--json").stdout)["checks"]}
    assert checks["workloads"]["status"] == "ok", checks["workloads"]
    assert f"run as {WORKLOAD} (uid {run.pw_uid})" in checks["workloads"]["detail"]

    # The daemon's state stays its own; the workload directory is shared with the workload group only.
    assert stat.S_IMODE(d.state_dir.stat().st_mode) == 0o700
    workloads = d.state_dir.with_name(d.state_dir.name + "-workloads")
    st_dir = workloads.stat()
    assert (st_dir.st_uid, st_dir.st_gid, stat.S_IMODE(st_dir.st_mode)) == (svc.pw_uid, run.pw_gid, 0o750)

    # The serving log is still written (through the daemon's descriptor) and the operator can read it.
    logs = cli(d, "mtui-bob", "logs", "probe")
    assert logs.returncode == 0, logs.stderr
    assert "probe [13, 13, -1" in logs.stdout, logs.stdout

    # What the operator caused is audited as the operator; nothing was done as the service account.
    audit = cli(d, "mtui-bob", "audit", "--json")
    assert audit.returncode == 0, audit.stderr
    items = json.loads(audit.stdout)["items"]
    done = {(e["op"], e["user"]) for e in items if e["result"] == "ok"}
    assert ("deployments.create", "mtui-bob") in done, done
    assert not [e for e in items if e["user"] in (SERVICE, WORKLOAD)], items

    # A restarted daemon adopts the instance (found by its uid, or by the zygote's record, which it trusts only
    # for a process of the workload account) instead of starting another; then it can still stop it.
    d.stop()
    start_system_daemon(d)

    def adopted() -> bool:
        got = json.loads(cli(d, "mtui-bob", "ps", "probe", "--json").stdout)["deployment"]
        return bool(got["state"] == "running" and got["health"] == "healthy")

    wait_for(adopted, "the restarted daemon to report the deployment running")
    assert d.serving_pids("probe") == pids
    assert cli(d, "mtui-bob", "undeploy", "probe").returncode == 0
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), "the workload's processes to end")


def test_a_maintenance_runs_workers_run_as_the_workload_account(system_daemon: DaemonProcess) -> None:
    """The evaluation and search workers of an operator's maintenance run: what they write is the workload
    account's (they ran as it), the daemon still reads it back (gate, push), and the run is audited as the
    operator who started it."""
    d = system_daemon
    run = pwd.getpwnam(WORKLOAD)
    model = d.state_dir.parent / "bc"
    shutil.copytree(EXAMPLE, model)
    manifest = model / "modeltui.toml"  # no training command: the built-in search makes the challenger
    manifest.write_text(manifest.read_text().split("[training]")[0])
    for p in [model, *model.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    pushed = cli(d, "mtui-bob", "push", str(model), "--alias", "production")
    assert pushed.returncode == 0, pushed.stderr
    spec = json.dumps({"method": "random", "space": {"clf__C": [0.01, 0.1, 1.0]}, "n_candidates": 3, "cv": 2})
    policy = ["data=train.csv", "holdout=eval.csv", "target=target", "metric=f1", f"search={spec}", "promote=approve"]
    done = cli(d, "mtui-bob", "maintain", "set", EXAMPLE_MODEL, *policy)
    assert done.returncode == 0, done.stderr
    ran = cli(d, "mtui-bob", "maintain", "run-now", EXAMPLE_MODEL, "--wait", "--json")
    got = json.loads(ran.stdout)
    assert got["state"] in ("awaiting_approval", "rejected"), Path(got["log"]).read_text()[-3000:]
    assert [s["state"] for s in got["steps"][:3]] == ["done"] * 3, got["steps"]
    challenger = Path(got["log"]).parent / "challenger"
    owners = {p.stat().st_uid for p in [challenger, *challenger.rglob("*")]}
    assert owners == {run.pw_uid}, owners
    # The daemon's own state is not where the run's files are.
    assert d.state_dir not in challenger.parents

    items = json.loads(cli(d, "mtui-bob", "audit", "--json").stdout)["items"]
    assert ("maintain.run_now", "mtui-bob") in {(e["op"], e["user"]) for e in items if e["result"] == "ok"}
    assert not [e for e in items if e["user"] in (SERVICE, WORKLOAD)], items
