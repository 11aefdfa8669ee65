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
        self._screen = Screen(columns, rows)
        self._fed = 0
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

    def screen(self) -> Screen:
        """The terminal's screen after every byte so far (fed as they come: no rereading)."""
        new = self.chunks(self._fed)
        self._fed += len(new)
        self._screen.feed(b"".join(d for _t, d in new))
        return self._screen

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


_SEQUENCE = re.compile(
    r"\x1b\[([0-?]*)[ -/]*([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]|[\r\n\b]|[^\x1b\r\n\b]+"
)


class Screen:
    """What a terminal of ``columns`` x ``rows`` shows after the bytes fed to it: cursor positioning, erases
    and text (colours and modes ignored); enough to read which rows Textual drew, not a full emulator."""

    def __init__(self, columns: int = 80, rows: int = 24) -> None:
        self.columns, self.rows = columns, rows
        self.cells = [[" "] * columns for _ in range(rows)]
        self.x = self.y = 0

    def feed(self, data: bytes) -> None:
        for m in _SEQUENCE.finditer(data.decode(errors="replace")):
            text = m.group(0)
            if m.group(2) is not None:
                self._csi(m.group(1), m.group(2))
            elif text == "\r":
                self.x = 0
            elif text == "\n":
                self.y = min(self.rows - 1, self.y + 1)
            elif text == "\b":
                self.x = max(0, self.x - 1)
            elif not text.startswith("\x1b"):
                for ch in text:
                    if ch.isprintable() and self.x < self.columns:
                        self.cells[self.y][self.x] = ch
                        self.x += 1

    def _csi(self, params: str, final: str) -> None:
        if params.startswith("?"):
            return  # private modes
        nums = [int(p) if p.isdigit() else 0 for p in params.split(";")] if params else []
        first = nums[0] if nums and nums[0] else 1
        if final in "Hf":
            self.y = min(self.rows, max(1, first)) - 1
            self.x = min(self.columns, max(1, nums[1] if len(nums) > 1 and nums[1] else 1)) - 1
        elif final == "A":
            self.y = max(0, self.y - first)
        elif final == "B":
            self.y = min(self.rows - 1, self.y + first)
        elif final == "C":
            self.x = min(self.columns - 1, self.x + first)
        elif final == "D":
            self.x = max(0, self.x - first)
        elif final == "G":
            self.x = min(self.columns, first) - 1
        elif final == "d":
            self.y = min(self.rows, first) - 1
        elif final == "K":
            mode = nums[0] if nums else 0
            start, end = {0: (self.x, self.columns), 1: (0, self.x + 1), 2: (0, self.columns)}.get(mode, (0, 0))
            for i in range(start, end):
                self.cells[self.y][i] = " "
        elif final == "J" and (nums[0] if nums else 0) == 2:
            self.cells = [[" "] * self.columns for _ in range(self.rows)]

    def lines(self) -> list[str]:
        return ["".join(row).rstrip() for row in self.cells]

    def text(self) -> str:
        return "\n".join(self.lines())
