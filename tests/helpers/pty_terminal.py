"""The real ``modeltui`` TUI on a pseudo-terminal the test opens: keys are written to it, and every byte the
TUI writes to its terminal is kept, with when it arrived (what an SSH connection would carry)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable

#: Escape sequences a terminal acts on: CSI (cursor, colours, modes), OSC (titles), and two-byte escapes.
CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


def _become_terminal_owner(ignore_hup: bool) -> None:
    """In the child: make the pty its controlling terminal (as sshd does); ``ignore_hup`` is ``nohup``'s
    SIGHUP disposition, which Python keeps."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    if ignore_hup:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)


class PtyTui:
    """``python -m modeltui`` (the TUI) as a child whose controlling terminal is a pty of ours."""

    def __init__(self, env: dict[str, str], *, columns: int = 120, rows: int = 40, args: tuple[str, ...] = (),
                 ignore_hup: bool = False) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        full_env = {**env, "TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": str(rows)}
        full_env.pop("TEXTUAL", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modeltui", *args],
            stdin=slave, stdout=slave, stderr=slave, env=full_env, start_new_session=True, cwd=env.get("HOME"),
            preexec_fn=lambda: _become_terminal_owner(ignore_hup),
        )
        os.close(slave)
        self._chunks: list[tuple[float, bytes]] = []
        self._lock = threading.Lock()
        self.eof = threading.Event()
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        """Never blocked in ``read``: a blocked read would keep the master open after :meth:`hang_up`."""
        while not self._stop.is_set():
            if not select.select([self.master], [], [], 0.05)[0]:
                continue
            try:
                data = os.read(self.master, 65536)
            except OSError:
                data = b""
            if not data:
                self.eof.set()
                return
            with self._lock:
                self._chunks.append((time.monotonic(), data))

    # -- what the TUI wrote ----------------------------------------------------------------------------
    def mark(self) -> int:
        """A position in the output (the count of chunks so far)."""
        with self._lock:
            return len(self._chunks)

    def since(self, mark: int) -> bytes:
        with self._lock:
            return b"".join(data for _t, data in self._chunks[mark:])

    def bytes_between(self, start: float, end: float) -> int:
        with self._lock:
            return sum(len(data) for t, data in self._chunks if start <= t < end)

    def text_since(self, mark: int) -> str:
        """What was written after ``mark`` without the control sequences (cursor moves, colours)."""
        return CONTROL.sub("", self.since(mark).decode(errors="replace"))

    def wait_for(self, text: str, mark: int = 0, timeout: float = 60.0) -> None:
        """Wait until ``text`` was written after ``mark`` (on one line of the screen)."""
        self.wait_until(lambda: text in self.text_since(mark), f"{text!r} on the screen", timeout)

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"the TUI exited ({self.proc.returncode}) before {what}:\n{self.tail()}")
            time.sleep(0.1)
        raise AssertionError(f"no {what} within {timeout:.0f}s:\n{self.tail()}")

    def tail(self, count: int = 3000) -> str:
        return self.text_since(0)[-count:]

    # -- driving it ------------------------------------------------------------------------------------
    def keys(self, text: str) -> None:
        os.write(self.master, text.encode())

    def hang_up(self) -> None:
        """What sshd does when the SSH client goes away: the terminal's master side closes (the kernel
        hangs the terminal up: SIGHUP to the session, end of file or EIO for whoever reads it)."""
        self._stop_reading()
        os.close(self.master)
        self.master = -1

    def _stop_reading(self) -> None:
        self._stop.set()
        self._reader.join(5)

    def close(self) -> None:
        self._stop_reading()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        if self.master >= 0:
            with contextlib.suppress(OSError):
                os.close(self.master)
            self.master = -1
