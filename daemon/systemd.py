"""systemd integration without extra dependencies: sd_notify, the watchdog, socket activation.

The protocol is small and stable (sd_notify(3), sd_listen_fds(3)): a datagram of ``KEY=VALUE`` lines to
the ``AF_UNIX`` socket named by ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace), and
inherited listening sockets from descriptor 3 on when ``$LISTEN_PID`` is our pid.

:func:`take_environment` reads the variables once and removes them from ``os.environ``, so that nothing
the daemon starts (deployments, maintenance workers) believes it is the service's main process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import MutableMapping
from dataclasses import dataclass

log = logging.getLogger("modeltuid.systemd")

#: The first inherited descriptor (sd_listen_fds(3)).
SD_LISTEN_FDS_START = 3
#: Variables that concern the service's main process only.
VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
#: How long a notification may wait for room in the receiver's queue (it never blocks longer).
SEND_TIMEOUT = 0.5


@dataclass(frozen=True)
class SystemdEnv:
    """What the service manager told this process; all empty when not started by systemd."""

    notify_socket: str | None = None
    #: The watchdog period in microseconds, when it applies to this process.
    watchdog_usec: int | None = None
    #: How many listening sockets were passed, from :data:`SD_LISTEN_FDS_START` on (0: bind our own).
    listen_fds: int = 0

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings: half the period, like sd_watchdog_enabled(3) suggests."""
        return None if not self.watchdog_usec else self.watchdog_usec / 2 / 1_000_000


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def take_environment(environ: MutableMapping[str, str] | None = None, pid: int | None = None) -> SystemdEnv:
    """Read the systemd variables meant for process ``pid`` (default: ours) and remove them from
    ``environ`` (default: ``os.environ``). Inherited listening sockets get close-on-exec."""
    env = os.environ if environ is None else environ
    pid = os.getpid() if pid is None else pid
    values = {name: env.pop(name, None) for name in VARIABLES}
    notify = values["NOTIFY_SOCKET"] or None
    watchdog = _int(values["WATCHDOG_USEC"])
    watchdog_pid = _int(values["WATCHDOG_PID"])
    if watchdog is not None and (watchdog <= 0 or (values["WATCHDOG_PID"] is not None and watchdog_pid != pid)):
        watchdog = None
    listen_fds = 0
    if _int(values["LISTEN_PID"]) == pid:
        listen_fds = max(0, _int(values["LISTEN_FDS"]) or 0)
        for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + listen_fds):
            with contextlib.suppress(OSError):
                os.set_inheritable(fd, False)
    return SystemdEnv(notify_socket=notify, watchdog_usec=watchdog, listen_fds=listen_fds)


class Notifier:
    """Sends sd_notify datagrams; does nothing without a notify socket. Never raises, never blocks for
    long: a lost notification is logged, and systemd's own timeouts take it from there."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        self._failed = False

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def _target(self) -> str | bytes:
        assert self.address is not None
        if self.address.startswith("@"):  # abstract namespace
            return b"\0" + self.address[1:].encode()
        return self.address

    def send(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` fields in one datagram; True when it was sent."""
        if not self.address:
            return False
        data = "\n".join(f.replace("\n", " ") for f in fields).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.settimeout(SEND_TIMEOUT)
            self._sock.sendto(data, self._target())
        except OSError as exc:
            if not self._failed:  # once: a vanished manager must not flood the log
                log.warning("cannot notify systemd at %s: %s", self.address, exc)
                self._failed = True
            return False
        self._failed = False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def stopping(self, status: str = "stopping") -> bool:
        return self.send("STOPPING=1", f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


async def watchdog_loop(notifier: Notifier, interval: float) -> None:
    """Ping the watchdog every ``interval`` seconds from the running loop: when the loop hangs, the pings
    stop and systemd restarts the service (``WatchdogSec=``)."""
    while True:
        notifier.watchdog()
        await asyncio.sleep(interval)


def inherited_listener(env: SystemdEnv) -> int | None:
    """The descriptor of the socket systemd passed (the first, if several), or None."""
    if env.listen_fds < 1:
        return None
    for extra in range(SD_LISTEN_FDS_START + 1, SD_LISTEN_FDS_START + env.listen_fds):
        log.warning("systemd passed %d sockets; using the first, closing descriptor %d", env.listen_fds, extra)
        with contextlib.suppress(OSError):
            os.close(extra)
    return SD_LISTEN_FDS_START
