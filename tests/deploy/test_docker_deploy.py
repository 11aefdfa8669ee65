"""Docker deployments through the daemon and the CLI: a real daemon process, a real Docker Engine and the
registry on 127.0.0.1:5000 (scripts/services.sh starts them). Containers use host networking on 127.0.0.1."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from daemon.deploy.base import owner_id
from tests.helpers.daemon import DaemonProcess, cli_json, deployment
from tests.helpers.docker_engine import REGISTRY, docker_daemon_running, http_get
from tests.helpers.endpoints import predictions
from tests.helpers.models import python_model
from tests.helpers.rawsock import RawClient
from tests.helpers.waiting import wait_for


@pytest.fixture
def docker_daemon(daemon_factory: Any) -> Iterator[tuple[DaemonProcess, docker.DockerClient]]:
    with docker_daemon_running(daemon_factory) as running:
        yield running


def containers(client: docker.DockerClient, d: DaemonProcess) -> list[Any]:
    return client.containers.list(filters={"label": f"modeltui.owner={owner_id(d.state_dir)}"})  # type: ignore[no-any-return]


def test_docker_deploy_rollout_adoption_undeploy(docker_daemon: tuple[DaemonProcess, docker.DockerClient],
                                                  tmp_path: Path) -> None:
    d, client = docker_daemon
    name = f"dk{uuid.uuid4().hex[:8]}"
    assert d.cli("push", str(python_model(tmp_path / "v1", name=name)), "--alias", "production").returncode == 0
    res = d.cli("deploy", f"{name}@production", "--backend", "docker", "--cpus", "0.5", "--memory", "256",
                timeout=300)
    assert res.returncode == 0, res.stderr
    assert "step" in res.stderr.lower()  # build progress streamed to the waiting client
    dep = deployment(d, f"{name}-production")
    assert dep["backend"] == "docker"
    assert dep["state"] == "running"
    assert dep["image"].startswith(f"{REGISTRY}/modeltui/{name}:1-")
    assert predictions(dep["endpoint"], [2.5]) == [5.0]
    (container,) = containers(client, d)
    assert container.attrs["Config"]["User"] == "10001:10001"
    assert container.attrs["HostConfig"]["NanoCpus"] == 500_000_000
    assert container.attrs["HostConfig"]["Privileged"] is False
    repo = f"modeltui/{name}"
    assert http_get(f"http://{REGISTRY}/v2/{repo}/tags/list")[1]["tags"] == [dep["image"].rsplit(":", 1)[1]]

    # The daemon dies; the container serves on and is adopted, not duplicated.
    d.stop(signal.SIGKILL)
    assert predictions(dep["endpoint"], [1.0]) == [2.0]
    d.start()
    wait_for(lambda: deployment(d, f"{name}-production")["health"] == "healthy", "adoption")
    assert [c.id for c in containers(client, d)] == [container.id]

    # Moving the alias rolls out a new image; the old container goes.
    v2 = python_model(tmp_path / "v2", name=name)
    (v2 / "predict.py").write_text("def predict(X):\n    return [3 * float(row[0]) for row in X]\n")
    assert d.cli("push", str(v2), "--alias", "production").returncode == 0
    wait_for(lambda: deployment(d, f"{name}-production")["version"] == 2, "the rollout", timeout=180)
    assert predictions(dep["endpoint"], [1.0]) == [3.0]
    wait_for(lambda: len(containers(client, d)) == 1, "the old container to go")
    assert containers(client, d)[0].id != container.id

    assert d.cli("undeploy", f"{name}-production").returncode == 0
    assert containers(client, d) == []


def test_unreachable_engine_is_a_clear_error_within_5_seconds(daemon_factory: Any, tmp_path: Path) -> None:
    d: DaemonProcess = daemon_factory()
    d.env["DOCKER_HOST"] = f"unix://{tmp_path}/no-docker.sock"
    d.start()
    assert d.cli("push", str(python_model(tmp_path / "m"))).returncode == 0
    on_d = RawClient(d.socket)  # the daemon's answer, timed without the start of a client process
    try:
        started = time.monotonic()
        answer = on_d.request({"op": "deployments.create", "ref": "dbl:1", "backend": "docker", "name": "in-docker"})
        took = time.monotonic() - started
    finally:
        on_d.close()
    assert answer["code"] == "UNAVAILABLE", answer
    assert "not reachable" in answer["message"]
    assert took < 5.0
    res = d.cli("deploy", "dbl:1", "--backend", "docker", "--name", "in-docker")
    assert res.returncode == 7, res.stderr
    assert "not reachable" in res.stderr
    # The daemon keeps serving: the failed deployment is gone, a process deployment works.
    assert cli_json(d, "ps")["items"] == []
    dep = cli_json(d, "deploy", "dbl:1")["deployment"]
    assert predictions(dep["endpoint"], [1.0]) == [2.0]
