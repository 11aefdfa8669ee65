"""Many models pushed through a real daemon's socket, fast: one small artifact uploaded once, then one
``versions.push`` per model naming its sha256 (no descriptor per push), pipelined over a few connections.

Model ``i`` (1-based) is named :func:`model_name`; every 10th gets the alias ``production``, every 7th a
second version, so the list has columns worth filtering and sorting on (tests and bench/tui use it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from daemon.protocol import requests
from modeltui.client import DaemonClient, connect
from tests.helpers.daemon import DaemonProcess, daemon_env

ARTIFACT = b"a tiny model for the scale tests\n"
MANIFEST = b'name = "bulk"\nflavor = "onnx"\nmodel_file = "model.bin"\n'


def model_name(i: int) -> str:
    """The name of model ``i`` (1-based): zero-padded, so name order is number order."""
    return f"bulk-{i:05d}"


async def _upload(client: DaemonClient, files: dict[str, bytes]) -> list[requests.PushFile]:
    """Upload each file once; the pushes then name them by sha256."""
    specs: list[requests.PushFile] = []
    fds: list[int] = []
    try:
        for path, data in files.items():
            with tempfile.TemporaryFile() as f:
                f.write(data)
                f.flush()
                fds.append(os.dup(f.fileno()))
            os.lseek(fds[-1], 0, os.SEEK_SET)
            specs.append(requests.PushFile(path=path, sha256=hashlib.sha256(data).hexdigest(), size=len(data)))
        upload = requests.Upload.model_validate(
            {"files": [{"path": s.path, "size": s.size} for s in specs]}
        )
        await client.send(upload, fds=fds)
    finally:
        for fd in fds:
            os.close(fd)
    return specs


async def load_models(socket: Path, count: int, *, connections: int = 4, window: int = 64) -> float:
    """Push ``count`` models; returns the seconds it took (upload included)."""
    started = time.monotonic()
    clients = [await connect(socket, client_name="bulk-loader") for _ in range(connections)]
    try:
        specs = await _upload(clients[0], {"model.bin": ARTIFACT, "modeltui.toml": MANIFEST})
        second = await _upload(clients[0], {"model.bin": ARTIFACT + b"v2\n", "modeltui.toml": MANIFEST})

        async def lane(lane_no: int) -> None:
            client = clients[lane_no]
            sem = asyncio.Semaphore(window)

            async def one(i: int) -> None:
                async with sem:
                    alias = "production" if i % 10 == 0 else None
                    await client.call(requests.Push(name=model_name(i), files=specs, alias=alias,
                                                    message=f"bulk model {i}"))
                    if i % 7 == 0:
                        await client.call(requests.Push(name=model_name(i), files=second))

            await asyncio.gather(*(one(i) for i in range(lane_no + 1, count + 1, connections)))

        await asyncio.gather(*(lane(n) for n in range(connections)))
    finally:
        for client in clients:
            await client.close()
    return time.monotonic() - started


@contextlib.contextmanager
def bulk_daemon(base: Path, count: int) -> Iterator[tuple[DaemonProcess, float]]:
    """A started daemon in ``base`` holding ``count`` bulk models, and the seconds loading them took; stopped
    on exit. For a module-scoped fixture: loading 10,000 models takes some 25 s."""
    (base / "home").mkdir(parents=True, exist_ok=True)
    env = daemon_env(base)
    daemon = DaemonProcess(Path(env["MODELTUI_STATE_DIR"]), Path(env["MODELTUI_SOCKET"]), env=env)
    try:
        daemon.start()
        seconds = asyncio.run(load_models(daemon.socket, count))
        yield daemon, seconds
    finally:
        daemon.stop()
