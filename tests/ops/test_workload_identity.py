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
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    answer = json.loads(deployed.stdout)
    detail = answer["deployment"]
    assert detail["state"] == "running", detail
    events = json.loads(cli(d, "mtui-bob", "ps", "probe", "--events", "5", "--json").stdout)["events"]
    assert any("for mtui-bob" in e["message"] for e in events), events  # whom its instances act for

    body = json.dumps({"inputs": [[0], [1], [2], [3], [4], [5], [6]]}).encode()
    # a system daemon's loopback endpoints need the token ([serving] auth = "auto"): any local user reaches them
    plain = {"Content-Type": "application/json"}
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(
            urllib.request.Request(detail["endpoint"] + "/predict", data=body, headers=plain), timeout=60
        )
    refused.value.close()
    assert refused.value.code == 401
    headers = plain | {"Authorization": f"Bearer {answer['token']}"}
    req = urllib.request.Request(detail["endpoint"] + "/predict", data=body, headers=headers)
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
    headers = plain | {"Authorization": f"Bearer {json.loads(cold.stdout)['token']}"}
    req = urllib.request.Request(endpoint + "/predict", data=body, headers=headers)
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


#: A training command that copies the champion as the challenger and reports what its process could reach.
PROBE_TRAIN = """\
import json, os, shutil, socket, sys

champion, out = sys.argv[1], sys.argv[2]
for name in os.listdir(champion):
    if os.path.isfile(os.path.join(champion, name)):
        shutil.copyfile(os.path.join(champion, name), os.path.join(out, name))


def attempt(action):
    try:
        action()
        return 0
    except OSError as exc:
        return exc.errno


def connect():
    with socket.socket(socket.AF_UNIX) as s:
        s.connect({socket!r})


def read_db():
    open({db!r}, "rb").close()


report = {{"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "socket": attempt(connect),
          "db": attempt(read_db)}}
with open(os.path.join(out, "probe.json"), "w") as f:
    json.dump(report, f)
"""


def maintained_model(d: DaemonProcess, name: str, training: str, *extra: str) -> None:
    """The example as ``name`` with ``training`` in place of its [training] section, pushed at production by
    the operator, with a policy that trains on train.csv and gates on eval.csv (promotion waits for approval)."""
    model = d.state_dir.parent / name
    shutil.copytree(EXAMPLE, model)
    manifest = model / "modeltui.toml"
    text = manifest.read_text().split("[training]")[0].replace(f'name = "{EXAMPLE_MODEL}"', f'name = "{name}"')
    manifest.write_text(text + training)
    (model / "probe_train.py").write_text(PROBE_TRAIN.format(socket=str(d.socket), db=str(d.state_dir / "registry.db")))
    for p in [model, *model.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    pushed = cli(d, "mtui-bob", "push", str(model), "--alias", "production")
    assert pushed.returncode == 0, pushed.stderr
    policy = ["data=train.csv", "holdout=eval.csv", "target=target", "metric=f1", "promote=approve"]
    done = cli(d, "mtui-bob", "maintain", "set", name, *policy, *extra)
    assert done.returncode == 0, done.stderr


def maintain(d: DaemonProcess, name: str) -> tuple[dict[str, Any], Path]:
    """Run ``name``'s maintenance as the operator; the finished run and its challenger (the daemon's copy)."""
    ran = cli(d, "mtui-bob", "maintain", "run-now", name, "--wait", "--json")
    got: dict[str, Any] = json.loads(ran.stdout)
    assert got["state"] in ("awaiting_approval", "rejected"), Path(got["log"]).read_text()[-3000:]
    assert [s["state"] for s in got["steps"][:3]] == ["done"] * 3, got["steps"]
    return got, Path(got["log"]).parent / "challenger"


def test_a_maintenance_runs_workers_run_as_the_workload_account(system_daemon: DaemonProcess) -> None:
    """An operator's maintenance runs: the training command (and the evaluation and search workers) run as
    the workload account and reach nothing of the daemon; the daemon reads back its own copy of what they
    wrote (gate, metrics, push); the runs are audited as the operator."""
    d = system_daemon
    run, svc = pwd.getpwnam(WORKLOAD), pwd.getpwnam(SERVICE)
    maintained_model(d, "bc-trained", '[training]\ncommand = "python probe_train.py {model_dir} {output}"\n')
    got, challenger = maintain(d, "bc-trained")
    assert got["trigger"] == "manual (mtui-bob)"
    probe = json.loads((challenger / "probe.json").read_text())
    assert probe == {"uid": run.pw_uid, "gid": run.pw_gid, "groups": [], "socket": errno.EACCES,
                     "db": errno.EACCES}  # fmt: skip
    assert d.state_dir not in challenger.parents  # the run's files are not in the daemon's state
    # The daemon's own copy: nothing in it is the workload's (any workload process could change that).
    assert {p.stat().st_uid for p in [challenger, *challenger.rglob("*")]} == {svc.pw_uid}

    # The built-in search too (it rewrites the champion's copied, read-only files in its output).
    spec = json.dumps({"method": "random", "space": {"clf__C": [0.01, 0.1, 1.0]}, "n_candidates": 3, "cv": 2})
    maintained_model(d, "bc-searched", "", f"search={spec}")
    got, challenger = maintain(d, "bc-searched")
    assert [s["name"] for s in got["steps"][:3]] == ["evaluate_champion", "search", "evaluate_challenger"]

    items = json.loads(cli(d, "mtui-bob", "audit", "--json").stdout)["items"]
    runs = [e for e in items if e["op"] == "maintain.run_now" and e["result"] == "ok"]
    assert {e["user"] for e in runs} == {"mtui-bob"}, runs
    assert len(runs) == 2
    assert not [e for e in items if e["user"] in (SERVICE, WORKLOAD)], items
