"""Real users and groups for access tests (root only): the accounts, and an interpreter they can start.

The same accounts as tests/ops/test_access.py: the daemon runs as the service user ``mtui-svc``, whose primary
group owns its 0660 socket; ``mtui-alice`` is in that group (a viewer), ``mtui-bob`` also in ``mtui-ops`` (an
operator), ``mtui-eve`` in neither (an outsider). Workloads (deployments, maintenance workers) run as
``mtui-run``, in no group of the others, the way an install makes ``modeltui-run`` (docs/operations.md).
"""

from __future__ import annotations

import atexit
import functools
import grp
import os
import pwd
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.helpers.daemon import DaemonProcess, daemon_env
from tests.helpers.prerequisites import need

SERVICE = "mtui-svc"
OPERATORS = "mtui-ops"
WORKLOAD = "mtui-run"
#: user -> supplementary groups
USERS = {SERVICE: [], "mtui-alice": [SERVICE], "mtui-bob": [SERVICE, OPERATORS], "mtui-eve": [], WORKLOAD: []}
#: what the unit gives the daemon (config/modeltuid.service: AmbientCapabilities=), to run workloads as WORKLOAD
DAEMON_CAPS = "+setuid,+setgid,+kill"
#: the daemon.toml of the access tests: the service group views, the operators' group operates
ACCESS_CONFIG = f'[access]\nviewers = ["@{SERVICE}"]\noperators = ["@{OPERATORS}"]\n[exporter]\nenabled = false\n'


def _exists(lookup: Callable[[str], object], name: str) -> bool:
    try:
        lookup(name)
    except KeyError:
        return False
    return True


def _make(argv: list[str], lookup: Callable[[str], object], name: str) -> None:
    """Run groupadd/useradd unless ``name`` exists; another test process may be making it at the same time
    (two xdist workers): then the command fails and the account is there, which is all we need."""
    if not _exists(lookup, name):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        assert done.returncode == 0 or _exists(lookup, name), done.stderr


def ensure_accounts() -> None:
    for group in (SERVICE, OPERATORS):
        _make(["groupadd", "--system", group], grp.getgrnam, group)
    for user, groups in USERS.items():
        primary = ["--gid", SERVICE] if user == SERVICE else ["--user-group"]
        argv = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", *primary, user]
        _make(argv, pwd.getpwnam, user)
        subprocess.run(["usermod", "-G", ",".join(groups), user], check=True)


@functools.cache
def python_for_users() -> str:
    """An interpreter other uids can start, with this checkout's packages.

    The venv's own interpreter when anyone may run it; when it lives where other uids cannot reach, a venv of
    the system's python3 of the same minor version, made once under /tmp, whose ``.pth`` names this venv's
    site-packages and the checkout."""
    try:
        subprocess.run([sys.executable, "-c", "pass"], user=65534, group=65534, extra_groups=[], check=True)
        return sys.executable
    except (OSError, subprocess.CalledProcessError):
        pass
    system = shutil.which(f"python{sys.version_info.major}.{sys.version_info.minor}", path="/usr/bin")
    need(system is not None, "a python other users can run")
    assert system is not None
    venv = Path(tempfile.gettempdir()) / f"mtui-test-python-{os.getpid()}"
    if not venv.exists():
        subprocess.run([system, "-m", "venv", "--without-pip", str(venv)], check=True)
        atexit.register(shutil.rmtree, venv, True)
        ask = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        purelib = subprocess.run([str(venv / "bin" / "python"), "-c", ask], capture_output=True, text=True,
                                 check=True).stdout.strip()  # fmt: skip
        paths = [str(Path(__file__).resolve().parents[2]), *site.getsitepackages()]
        (Path(purelib) / "modeltui-tests.pth").write_text("\n".join(paths) + "\n")
    return str(venv / "bin" / "python")


def as_user(user: str, argv: list[str], env: dict[str, str], **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as ``user`` with the user's groups, as a login would give them."""
    pw = pwd.getpwnam(user)
    return subprocess.run(argv, env=env, user=pw.pw_uid, group=pw.pw_gid, extra_groups=USERS[user],
                          capture_output=True, text=True, timeout=120, check=False, **kw)  # fmt: skip


def cli(d: DaemonProcess, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``modeltui ARGS`` as ``user`` against daemon ``d`` (never starting one)."""
    env = {k: v for k, v in d.env.items() if not k.startswith("MODELTUI_")} | {"HOME": "/nonexistent"}
    return as_user(user, [python_for_users(), "-m", "modeltui", "--socket", str(d.socket), "--no-start", *args], env)


def start_system_daemon(d: DaemonProcess) -> None:
    """Start (or start again, after ``d.stop()``) the daemon of :func:`system_daemon_process` as the unit would:
    the service user with the ambient capabilities to run workloads as another uid; return once it answers."""
    svc = pwd.getpwnam(SERVICE)
    base = d.state_dir.parent
    setpriv = [
        shutil.which("setpriv") or "setpriv",
        f"--reuid={svc.pw_uid}",
        f"--regid={svc.pw_gid}",
        "--clear-groups",
        f"--inh-caps={DAEMON_CAPS}",
        f"--ambient-caps={DAEMON_CAPS}",
        "--",
    ]
    with open(base / "daemon.out", "ab") as out:
        d.proc = subprocess.Popen([*setpriv, python_for_users(), "-m", "daemon", "run"], env=d.env, stdout=out,
                                  stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 20
    while not (d.socket.exists() and d.ping()):
        assert d.proc.poll() is None, (base / "daemon.out").read_text()
        assert time.monotonic() < deadline, "the daemon did not start"
        time.sleep(0.05)


def system_daemon_process(config: str, prefix: str) -> Iterator[DaemonProcess]:
    """A system-mode daemon running as the service user with ``config`` as its daemon.toml (plus ``[workloads]
    user = WORKLOAD`` unless it has a ``[workloads]`` section), for a fixture to yield from; it is stopped (and
    what it started killed) afterwards. Started as the unit starts it: the service user with the ambient
    capabilities to run workloads as another uid, and the workload directory made at install beside the state
    directory (here 0700 and the service user's group: the daemon fixes both at start)."""
    need(os.geteuid() == 0 and shutil.which("useradd") is not None, "root and useradd (to make test users)")
    ensure_accounts()
    svc = pwd.getpwnam(SERVICE)
    base = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(base, 0o755)  # the users must reach the socket's directory (the socket's own mode decides)
    (base / "home").mkdir()
    env = daemon_env(base)
    env["MODELTUI_MODE"] = "system"
    if "[workloads]" not in config:
        config += f'[workloads]\nuser = "{WORKLOAD}"\n'
    (base / "daemon.toml").write_text(config)
    for p in (base / "home", base / "daemon.toml"):
        os.chown(p, svc.pw_uid, svc.pw_gid)
    for name in ("run", "state", "state-workloads"):  # like systemd's RuntimeDirectory= and StateDirectory=
        (base / name).mkdir(mode=0o755 if name == "run" else 0o700)
        os.chown(base / name, svc.pw_uid, svc.pw_gid)
    d = DaemonProcess(Path(env["MODELTUI_STATE_DIR"]), Path(env["MODELTUI_SOCKET"]), env=env)
    try:
        start_system_daemon(d)
        yield d
    finally:
        d.stop()
        for pid in d.serving_pids():
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)
