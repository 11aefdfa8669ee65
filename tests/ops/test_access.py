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

import grp
import json
import os
import pwd
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.protocol import requests as q
from daemon.protocol.access import allows
from tests.helpers.daemon import DaemonProcess
from tests.helpers.paths import EXAMPLE
from tests.helpers.protocol_samples import REQUESTS
from tests.helpers.real_users import ACCESS_CONFIG, SERVICE, as_user, cli, python_for_users, system_daemon_process

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]



@pytest.fixture(scope="module")
def system_daemon() -> Iterator[DaemonProcess]:
    """One system-mode daemon for the module (its tests check refusals, the socket's mode, and one operator's
    changes that the others never look at)."""
    yield from system_daemon_process(ACCESS_CONFIG, "mtui-access-")


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
