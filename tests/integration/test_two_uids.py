"""The daemon runs as one user; the client is another whose files the daemon cannot open. Pushing works
because the client passes open descriptors over the socket, and the version records the client's name."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.models import make_model_dir
from tests.helpers.prerequisites import need

pytestmark = [pytest.mark.integration, pytest.mark.root]

DAEMON_USER = "modeltui-test-d"
CLIENT_USER = "modeltui-test-c"


def ensure_user(name: str, group: str | None = None) -> pwd.struct_passwd:
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
    if group:
        subprocess.run(["usermod", "-a", "-G", group, name], check=True)
    return pwd.getpwnam(name)


def as_user(name: str, args: list[str], env: dict[str, str], **kw: object) -> list[str]:
    return ["setpriv", "--reuid", name, "--regid", str(pwd.getpwnam(name).pw_gid), "--init-groups", "--", *args]


@pytest.fixture
def two_users() -> Iterator[tuple[pwd.struct_passwd, pwd.struct_passwd, Path]]:
    need(os.geteuid() == 0, "root, to create two users")
    need(shutil.which("setpriv") is not None and shutil.which("useradd") is not None, "setpriv and useradd")
    d = ensure_user(DAEMON_USER)
    c = ensure_user(CLIENT_USER, group=grp.getgrgid(d.pw_gid).gr_name)
    base = Path(tempfile.mkdtemp(prefix="modeltui-2uid-", dir="/tmp"))
    os.chmod(base, 0o755)
    yield d, c, base
    shutil.rmtree(base, ignore_errors=True)


def test_push_and_checkout_across_users(two_users: tuple[pwd.struct_passwd, pwd.struct_passwd, Path]) -> None:
    d, c, base = two_users
    state, run, client_home = base / "state", base / "run", base / "client"
    for p, owner, mode in ((state, d, 0o700), (run, d, 0o755), (client_home, c, 0o700)):
        p.mkdir()
        os.chown(p, owner.pw_uid, owner.pw_gid)
        os.chmod(p, mode)
    env = {
        "PATH": os.environ["PATH"],
        "MODELTUI_MODE": "system",
        "MODELTUI_STATE_DIR": str(state),
        "MODELTUI_SOCKET": str(run / "modeltuid.sock"),
        "MODELTUI_CONFIG": str(base / "daemon.toml"),
        "HOME": str(base),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    (base / "daemon.toml").write_text(f'[access]\noperators = ["{CLIENT_USER}"]\n')  # pushing needs the role
    os.chmod(base / "daemon.toml", 0o644)
    model = make_model_dir(client_home / "model", "shared", weights=os.urandom(300_000))
    for p in [model, *model.rglob("*")]:
        os.chown(p, c.pw_uid, c.pw_gid)
        os.chmod(p, 0o700 if p.is_dir() else 0o600)

    blocked = subprocess.run(as_user(DAEMON_USER, ["cat", str(model / "model.skops")], env), env=env,
                             capture_output=True, check=False)
    assert blocked.returncode != 0  # the daemon's user really cannot read the client's file

    daemon = subprocess.Popen(as_user(DAEMON_USER, [sys.executable, "-m", "daemon", "run"], env), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not (run / "modeltuid.sock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        cli = [sys.executable, "-m", "modeltui", "--no-start"]
        push = subprocess.run(as_user(CLIENT_USER, [*cli, "push", str(model), "--json"], env), env=env,
                              capture_output=True, text=True, check=False, timeout=60)
        assert push.returncode == 0, push.stderr + (state / "daemon.log").read_text()
        assert f'"created_by": "{CLIENT_USER}"' in push.stdout
        out = client_home / "out"
        co = subprocess.run(as_user(CLIENT_USER, [*cli, "checkout", "shared:1", str(out)], env), env=env,
                            capture_output=True, text=True, check=False, timeout=60)
        assert co.returncode == 0, co.stderr
        assert (out / "model.skops").read_bytes() == (model / "model.skops").read_bytes()
        assert (out / "model.skops").stat().st_uid == c.pw_uid
        stored = list((state / "objects").rglob("*"))
        assert all(p.stat().st_uid == d.pw_uid for p in stored)
    finally:
        daemon.terminate()
        daemon.wait(15)
