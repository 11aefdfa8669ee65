"""The TUI's terminal: how much mouse reporting it asks for, and noticing that the terminal went away.

**Mouse.** Textual asks the terminal for every mouse motion (``?1003h``, any-event tracking): each motion
over the window makes the terminal send an event and the TUI repaint the hover, some 6.7 KB over SSH for
every move. The TUI needs clicks and the wheel only (``?1000h`` with SGR coordinates, ``?1006h``), so that is
what it asks for unless ``MODELTUI_MOUSE`` says otherwise: ``clicks`` (the default), ``all`` (Textual's
any-event tracking, for hover effects) or ``off``.

**Hang-up.** When an SSH client goes away, sshd closes the terminal's master side and the kernel hangs the
terminal up. The default SIGHUP ends the TUI at once; but a TUI that ignores SIGHUP (``nohup``, some
session managers) would then read end-of-file forever, and Textual's input thread retries such reads in a
busy loop (a core at ~100 %). :class:`HangupWatch` waits in ``poll`` (no CPU) for the hang-up and ends
the App; if ending it stalls (its writes to the dead terminal fail), the process exits anyway.
"""

from __future__ import annotations

import os
import select
import sys
import threading
from collections.abc import Callable
from typing import Literal

from textual.driver import Driver
from textual.drivers.linux_driver import LinuxDriver

MouseMode = Literal["clicks", "all", "off"]
#: Names the environment variable may give, and what each asks the terminal for.
MOUSE_MODES: tuple[MouseMode, ...] = ("clicks", "all", "off")
MOUSE_ENV = "MODELTUI_MOUSE"
#: Seconds the App has to end cleanly after a hang-up before the process exits regardless.
HANGUP_GRACE_SECONDS = 3.0
#: Exit status after a hang-up (128 + SIGHUP, what a shell reports for a process SIGHUP ended).
HANGUP_STATUS = 129


def mouse_mode(environ: dict[str, str] | None = None) -> MouseMode:
    """The mouse reporting asked for in ``MODELTUI_MOUSE`` (``clicks`` when unset or unknown)."""
    value = (os.environ if environ is None else environ).get(MOUSE_ENV, "").strip().lower()
    return value if value in MOUSE_MODES else "clicks"


class ClickMouseDriver(LinuxDriver):
    """Textual's Linux driver, asking the terminal for button presses, releases and the wheel only: no
    motion events (``?1003h``), so moving the mouse sends nothing and repaints nothing."""

    def _enable_mouse_support(self) -> None:
        if not self._mouse:
            return
        self.write("\x1b[?1000h")  # VT200 mouse: press, release, wheel
        self.write("\x1b[?1006h")  # SGR coordinates (any column)
        self.flush()


class NoMouseDriver(LinuxDriver):
    """Textual's Linux driver, asking the terminal for no mouse reporting at all (``MODELTUI_MOUSE=off``)."""

    def _enable_mouse_support(self) -> None:
        return


def driver_for(default: type[Driver], mode: MouseMode) -> type[Driver]:
    """The driver that asks for ``mode``'s mouse reporting, where Textual would use its Linux driver."""
    if default is not LinuxDriver or mode == "all":
        return default
    return ClickMouseDriver if mode == "clicks" else NoMouseDriver


class HangupWatch:
    """A daemon thread that sleeps in ``poll`` on the terminal until it hangs up (or its input reaches end
    of file), then calls ``on_hangup`` once; if the process is still alive ``grace`` seconds later, it
    exits with :data:`HANGUP_STATUS`."""

    def __init__(self, fd: int, on_hangup: Callable[[], None], *, grace: float = HANGUP_GRACE_SECONDS) -> None:
        self.fd = fd
        self.on_hangup = on_hangup
        self.grace = grace
        self.thread = threading.Thread(target=self._watch, name="modeltui-hangup-watch", daemon=True)

    @classmethod
    def for_stdin(cls, on_hangup: Callable[[], None]) -> HangupWatch | None:
        """A watch on the terminal the TUI reads, or None without one."""
        stdin = sys.__stdin__
        if stdin is None:
            return None
        try:
            return cls(stdin.fileno(), on_hangup)
        except (OSError, ValueError):
            return None

    def start(self) -> None:
        self.thread.start()

    def _watch(self) -> None:
        poller = select.poll()
        poller.register(self.fd, 0)  # no event asked: poll reports only POLLHUP, POLLERR and POLLNVAL
        while not poller.poll():
            pass
        self.on_hangup()
        threading.Event().wait(self.grace)
        os._exit(HANGUP_STATUS)
