"""With the registry's disk full, pushes, tags and alias moves are UNAVAILABLE (exit 7) with a disk-space
message, as the object store's own ENOSPC already was, and work again once space is freed. The state
directory is a small real tmpfs, filled up for real."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.daemon import DaemonProcess, daemon_env
from tests.helpers.models import make_model_dir
from tests.helpers.prerequisites import need

pytestmark = [pytest.mark.integration, pytest.mark.root]


@pytest.fixture
def daemon_on_tmpfs(tmp_path: Path) -> Iterator[DaemonProcess]:
    need(os.geteuid() == 0 and shutil.which("mount") is not None, "root, to mount a small tmpfs")
    base = tmp_path / "d"
    (base / "home").mkdir(parents=True)
    env = daemon_env(base)
    state = Path(env["MODELTUI_STATE_DIR"])
    state.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "modeltui-test", str(state)], check=True)
    d = DaemonProcess(state, Path(env["MODELTUI_SOCKET"]), env=env)
    try:
        yield d.start()
    finally:
        d.stop()
        subprocess.run(["umount", str(state)], check=False)


def fill(path: Path) -> None:
    """Write zeros until the file system says it is full."""
    with contextlib.suppress(OSError), open(path, "wb") as f:
        while True:
            f.write(bytes(1 << 16))
            f.flush()


def test_a_full_disk_makes_registry_writes_unavailable_with_a_disk_space_message(
    daemon_on_tmpfs: DaemonProcess, tmp_path: Path
) -> None:
    d = daemon_on_tmpfs
    pushed = d.cli("push", str(make_model_dir(tmp_path / "m1", "m")))
    assert pushed.returncode == 0, pushed.stderr
    filler = d.state_dir / "filler"
    fill(filler)
    for args in (
        ("tag", "m:1", "stage=full"),
        ("alias", "set", "m", "production", "1"),
        ("push", str(make_model_dir(tmp_path / "m2", "m", weights=b"w2"))),
    ):
        res = d.cli(*args)
        assert res.returncode == 7, (args, res.stderr)
        assert "no space left" in res.stderr, res.stderr
    log = (d.state_dir.parent / "daemon.out").read_text()
    assert "Traceback" not in log  # refusals, and the audit entries that could not be written, in one line each
    filler.unlink()
    assert d.cli("tag", "m:1", "stage=room").returncode == 0
    assert d.cli("alias", "set", "m", "production", "1").returncode == 0
