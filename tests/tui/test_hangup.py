"""A TUI whose terminal goes away ends at once, without spinning: the real ``modeltui`` on a pty this test
opens (as sshd opens one for ``ssh -t host modeltui``), against a real daemon; the test then does what
sshd does when the client leaves."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from tests.helpers.daemon import DaemonProcess
from tests.helpers.pty_terminal import PtyTui

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

#: Generous bounds for a loaded machine: a TUI that stays is still there after this many seconds...
EXIT_SECONDS = 10.0
#: ...and one that spins on end-of-file burns most of that in CPU time (a clean exit takes a fraction).
CPU_SECONDS = 3.0


@pytest.fixture(scope="module")
def daemon(module_daemon: DaemonProcess) -> DaemonProcess:
    """One daemon for the module: each TUI only connects and lists no models; the test ends the TUI, not it."""
    return module_daemon


def started(daemon: DaemonProcess, *, ignore_hup: bool) -> PtyTui:
    tui = PtyTui(daemon.env, ignore_hup=ignore_hup)
    tui.wait_for("no models")
    return tui


def ends_without_spinning(tui: PtyTui) -> tuple[bool, float]:
    """Whether the TUI exited within EXIT_SECONDS, and the CPU seconds it used meanwhile."""
    process = psutil.Process(tui.proc.pid)
    before = sum(process.cpu_times()[:2])
    used = 0.0
    deadline = time.monotonic() + EXIT_SECONDS
    while time.monotonic() < deadline and tui.proc.poll() is None:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            break
        used = sum(times[:2]) - before
        time.sleep(0.1)
    return tui.proc.poll() is not None, used


@pytest.mark.parametrize("ignore_hup", [False, True], ids=["sighup", "sighup-ignored"])
def test_tui_ends_when_the_terminal_hangs_up(daemon: DaemonProcess, ignore_hup: bool) -> None:
    """sshd closes the master side when the client leaves: SIGHUP, then end of file for whoever reads.
    With SIGHUP ignored (nohup, some session managers) the TUI must still notice and end."""
    tui = started(daemon, ignore_hup=ignore_hup)
    try:
        tui.hang_up()
        ended, cpu = ends_without_spinning(tui)
        assert ended, f"the TUI still runs {EXIT_SECONDS:.0f}s after its terminal hung up (cpu {cpu:.1f}s)"
        assert cpu < CPU_SECONDS, f"the TUI used {cpu:.1f}s of CPU while its terminal was gone"
        # Killed by the signal, or, with it ignored, ended by the watch: 129 (128 + SIGHUP), never "success".
        assert tui.proc.returncode == (-signal.SIGHUP if not ignore_hup else 129)
    finally:
        tui.close()


def test_tui_ends_on_sighup(daemon: DaemonProcess) -> None:
    tui = started(daemon, ignore_hup=False)
    try:
        os.kill(tui.proc.pid, signal.SIGHUP)
        ended, _cpu = ends_without_spinning(tui)
        assert ended, "the TUI survived SIGHUP"
    finally:
        tui.close()
