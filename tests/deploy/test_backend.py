"""The Backend interface: a backend implements what every backend must do (start, wait, stop, discover, logs,
follow); what only some do (warm-up, log rotation, log removal, image pruning, an engine to ping, close)
defaults to nothing, so the manager calls it on any backend. Fast: the "instance" is an asyncio server in
this process answering ``/health``, the registry a real one in a temporary directory."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from daemon.deploy import manager as manager_module
from daemon.deploy.base import Backend, Instance, InstanceSpec, ProgressLine
from daemon.deploy.manager import DeploymentManager
from daemon.protocol import requests as q
from daemon.protocol.events import DeploymentEvent, Event
from daemon.registry.service import Registry
from daemon.settings import load_settings
from tests.helpers.models import IRIS_MANIFEST


class MinimalBackend(Backend):
    """Only the abstract methods: each instance is a server on its admin port that answers 200."""

    name = "process"

    def __init__(self) -> None:
        self.servers: dict[str, asyncio.Server] = {}

    async def start(self, spec: InstanceSpec, progress: ProgressLine) -> Instance:
        async def healthy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readline()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            writer.close()

        self.servers[spec.instance_id] = await asyncio.start_server(healthy, "127.0.0.1", spec.admin_port)
        return Instance(
            backend=self.name,
            deployment=spec.deployment,
            instance_id=spec.instance_id,
            version=spec.version,
            key=spec.instance_id,
            admin_port=spec.admin_port,
            public_port=spec.public_port,
            started_at=datetime.now(UTC),
        )

    async def wait(self, instance: Instance) -> int | None:
        server = self.servers.get(instance.key)
        if server is not None:
            await server.wait_closed()
        return 0

    async def stop(self, instance: Instance, grace: float = 10.0) -> None:
        server = self.servers.pop(instance.key, None)
        if server is not None:
            server.close()

    async def discover(self) -> list[Instance]:
        return []

    async def logs(self, instance: Instance, tail: int) -> list[str]:
        return []

    async def follow(self, instance: Instance) -> AsyncIterator[list[str]]:
        return
        yield []


class MinimalImageBackend(MinimalBackend):
    """Says it builds images but prunes none of its own: the default prune is used."""

    name = "docker"
    builds_images = True


def push_model(reg: Registry, directory: Path) -> None:
    directory.mkdir()
    files = []
    for name, data in (("modeltui.toml", IRIS_MANIFEST), ("model.bin", b"weights")):
        path = directory / name
        path.write_bytes(data)
        fd = os.open(path, os.O_RDONLY)
        try:
            got = reg.ingest(fd, len(data))
        finally:
            os.close(fd)
        files.append(q.PushFile(path=name, sha256=got.sha256, size=got.size))
    reg.push(q.Push(files=files), "alice")


def test_a_backend_missing_a_required_method_cannot_be_built() -> None:
    class NoStop(Backend):
        name = "partial"

        async def start(self, spec: InstanceSpec, progress: ProgressLine) -> Instance:
            raise NotImplementedError

        async def wait(self, instance: Instance) -> int | None:
            return None

        async def discover(self) -> list[Instance]:
            return []

        async def logs(self, instance: Instance, tail: int) -> list[str]:
            return []

        async def follow(self, instance: Instance) -> AsyncIterator[list[str]]:
            return
            yield []

    with pytest.raises(TypeError, match="stop"):
        NoStop()  # type: ignore[abstract]


async def test_the_manager_runs_a_backend_that_implements_only_the_required_methods(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(manager_module, "MAINTENANCE_INTERVAL", 0.01)  # log rotation runs every tick
    settings = load_settings(tmp_path / "absent.toml", state_dir=str(tmp_path / "state"), environ={})
    reg = Registry(settings.state_dir, gc_grace_seconds=0)
    push_model(reg, tmp_path / "model")
    events: list[Event] = []
    backends: dict[str, Backend] = {"process": MinimalBackend(), "docker": MinimalImageBackend()}
    manager = DeploymentManager(settings, reg, backends, events.append, lambda route: 0)
    await manager.start()
    try:
        for backend, name in (("process", "plain"), ("docker", "imaged")):
            detail = await manager.deploy(
                q.Deploy(ref="iris:1", name=name, backend=backend), lambda line: None
            )  # warm() on first use
            assert detail.deployment.state == "running"
        changed = {(e.deployment, e.state) for e in events if isinstance(e, DeploymentEvent) and e.kind == "changed"}
        assert {("plain", "starting"), ("imaged", "building")} <= changed  # builds_images decides
        assert ("plain", "building") not in changed
        await asyncio.sleep(0.05)  # a few maintenance ticks: rotate() on each deployment
        assert manager._maintenance is not None
        assert not manager._maintenance.done()  # an AttributeError would have ended it
        assert (await manager.prune_images()).removed == []
        await backends["docker"].ping()
        for name in ("plain", "imaged"):
            gone = await manager.undeploy(name)  # remove_logs(), then the image policy for the imaged one
            assert (gone.deployment.state, gone.deployment.health) == ("stopped", "unknown")
        assert manager.names() == []
    finally:
        await manager.close()  # close() on each backend
        reg.close()
    removed = [e for e in events if isinstance(e, DeploymentEvent) and e.kind == "removed"]
    assert [(e.deployment, e.state) for e in removed] == [("plain", "stopped"), ("imaged", "stopped")]
