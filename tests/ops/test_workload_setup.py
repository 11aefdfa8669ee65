"""Workloads' identity, the setting and its edges (docs/security.md, "Workloads run under their own uid"):
without a daemon (fast), a daemon that cannot switch (fail closed), and instances left from before the switch.
The main scenario, an operator's model probing the daemon, is tests/ops/test_workload_identity.py."""

from __future__ import annotations

import functools
import json
import os
import pwd
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon import workload
from daemon.settings import Settings, load_settings
from tests.helpers.prerequisites import need
from tests.helpers.real_users import (
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
from tests.helpers.workloads import CONFIG, probe_model, status

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


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
        "from daemon.settings import load_settings; from daemon import workload; import sys;"
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


def test_a_workers_output_is_taken_back_without_following_its_links(open_tmp: Path) -> None:
    """A hostile worker (or any process of the workload account) links its output to the daemon's files: the
    daemon's copy holds the worker's regular files only, never what a link points at, and is the daemon's."""
    need(os.geteuid() == 0 and shutil.which("useradd") is not None, "root and useradd (to make test users)")
    ensure_accounts()
    run = pwd.getpwnam(WORKLOAD)
    got = workload.setup(settings_for(open_tmp, f'[workloads]\nuser = "{WORKLOAD}"\n'))
    assert got.switches, got.problem
    secret = open_tmp / "state" / "registry.db"
    secret.parent.mkdir(mode=0o700, exist_ok=True)
    secret.write_bytes(b"the daemon's database")
    workdir = got.root / "maintenance" / "run-1"
    output = workdir / "challenger"
    workdir.mkdir(parents=True)
    output.mkdir()
    assert got.make_room(output)
    assert not output.exists()  # the worker makes it, as its own
    script = (
        "import os, sys; out = sys.argv[1]; os.makedirs(out + '/sub');"
        "open(out + '/modeltui.toml', 'w').write('name = 1');"
        "os.symlink(sys.argv[2], out + '/model.skops'); os.symlink(os.path.dirname(sys.argv[2]), out + '/state');"
        "os.mkfifo(out + '/sub/pipe')"
    )
    made = as_user(WORKLOAD, ["python3", "-c", script, str(output), str(secret)], {"PATH": os.environ["PATH"]})
    assert made.returncode == 0, made.stderr
    got.take_back(output)
    assert sorted(p.relative_to(output).as_posix() for p in output.rglob("*")) == ["modeltui.toml", "sub"]
    assert (output / "modeltui.toml").read_text() == "name = 1"
    assert {p.stat().st_uid for p in [output, *output.rglob("*")]} == {os.geteuid()}
    assert (output / "modeltui.toml").stat().st_gid == run.pw_gid  # shared read-only with the workload group
    assert not (workdir / ".challenger.worker").exists()
