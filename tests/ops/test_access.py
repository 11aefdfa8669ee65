"""Access control with real uids, against a real daemon in system mode.

The daemon runs as the service user ``mtui-svc``, whose primary group owns its 0660 socket. Three other users
run the real CLI as their own processes (uid, primary group, supplementary groups):
- ``mtui-alice``: in ``mtui-svc``, so a viewer;
- ``mtui-bob``: also in ``mtui-ops``, so an operator;
- ``mtui-eve``: in neither group, so an outsider.

The outsider cannot connect. The viewer reads but cannot push, deploy or change anything, and that holds for
every request type. The operator can, but cannot do admin things. Each refusal is audited with the uid.
Making the users and groups needs root: under CI that is required, elsewhere the test skips.
"""

from __future__ import annotations

import atexit
import functools
import grp
import json
import os
import pwd
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.protocol import requests as q
from daemon.protocol.access import allows
from tests.helpers.daemon import DaemonProcess, daemon_env
from tests.helpers.paths import EXAMPLE
from tests.helpers.prerequisites import need
from tests.helpers.protocol_samples import REQUESTS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SERVICE = "mtui-svc"
OPERATORS = "mtui-ops"
#: user -> supplementary groups
USERS = {SERVICE: [], "mtui-alice": [SERVICE], "mtui-bob": [SERVICE, OPERATORS], "mtui-eve": []}
CONFIG = f'[access]\nviewers = ["@{SERVICE}"]\noperators = ["@{OPERATORS}"]\n[exporter]\nenabled = false\n'


def ensure_accounts() -> None:
    for group in (SERVICE, OPERATORS):
        try:
            grp.getgrnam(group)
        except KeyError:
            subprocess.run(["groupadd", "--system", group], check=True)
    for user, groups in USERS.items():
        try:
            pwd.getpwnam(user)
        except KeyError:
            primary = ["--gid", SERVICE] if user == SERVICE else ["--user-group"]
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", *primary,
                            user], check=True)  # fmt: skip
        subprocess.run(["usermod", "-G", ",".join(groups), user], check=True)


@functools.cache
def python_for_users() -> str:
    """An interpreter other uids can start, with this checkout's packages.

    The venv's own interpreter when anyone may run it (a Debian python3.11, as on the servers we target).
    When it lives where other uids cannot reach (pyenv under /root, on some build machines): a venv of the
    system's python3 of the same minor version, made once under /tmp, whose ``.pth`` names this venv's
    site-packages and the checkout; processes the daemon starts use it too (its ``sys.executable``)."""
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
    pw = pwd.getpwnam(user)
    return subprocess.run(argv, env=env, user=pw.pw_uid, group=pw.pw_gid, extra_groups=USERS[user],
                          capture_output=True, text=True, timeout=120, check=False, **kw)  # fmt: skip


@pytest.fixture(scope="module")
def system_daemon() -> Iterator[DaemonProcess]:
    """One system-mode daemon for the module (its tests check refusals, the socket's mode, and one operator's
    changes that the others never look at)."""
    need(os.geteuid() == 0 and shutil.which("useradd") is not None, "root and useradd (to make test users)")
    ensure_accounts()
    svc = pwd.getpwnam(SERVICE)
    base = Path(tempfile.mkdtemp(prefix="mtui-access-"))
    os.chmod(base, 0o755)  # the users must reach the socket's directory (the socket's own mode decides)
    (base / "home").mkdir()
    python = python_for_users()
    env = daemon_env(base)
    env["MODELTUI_MODE"] = "system"
    (base / "daemon.toml").write_text(CONFIG)
    for p in (base / "home", base / "daemon.toml"):
        os.chown(p, svc.pw_uid, svc.pw_gid)
    for name in ("run", "state"):  # like systemd's RuntimeDirectory= and StateDirectory=
        (base / name).mkdir(mode=0o755 if name == "run" else 0o700)
        os.chown(base / name, svc.pw_uid, svc.pw_gid)
    d = DaemonProcess(Path(env["MODELTUI_STATE_DIR"]), Path(env["MODELTUI_SOCKET"]), env=env)
    log = open(base / "daemon.out", "wb")  # noqa: SIM115 - closed below
    d.proc = subprocess.Popen([python, "-m", "daemon", "run"], env=env, stdout=log, stderr=subprocess.STDOUT,
                              user=svc.pw_uid, group=svc.pw_gid, extra_groups=[])  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not (d.socket.exists() and d.ping()):
            assert d.proc.poll() is None, (base / "daemon.out").read_text()
            assert time.monotonic() < deadline, "the daemon did not start"
            time.sleep(0.05)
        yield d
    finally:
        d.stop()
        log.close()
        for pid in d.serving_pids():
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)


def cli(d: DaemonProcess, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in d.env.items() if not k.startswith("MODELTUI_")} | {"HOME": "/nonexistent"}
    return as_user(user, [python_for_users(), "-m", "modeltui", "--socket", str(d.socket), "--no-start", *args], env)


def shared_model(d: DaemonProcess) -> Path:
    """The example model where every test user can read it (the client passes open descriptors)."""
    dest = d.state_dir.parent / "model"
    shutil.copytree(EXAMPLE, dest)
    for p in [dest, *dest.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    return dest


def test_socket_mode_and_the_outsider_cannot_connect(system_daemon: DaemonProcess) -> None:
    st = os.stat(system_daemon.socket)
    assert oct(st.st_mode & 0o777) == "0o660"
    assert grp.getgrgid(st.st_gid).gr_name == SERVICE
    got = cli(system_daemon, "mtui-eve", "daemon", "status")
    assert got.returncode != 0
    assert "permission" in got.stderr.lower(), got.stderr
    assert cli(system_daemon, "mtui-alice", "daemon", "status").returncode == 0
    diagnosed = cli(system_daemon, "mtui-eve", "doctor")
    assert diagnosed.returncode == 1
    assert f"add you to group {SERVICE}" in " ".join(diagnosed.stdout.split())


def test_a_viewer_reads_but_cannot_change_anything_an_operator_can(system_daemon: DaemonProcess) -> None:
    d = system_daemon
    model = shared_model(d)

    viewer = cli(d, "mtui-alice", "push", str(model))
    assert viewer.returncode == 6, viewer.stderr  # FORBIDDEN
    assert "needs the operator role" in viewer.stderr
    assert "mtui-alice has the viewer role" in viewer.stderr
    assert cli(d, "mtui-alice", "ls").returncode == 0  # reading is fine

    pushed = cli(d, "mtui-bob", "push", str(model), "--alias", "production")
    assert pushed.returncode == 0, pushed.stderr
    assert cli(d, "mtui-alice", "deploy", "breast-cancer@production", "--name", "bc").returncode == 6
    assert cli(d, "mtui-alice", "alias", "rm", "breast-cancer", "production").returncode == 6
    deployed = cli(d, "mtui-bob", "deploy", "breast-cancer@production", "--name", "bc", "--json")
    assert deployed.returncode == 0, deployed.stderr
    assert json.loads(deployed.stdout)["deployment"]["state"] == "running"
    assert "needs the admin role" in cli(d, "mtui-bob", "gc").stderr
    assert "needs the admin role" in cli(d, "mtui-bob", "rm", "breast-cancer:1", "--force").stderr

    # --readonly: the operator's own client refuses to send a change.
    ro = cli(d, "mtui-bob", "--readonly", "alias", "rm", "breast-cancer", "production")
    assert ro.returncode == 6
    assert "refused by --readonly" in ro.stderr

    # Every refusal is audited with who asked, and so is every change; viewers may not read the trail.
    assert cli(d, "mtui-alice", "audit").returncode == 6
    audit = cli(d, "mtui-bob", "audit", "--json")
    assert audit.returncode == 0, audit.stderr
    items = json.loads(audit.stdout)["items"]
    alice, bob = pwd.getpwnam("mtui-alice").pw_uid, pwd.getpwnam("mtui-bob").pw_uid
    denied = {(e["op"], e["user"], e["uid"]) for e in items if e["result"] == "FORBIDDEN"}
    assert {("deployments.create", "mtui-alice", alice), ("aliases.rm", "mtui-alice", alice)} <= denied, denied
    assert ("audit.list", "mtui-alice", alice) in denied
    assert ("store.gc", "mtui-bob", bob) in denied
    done = {(e["op"], e["user"], e["target"]) for e in items if e["result"] == "ok"}
    assert ("deployments.create", "mtui-bob", "name=bc ref=breast-cancer@production") in done, done
    assert not any("readonly" in e["message"] for e in items)  # that one never reached the daemon


RAW = """
import asyncio, json, sys
from pathlib import Path
from daemon.protocol import requests as q
from modeltui.client import connect

async def main():
    c = await connect(Path(sys.argv[1]))
    out = {}
    for line in sys.stdin.read().splitlines():
        req = q.REQUEST_ADAPTER.validate_json(line)
        try:
            await c.send(req)
            out[req.op] = "ok"
        except Exception as exc:
            out[req.op] = f"{getattr(exc, 'code', '?')}: {getattr(exc, 'message', exc)}"
    await c.close()
    print(json.dumps(out))

asyncio.run(main())
"""


def test_every_request_type_is_refused_below_its_role(system_daemon: DaemonProcess) -> None:
    """Each request type the viewer may not send, sent raw by the viewer's own process (a client that checks
    nothing): the daemon answers FORBIDDEN naming the role."""
    d = system_daemon
    above = [x for x in REQUESTS if isinstance(x, q.BaseRequest) and not allows("viewer", x.role)]
    assert {type(x) for x in above} == {t for t in q.REQUEST_TYPES if t.role != "viewer"}
    sendable = [x for x in above if x.fd_count == 0]  # with descriptors, see test_protocol's fd checks
    env = {k: v for k, v in d.env.items() if not k.startswith("MODELTUI_")}
    lines = "\n".join(x.model_dump_json() for x in sendable)
    ran = as_user("mtui-alice", [python_for_users(), "-c", RAW, str(d.socket)], env, input=lines)
    assert ran.returncode == 0, ran.stderr
    got = json.loads(ran.stdout)
    for req in sendable:
        op = req.op
        assert got[op] == f"FORBIDDEN: {op} needs the {req.role} role; mtui-alice has the viewer role"
