"""Real users and groups for access tests (root only): the accounts, and an interpreter they can start.

The same accounts as tests/ops/test_access.py: the daemon runs as the service user ``mtui-svc``, whose primary
group owns its 0660 socket; ``mtui-alice`` is in that group (a viewer), ``mtui-bob`` also in ``mtui-ops`` (an
operator), ``mtui-eve`` in neither (an outsider).
"""

from __future__ import annotations

import atexit
import functools
import grp
import os
import pwd
import shutil
import site
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.helpers.prerequisites import need

SERVICE = "mtui-svc"
OPERATORS = "mtui-ops"
#: user -> supplementary groups
USERS = {SERVICE: [], "mtui-alice": [SERVICE], "mtui-bob": [SERVICE, OPERATORS], "mtui-eve": []}


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
