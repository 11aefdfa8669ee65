"""Helpers for the Docker backend's tests: is the real engine / registry there, a tiny python model."""

from __future__ import annotations

import contextlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors

from daemon.deploy.base import owner_id
from tests.helpers.daemon import DaemonProcess
from tests.helpers.prerequisites import need

REGISTRY = os.environ.get("MODELTUI_DOCKER_REGISTRY", "127.0.0.1:5000")
BASE_IMAGE = os.environ.get("MODELTUI_DOCKER_BASE_IMAGE", "modeltui-base:bookworm")


def engine_problem() -> str | None:
    """None when the Docker engine answers and has the base image, else what is missing."""
    try:
        client = docker.from_env(timeout=5)
    except docker.errors.DockerException as exc:
        return f"Docker engine not reachable ({exc}); run scripts/services.sh as root"
    try:
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        return f"base image {BASE_IMAGE} missing; run scripts/services.sh as root"
    except docker.errors.DockerException as exc:
        return f"Docker engine not usable ({exc})"
    finally:
        client.close()
    return None


def registry_up() -> bool:
    return http_get(f"http://{REGISTRY}/v2/")[0] == 200


def http_get(url: str, timeout: float = 3.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code, None
    except (OSError, ValueError):
        return 0, None


def http_post(url: str, body: Any, timeout: float = 5.0) -> tuple[int, Any]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode(errors="replace")


def python_model(path: Path, name: str = "doubler") -> Path:
    """A model whose predict returns 2*x per row; no requirements beyond numpy."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "modeltui.toml").write_text(
        f'name = "{name}"\nflavor = "python"\nmodel_file = "predict.py:predict"\nrequirements = []\n\n'
        '[signature]\ninputs = [{name = "x", type = "double"}]\n'
    )
    (path / "predict.py").write_text("def predict(X):\n    return [2 * float(row[0]) for row in X]\n")
    return path


@contextlib.contextmanager
def docker_daemon_running(
    daemon_factory: Any, config: str = "", extra_owners: tuple[str, ...] = ()
) -> Iterator[tuple[DaemonProcess, docker.DockerClient]]:
    """A real daemon using the real engine and registry (``config``: its daemon.toml), and a client of the
    engine; afterwards every container, image and network labelled as its own (or ``extra_owners``') is
    removed."""
    problem = engine_problem()
    need(problem is None, problem or "")
    need(registry_up(), f"no registry answers on {REGISTRY}; run scripts/services.sh as root")
    d: DaemonProcess = daemon_factory()
    if config:
        Path(d.env["MODELTUI_CONFIG"]).write_text(config)
    d.env.update(MODELTUI_DOCKER_BASE_IMAGE=BASE_IMAGE, MODELTUI_DOCKER_REGISTRY=REGISTRY)
    d.start()
    client = docker.from_env(timeout=60)
    try:
        yield d, client
    finally:
        d.stop()
        for owner in (owner_id(d.state_dir), *extra_owners):
            label = f"modeltui.owner={owner}"
            for c in client.containers.list(all=True, filters={"label": label}):
                c.remove(force=True)
            for image in client.images.list(filters={"label": label}):
                for tag in image.tags:
                    client.images.remove(tag, force=True)
            for network in client.networks.list(filters={"label": label}):  # network = "bridge"
                with contextlib.suppress(docker.errors.NotFound):
                    network.remove()
        client.close()
