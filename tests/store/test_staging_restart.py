"""Partial uploads a killed daemon left in staging/ are removed when the next daemon starts (it holds the
state directory's lock, so none of them can still be in flight). A plain GC keeps staging files for its
grace period (an hour by default), so these used to stay."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from tests.helpers.daemon import DaemonProcess
from tests.helpers.prerequisites import need

pytestmark = pytest.mark.integration


def test_partial_uploads_left_by_a_killed_daemon_are_removed_at_start(daemon_factory: object) -> None:
    d: DaemonProcess = daemon_factory().start()  # type: ignore[operator]
    staging = d.state_dir / "staging"
    assert staging.is_dir()
    d.stop(signal.SIGKILL)
    partial = staging / "ingest-abc123"
    with open(partial, "wb") as f:  # sparse: a big partial upload costs no disk here
        f.truncate(999 << 20)
    os.chmod(partial, 0o400)
    d.start()
    assert not partial.exists()
    assert staging.is_dir()
    log = (d.state_dir.parent / "daemon.out").read_text()
    assert "removed 1 partial upload(s) (1047527424 bytes)" in log


@pytest.mark.root
def test_a_staging_file_that_cannot_be_removed_does_not_stop_the_daemon_starting(daemon_factory: object) -> None:
    need(os.geteuid() == 0, "root, to make a file even root cannot unlink (chattr +i)")
    d: DaemonProcess = daemon_factory().start()  # type: ignore[operator]
    d.stop(signal.SIGKILL)
    stuck = d.state_dir / "staging" / "ingest-stuck"
    stuck.write_bytes(b"partial")
    made = subprocess.run(["chattr", "+i", str(stuck)], capture_output=True, text=True)  # even root cannot unlink
    need(made.returncode == 0, f"chattr +i (root, a file system with attributes): {made.stderr.strip()}")
    try:
        d.start()
        assert d.cli("ls").returncode == 0  # it serves
        assert stuck.exists()
        log = (d.state_dir.parent / "daemon.out").read_text()
        assert "could not remove" in log
        assert "ingest-stuck" in log
    finally:
        subprocess.run(["chattr", "-i", str(stuck)], check=False)
