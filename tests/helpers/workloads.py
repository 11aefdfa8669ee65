"""A python-flavour model that probes what its process can reach, for the workload-identity tests
(tests/ops/test_workload_identity.py, tests/ops/test_workload_setup.py)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.helpers.daemon import DaemonProcess
from tests.helpers.real_users import ACCESS_CONFIG

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
