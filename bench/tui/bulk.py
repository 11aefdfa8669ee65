"""Many models through the daemon's socket, fast: one small model directory is uploaded once, then each
model is one ``versions.push`` of those objects under its own name (pipelined, a few in flight). Used until
tests/helpers/bulk_models.py exists (then ``load_models`` prefers it)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from daemon.protocol import requests as q
from daemon.protocol import results as r
from modeltui.client import DaemonClient, connect

MANIFEST = (
    b'name = "bulk"\nflavor = "sklearn"\nmodel_file = "model.skops"\nrequirements = ["scikit-learn"]\n\n'
    b'[signature]\ninputs = [{name = "x", type = "double"}]\n'
)

#: Names the benchmark's filter can pick a few from: team-purpose-index (e.g. "fraud" in 1 of 8).
TEAMS = ("risk", "growth", "ops", "search", "ads", "fraud", "vision", "speech")
PURPOSES = ("scorer", "ranker", "classifier", "forecast", "embedder")


def model_name(i: int) -> str:
    return f"{TEAMS[i % len(TEAMS)]}-{PURPOSES[(i // len(TEAMS)) % len(PURPOSES)]}-{i:05d}"


async def _upload(client: DaemonClient, directory: Path) -> list[q.PushFile]:
    rel = sorted(os.listdir(directory))
    fds = [os.open(directory / p, os.O_RDONLY | os.O_CLOEXEC) for p in rel]
    try:
        sizes = [os.fstat(fd).st_size for fd in fds]
        req = q.Upload(files=[q.UploadFile(path=p, size=s) for p, s in zip(rel, sizes, strict=True)])
        reply = await client.send(req, fds=fds)
    finally:
        for fd in fds:
            os.close(fd)
    up = r.UploadResult.model_validate_json(reply.raw)
    return [q.PushFile(path=i.path, sha256=i.sha256, size=i.size) for i in up.items]


async def push_models(socket: Path, work: Path, count: int, *, start: int = 0, in_flight: int = 16) -> None:
    """Models ``model_name(start) .. model_name(start + count - 1)``, one version each."""
    directory = work / "bulk-model"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "modeltui.toml").write_bytes(MANIFEST)
    (directory / "model.skops").write_bytes(b"weights")
    client = await connect(socket, client_name="bench-tui-bulk")
    try:
        files = await _upload(client, directory)
        gate = asyncio.Semaphore(in_flight)

        async def one(i: int) -> None:
            async with gate:
                await client.call(q.Push(files=files, name=model_name(i), message=f"bulk {i}"))

        await asyncio.gather(*(one(i) for i in range(start, start + count)))
    finally:
        await client.close()


def load_models(socket: Path, work: Path, count: int, *, start: int = 0) -> None:
    asyncio.run(push_models(socket, work, count, start=start))
