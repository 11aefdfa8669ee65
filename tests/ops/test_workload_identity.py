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
import functools
import json
import os
import pwd
import shutil
import stat
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.deploy import workload
from daemon.settings import Settings, load_settings
from tests.helpers.daemon import DaemonProcess
from tests.helpers.example_data import EXAMPLE_MODEL
from tests.helpers.paths import EXAMPLE
from tests.helpers.prerequisites import need
from tests.helpers.real_users import (
    ACCESS_CONFIG,
    SERVICE,
    WORKLOAD,
    as_user,
    cli,
    ensure_accounts,
    python_for_users,
    start_system_daemon,
    system_daemon_process,
)
from tests.helpers.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

#: Runs when the runtime imports the model (as the workload): what it could reach, for predict to report.
PROBE = '''\
import asyncio, os, socket, sys

SOCKET, DB = {socket!r}, {db!r}


def attempt(action):
    try:
        action()
        return 0
    except OSError as exc:
        return exc.errno or -1


def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(SOCKET)
    finally:
        s.close()


def read_db():
    with open(DB, "rb") as f:
        f.read(16)


def role():
    """The role the daemon gives this process (0 none, 1 viewer, 2 operator, 3 admin; -1 no connection)."""
    try:
        from modeltui.client import connect as hello

        async def ask():
            c = await hello(__import__("pathlib").Path(SOCKET))
            got = c.welcome.role
            await c.close()
            return got
        return {{None: 0, "viewer": 1, "operator": 2, "admin": 3}}[asyncio.run(ask())]
    except Exception:
        return -1


REPORT = [attempt(connect), attempt(read_db), role(), os.getuid(), os.geteuid(), os.getgid(), len(os.getgroups())]
print("probe", REPORT, flush=True)


def predict(X):
    return [REPORT[int(row[0])] for row in X]
'''


#: Operators may deploy code-running models here (the policy's loosened setting, as before it existed): the
#: uid is what must hold then.
CONFIG = ACCESS_CONFIG + '[policy]\nrun_code = "operators"\n'


@pytest.fixture(scope="module")
def system_daemon() -> Iterator[DaemonProcess]:
    yield from system_daemon_process(CONFIG, "mtui-workload-")


def probe_model(d: DaemonProcess) -> Path:
    """The probing model, where the operator can read it (the client passes open descriptors)."""
    dest = d.state_dir.parent / "probe"
    dest.mkdir()
    (dest / "modeltui.toml").write_text(
        'name = "probe"\nflavor = "python"\nmodel_file = "predict.py:predict"\nrequirements = []\n\n'
        '[signature]\ninputs = [{name = "x", type = "double"}]\n'
    )
    (dest / "predict.py").write_text(PROBE.format(socket=str(d.socket), db=str(d.state_dir / "registry.db")))
    for p in [dest, *dest.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    return dest


def status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


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


def test_without_the_capabilities_workloads_do_not_start_as_the_daemon(tmp_path: Path) -> None:
    """A daemon that cannot switch (here: the workload account does not exist) refuses to deploy and says
    which setting decides; it never runs the model as itself."""
    config = CONFIG + '[workloads]\nuser = "mtui-nosuchuser"\n'
    gen = system_daemon_process(config, "mtui-workload-none-")
    d = next(gen)
    try:
        model = probe_model(d)
        assert cli(d, "mtui-bob", "push", str(model)).returncode == 0
        deployed = cli(d, "mtui-bob", "deploy", "probe:1", "--name", "probe")
        assert deployed.returncode != 0
        assert "[workloads] user" in deployed.stderr + deployed.stdout, deployed.stderr
        assert d.serving_pids("probe") == []
        checks = {c["name"]: c for c in json.loads(cli(d, "mtui-bob", "doctor", "--json").stdout)["checks"]}
        assert checks["workloads"]["status"] == "fail", checks["workloads"]
        assert "[workloads] user = 'mtui-nosuchuser'" in checks["workloads"]["detail"]
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)
        next(gen, None)  # past its yield: the daemon is stopped and its directory removed


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


# -- the setting, without a daemon (fast) ---------------------------------------------------------------------


def settings_for(tmp_path: Path, workloads: str, mode: str = "system") -> Settings:
    (tmp_path / "daemon.toml").write_text(workloads)
    env = {"MODELTUI_MODE": mode, "MODELTUI_STATE_DIR": str(tmp_path / "state")}
    return load_settings(tmp_path / "daemon.toml", environ=env)


def test_a_missing_account_fails_closed_naming_the_setting(tmp_path: Path) -> None:
    got = workload.setup(settings_for(tmp_path, '[workloads]\nuser = "mtui-nosuchuser"\n'))
    assert not got.switches
    assert got.problem is not None
    assert "[workloads] user = 'mtui-nosuchuser'" in got.problem
    assert "no user 'mtui-nosuchuser'" in got.problem
    with pytest.raises(workload.WorkloadError, match="nothing runs as the daemon instead"):
        got.wrap(["python"])


def test_the_default_in_system_mode_is_modeltui_run_and_user_mode_runs_as_the_user(tmp_path: Path) -> None:
    system = workload.setup(settings_for(tmp_path, ""))
    assert system.user == "modeltui-run"  # made at install; missing here, so refused (fail closed)
    user = workload.setup(settings_for(tmp_path, "", mode="user"))
    assert (user.user, user.problem, user.switches) == ("", None, False)
    assert user.wrap(["python", "-V"]) == ["python", "-V"]
    assert user.root == tmp_path / "state"  # laid out as before: everything in the state directory


def test_the_explicit_opt_out_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    got = workload.setup(settings_for(tmp_path, '[workloads]\nuser = ""\n'))
    assert (got.user, got.problem) == ("", None)
    assert any('[workloads] user = ""' in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)


def test_the_daemons_own_user_or_root_is_refused(tmp_path: Path) -> None:
    me = pwd.getpwuid(os.geteuid()).pw_name
    got = workload.setup(settings_for(tmp_path, f'[workloads]\nuser = "{me}"\n'))
    assert got.problem is not None
    assert "own user" in got.problem or "is root" in got.problem


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A directory other users can reach (pytest's tmp_path lives under a 0700 directory of root's)."""
    path = Path(tempfile.mkdtemp(prefix="mtui-workload-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_daemon_without_the_capabilities_refuses(open_tmp: Path) -> None:
    """The service user started without the unit's ambient capabilities: it cannot switch, and says so."""
    tmp_path = open_tmp
    need(os.geteuid() == 0 and shutil.which("useradd") is not None, "root and useradd (to make test users)")
    ensure_accounts()
    svc = pwd.getpwnam(SERVICE)
    os.chmod(tmp_path, 0o755)
    (tmp_path / "state").mkdir(mode=0o700)
    os.chown(tmp_path / "state", svc.pw_uid, svc.pw_gid)
    (tmp_path / "daemon.toml").write_text(f'[workloads]\nuser = "{WORKLOAD}"\n')
    os.chmod(tmp_path / "daemon.toml", 0o644)
    ask = (
        "from daemon.settings import load_settings; from daemon.deploy import workload; import sys;"
        "print(workload.setup(load_settings(sys.argv[1])).problem)"
    )
    env = {"MODELTUI_MODE": "system", "MODELTUI_STATE_DIR": str(tmp_path / "state"), "PATH": os.environ["PATH"]}
    done = as_user(SERVICE, [python_for_users(), "-c", ask, str(tmp_path / "daemon.toml")], env)
    assert done.returncode == 0, done.stderr
    assert "lacks CAP_SETUID, CAP_SETGID, CAP_KILL" in done.stdout, done.stdout
    assert "AmbientCapabilities=" in done.stdout


def test_as_root_the_workload_directory_is_prepared_and_shared_with_the_workload_group(open_tmp: Path) -> None:
    tmp_path = open_tmp
    need(os.geteuid() == 0 and shutil.which("useradd") is not None, "root and useradd (to make test users)")
    ensure_accounts()
    run = pwd.getpwnam(WORKLOAD)
    got = workload.setup(settings_for(tmp_path, f'[workloads]\nuser = "{WORKLOAD}"\n'))
    assert got.switches, got.problem
    root = tmp_path / "state-workloads"
    assert got.root == root
    for sub, mode in (("", 0o750), ("deploy/models", 0o750), ("deploy/instances", 0o770), ("maintenance", 0o750)):
        st = (root / sub).stat()
        assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (run.pw_gid, mode), sub
    argv = got.wrap(["python", "-V"])
    assert argv[1:-2] == [f"--reuid={run.pw_uid}", f"--regid={run.pw_gid}", "--clear-groups", "--inh-caps=-all",
                          "--ambient-caps=-all", "--no-new-privs", "--"]  # fmt: skip
    version = root / "deploy" / "models" / "m-1"
    (version / "sub").mkdir(parents=True, mode=0o700)
    (version / "sub" / "model.bin").write_bytes(b"x")
    os.chmod(version / "sub" / "model.bin", 0o400)
    got.share([version])
    assert stat.S_IMODE((version / "sub").stat().st_mode) == 0o750
    assert stat.S_IMODE((version / "sub" / "model.bin").stat().st_mode) == 0o440
    assert (version / "sub" / "model.bin").stat().st_gid == run.pw_gid
    read = as_user(WORKLOAD, ["cat", str(version / "sub" / "model.bin")], {"PATH": os.environ["PATH"]})
    assert (read.returncode, read.stdout) == (0, "x"), read.stderr


def test_instances_left_from_before_the_switch_are_replaced_not_adopted() -> None:
    """An upgrade (or the opt-out withdrawn): an instance still running as the daemon's own user is stopped at
    start and the deployment starts again as the workload account, instead of serving on with the daemon's
    identity."""
    gen = system_daemon_process(CONFIG + '[workloads]\nuser = ""\n', "mtui-workload-upgrade-")
    d = next(gen)
    try:
        svc, run = pwd.getpwnam(SERVICE), pwd.getpwnam(WORKLOAD)
        model = probe_model(d)
        assert cli(d, "mtui-bob", "push", str(model)).returncode == 0
        for name, extra in (("forked", []), ("cold", ["--env", "OMP_NUM_THREADS=1"])):
            done = cli(d, "mtui-bob", "deploy", "probe:1", "--name", name, *extra)
            assert done.returncode == 0, done.stderr
        before = {name: d.serving_pids(name) for name in ("forked", "cold")}
        for pids in before.values():
            assert [status(pid)["Uid"].split()[0] for pid in pids] == [str(svc.pw_uid)]  # the opt-out: as the daemon
        d.stop()
        config = d.state_dir.parent / "daemon.toml"
        config.write_text(config.read_text().replace('user = ""', f'user = "{WORKLOAD}"'))
        start_system_daemon(d)

        def replaced(name: str) -> list[int]:
            got = json.loads(cli(d, "mtui-bob", "ps", name, "--json").stdout)["deployment"]
            pids = d.serving_pids(name)
            return pids if got["health"] == "healthy" and pids and pids != before[name] else []

        for name in ("forked", "cold"):
            pids = wait_for(functools.partial(replaced, name), f"{name} to run again as the workload account")
            assert [status(pid)["Uid"].split()[0] for pid in pids] == [str(run.pw_uid)]
            assert not any(Path(f"/proc/{pid}").exists() for pid in before[name])
    finally:
        next(gen, None)
