"""The client's transport over SSH: ``ssh -T DEST modeltui-bridge`` carries the frames.

ssh runs with one end of a ``socketpair`` as its stdin and stdout; the other end is the client's connection,
so :class:`~modeltui.client.DaemonClient` works on it unchanged. On the remote host the bridge relays the
bytes to that host's daemon socket, so the daemon sees the bridge's user (SO_PEERCRED) and no port is opened
anywhere: ssh uses the user's own config, keys and agent. ``BatchMode=yes``: nothing can prompt (stdin is the
socket), so a missing key fails at once instead of waiting for a password. Descriptors cannot cross, so the
client says ``can_pass_fds = False`` and refuses requests that would pass them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import shlex
import socket
from collections import deque
from pathlib import Path

from daemon.protocol import frames
from daemon.protocol.transport import FramedSocket

from .client import DaemonClient, DaemonUnavailable, handshake

SSH = "ssh"
#: How long a closing client waits for ssh to end by itself (it does once its stdin is closed) before SIGTERM.
EXIT_GRACE = 2.0


def ssh_command(dest: str, bridge: str, remote_socket: str | None, ssh_args: tuple[str, ...],
                timeout: float) -> list[str]:  # fmt: skip
    """The ssh command line. The user's ``ssh_args`` come before our defaults, so theirs win (ssh keeps the
    first value it gets for an option), except BatchMode, which must stay on. A keepalive every 30 s finds a
    dead link within 90 s for the cost of a few hundred bytes a minute."""
    remote = bridge + (f" --socket {shlex.quote(remote_socket)}" if remote_socket else "")
    return [
        SSH, "-T", "-e", "none", "-o", "BatchMode=yes", *ssh_args,
        "-o", f"ConnectTimeout={max(1, math.ceil(timeout))}",
        "-o", "ServerAliveInterval=30", "-o", "ServerAliveCountMax=3",
        "--", dest, remote,
    ]  # fmt: skip


class _StderrTail:
    """ssh's stderr, drained as it comes (a full pipe would stall ssh) and its last lines kept for errors."""

    def __init__(self, stream: asyncio.StreamReader | None) -> None:
        self.lines: deque[str] = deque(maxlen=20)
        self.task = asyncio.get_running_loop().create_task(self._drain(stream)) if stream else None

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError, ValueError):
            while line := await stream.readline():
                text = line.decode(errors="replace").strip()
                if text:
                    self.lines.append(text)

    async def last(self, wait: float = 0.5) -> str:
        """The last line ssh (or the bridge) wrote, after waiting a little for ssh to finish saying it."""
        if self.task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.task), wait)
        return self.lines[-1] if self.lines else ""

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()


class SshDaemonClient(DaemonClient):
    """A connection through an ssh process; closing it ends that process (no orphans)."""

    def __init__(self, conn: FramedSocket, welcome: frames.Welcome, remote_socket: str | None,
                 proc: asyncio.subprocess.Process, stderr: _StderrTail) -> None:  # fmt: skip
        super().__init__(conn, welcome, Path(remote_socket or "-"))
        self.can_pass_fds = False
        self.proc = proc
        self._stderr = stderr

    async def close(self) -> None:
        await super().close()
        await _end(self.proc)
        self._stderr.cancel()


async def _end(proc: asyncio.subprocess.Process, grace: float = EXIT_GRACE) -> None:
    """Wait ``grace`` seconds for ssh to exit on its closed stdin, then SIGTERM, then SIGKILL."""
    for signal_it in (None, proc.terminate, proc.kill):
        if signal_it is not None:
            with contextlib.suppress(ProcessLookupError):
                signal_it()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), grace if signal_it is None else EXIT_GRACE)
            return


async def connect_ssh(
    name: str,
    dest: str,
    bridge: str,
    *,
    remote_socket: str | None = None,
    ssh_args: tuple[str, ...] = (),
    client_name: str = "modeltui",
    timeout: float = 5.0,  # noqa: ASYNC109
) -> DaemonClient:
    """Start ssh to ``dest`` running ``bridge`` and say hello through it. A host that cannot be reached, a
    refused key or a missing bridge or daemon raises DaemonUnavailable within ``timeout``, naming the context
    and with ssh's (or the bridge's) last stderr line."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        proc = await asyncio.create_subprocess_exec(
            *ssh_command(dest, bridge, remote_socket, ssh_args, timeout),
            stdin=theirs.fileno(), stdout=theirs.fileno(), stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # a terminal's ^C reaches us, and we end ssh in order
        )  # fmt: skip
    except OSError as exc:
        ours.close()
        raise DaemonUnavailable(f"context {name}: cannot run {SSH}: {exc.strerror or exc}") from exc
    finally:
        theirs.close()
    stderr = _StderrTail(proc.stderr)
    conn = FramedSocket(ours, frames.MAX_FRAME_BYTES)
    try:
        welcome = await handshake(conn, f"context {name}", client_name=client_name, timeout=timeout)
    except DaemonUnavailable as exc:
        conn.close()
        await _end(proc, grace=0.2)  # it failed or hangs: no need to wait for a polite end
        said = await stderr.last()
        stderr.cancel()
        why = f"ssh {dest} exited with status {proc.returncode}" if proc.returncode not in (None, 0, -15, -9) else ""
        detail = ": ".join(p for p in (why, said) if p) or exc.message
        raise DaemonUnavailable(f"context {name} ({SSH} {dest}) is unreachable: {detail}") from exc
    except BaseException:
        conn.close()
        await _end(proc, grace=0.2)
        stderr.cancel()
        raise
    return SshDaemonClient(conn, welcome, remote_socket, proc, stderr)
