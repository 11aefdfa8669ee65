"""A program on a pseudo-terminal of ours (the TUI, ``ssh -tt`` running it elsewhere, or the peer): keys
written to it, every byte it writes kept with when it arrived. Like tests/helpers/pty_terminal.py, but for
any command and with the timings the benchmark needs (first bytes, the end of a redraw)."""

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
import termios
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.helpers.pty_terminal import CONTROL


def _own_terminal() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class PtyProc:
    """``argv`` as a child whose controlling terminal is a pty of ``columns`` x ``rows``."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], *, columns: int = 80, rows: int = 24,
                 cwd: str | None = None) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        full_env = {**env, "TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": str(rows)}
        self._chunks: list[tuple[float, bytes]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(list(argv), stdin=slave, stdout=slave, stderr=slave, env=full_env,
                                     start_new_session=True, cwd=cwd, preexec_fn=_own_terminal)  # fmt: skip
        os.close(slave)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            if not select.select([self.master], [], [], 0.05)[0]:
                continue
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            now = time.monotonic()
            with self._lock:
                self._chunks.append((now, data))

    # -- what it wrote ---------------------------------------------------------------------------------
    def mark(self) -> int:
        with self._lock:
            return len(self._chunks)

    def chunks(self, mark: int = 0) -> list[tuple[float, bytes]]:
        with self._lock:
            return self._chunks[mark:]

    def text(self, mark: int = 0) -> str:
        return CONTROL.sub("", b"".join(d for _t, d in self.chunks(mark)).decode(errors="replace"))

    def bytes_between(self, start: float, end: float) -> int:
        return sum(len(d) for t, d in self.chunks() if start <= t < end)

    def wait_text(self, pattern: str | re.Pattern[str], mark: int = 0, timeout: float = 60.0) -> float:
        """When (monotonic) the output after ``mark`` first matched ``pattern`` (a substring or a regex)."""
        check: Callable[[str], bool] = (
            (lambda s: pattern in s) if isinstance(pattern, str) else (lambda s: pattern.search(s) is not None)
        )
        deadline = time.monotonic() + timeout
        seen = b""
        index = mark
        while time.monotonic() < deadline:
            for t, data in self.chunks(index):
                index += 1
                seen += data
                if check(CONTROL.sub("", seen.decode(errors="replace"))):
                    return t
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.proc.args!r} exited ({self.proc.returncode}):\n{self.tail()}")
            time.sleep(0.01)
        raise TimeoutError(f"no {pattern!r} within {timeout:.0f}s:\n{self.tail()}")

    def settle(self, since: float, mark: int, quiet: float, timeout: float = 5.0) -> tuple[float, float] | None:
        """(first byte, last byte before ``quiet`` s without output), in seconds after ``since``, of what
        came after ``mark``; None when nothing came within ``timeout``."""
        deadline = since + timeout
        while True:
            now = time.monotonic()
            got = self.chunks(mark)
            if got and now - got[-1][0] >= quiet:
                return got[0][0] - since, got[-1][0] - since
            if not got and now > deadline:
                return None
            if now > deadline + 5:  # it never went quiet: report what came so far
                return got[0][0] - since, got[-1][0] - since
            time.sleep(0.002)

    def tail(self, count: int = 1500) -> str:
        return self.text()[-count:]

    # -- driving it ------------------------------------------------------------------------------------
    def key(self, text: str) -> tuple[float, int]:
        """Write ``text``; returns (when, mark) for :meth:`settle`."""
        mark = self.mark()
        now = time.monotonic()
        os.write(self.master, text.encode())
        return now, mark

    def cpu_seconds(self, pid: int | None = None) -> float:
        """utime + stime of ``pid`` (default: the child) from /proc/PID/stat."""
        return proc_cpu(pid or self.proc.pid)

    def close(self) -> None:
        self._stop.set()
        self._reader.join(5)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        with contextlib.suppress(OSError):
            os.close(self.master)


def proc_cpu(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
