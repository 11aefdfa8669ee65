"""The daemon's end of :mod:`daemon.serving.zygote`: start it in the background, ask it to fork serving
processes, collect the exit statuses it reports. When it is not there (failed to start, died, disabled)
the process backend spawns cold; nothing depends on it but speed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("modeltuid.deploy.zygote")

READY_TIMEOUT = 60.0
SPAWN_TIMEOUT = 10.0
#: How long a spawn waits for a zygote that is still importing before starting cold instead.
READY_WAIT = 2.0


class Zygote:
    def __init__(
        self,
        python: str,
        preload: list[str],
        env: dict[str, str],
        log_path: Path,
        wrap: Callable[[list[str]], list[str]] = list,
    ) -> None:
        self.python = python
        #: the command line as the workload account (daemon.workload); raises when it cannot be
        self.wrap = wrap
        #: our end of the datagram pair that hands each child its log descriptor (the child cannot open the log)
        self._fds: socket.socket | None = None
        self.preload = preload
        self.env = env
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.ready: asyncio.Future[bool] | None = None
        self.exits: dict[int, int] = {}
        #: pids this zygote forked: their exit status arrives from it (it reaps them, not us)
        self.forked: set[int] = set()
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._reader: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin starting it (returns at once; :meth:`spawn` waits for it when needed)."""
        if self.ready is None:
            self.ready = asyncio.get_running_loop().create_future()
            self._reader = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self.ready is not None
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
            ours.setblocking(False)
            argv = [self.python, "-m", "daemon.serving.zygote", "--preload", ",".join(self.preload)]
            with open(fd, "ab") as err, theirs:  # noqa: ASYNC230 - opening a log file is instant
                try:
                    self.proc = await asyncio.create_subprocess_exec(
                        *self.wrap([*argv, "--fd-socket", str(theirs.fileno())]),
                        stdin=asyncio.subprocess.PIPE,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=err,
                        env=self.env,
                        start_new_session=True,
                        pass_fds=(theirs.fileno(),),
                    )
                except BaseException:
                    ours.close()
                    raise
            self._fds = ours
            assert self.proc.stdout is not None
            async with asyncio.timeout(READY_TIMEOUT):
                first = json.loads(await self.proc.stdout.readline() or b"{}")
            if "ready" not in first:
                raise RuntimeError(f"unexpected first line {first!r}")
            log.info("serving zygote %d ready (preloaded %s)", self.proc.pid, ", ".join(first["ready"]) or "nothing")
            self.ready.set_result(True)
            while line := await self.proc.stdout.readline():
                msg = json.loads(line)
                if "exited" in msg:
                    self.exits[int(msg["exited"])] = int(msg["status"])
                elif (fut := self._pending.pop(msg.get("id"), None)) is not None and not fut.done():
                    fut.set_result(msg)
        except (OSError, ValueError, RuntimeError, TimeoutError) as exc:
            log.warning("serving zygote unavailable, starting deployments cold: %s", exc)
        finally:
            if not self.ready.done():
                self.ready.set_result(False)
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(RuntimeError("the zygote ended"))
            self._pending.clear()
            if self._fds is not None:
                self._fds.close()
                self._fds = None
            self.ready = asyncio.get_running_loop().create_future()  # not ready any more
            self.ready.set_result(False)

    async def spawn(
        self, argv: list[str], env: dict[str, str], log_path: Path, record: Path, label: dict[str, Any]
    ) -> tuple[int, int] | None:
        """Fork a serving process; None when the zygote cannot (the caller spawns cold)."""
        if self.ready is None:
            return None
        try:  # still warming up: worth a short wait (a cold start takes longer); then go cold
            ready = await asyncio.wait_for(asyncio.shield(self.ready), READY_WAIT)
        except TimeoutError:
            return None
        if not ready or self.proc is None or self.proc.stdin is None:
            return None
        self._next_id += 1
        req_id = self._next_id
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        request = {"id": req_id, "argv": argv, "env": env, "log": str(log_path), "record": str(record), "label": label}
        try:
            if self._fds is not None:  # the log descriptor first, then the request that uses it (same order)
                log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
                try:
                    socket.send_fds(self._fds, [b"L"], [log_fd])
                finally:
                    os.close(log_fd)
                request["log_fd"] = True
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            async with asyncio.timeout(SPAWN_TIMEOUT):
                await self.proc.stdin.drain()
                answer = await asyncio.shield(fut)
        except (OSError, RuntimeError, TimeoutError, asyncio.CancelledError) as exc:
            # The zygote may still fork: whatever it forks for this request is killed when it answers.
            fut.add_done_callback(self._kill_late_child)
            if isinstance(exc, asyncio.CancelledError):
                raise
            log.warning("zygote spawn failed: %s", exc)
            return None
        if "error" in answer:
            log.warning("zygote could not fork: %s", answer["error"])
            return None
        pid = int(answer["pid"])
        self.exits.pop(pid, None)  # a status left from an earlier process with this pid
        self.forked.add(pid)
        return pid, int(answer["ticks"])

    def _kill_late_child(self, fut: asyncio.Future[dict[str, Any]]) -> None:
        if fut.cancelled() or fut.exception() is not None or "pid" not in fut.result():
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(fut.result()["pid"]), signal.SIGKILL)
        log.warning("killed process %s: the zygote forked it after its request was given up", fut.result()["pid"])

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
