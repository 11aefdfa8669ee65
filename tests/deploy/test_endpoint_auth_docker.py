"""Endpoint authentication with the Docker backend: a real daemon, the real engine and registry, ``[serving]
auth = "on"`` on 127.0.0.1 (traffic stays on loopback). The container gets only the tokens' hashes (``docker
inspect`` shows no token), enforces them, and the daemon's own health checks pass."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from daemon.deploy.base import owner_id
from daemon.serving.auth import sha256_hex
from tests.helpers.daemon import DaemonProcess, admin_token, cli_json
from tests.helpers.docker_engine import docker_daemon_running
from tests.helpers.models import python_model

pytestmark = pytest.mark.integration


@pytest.fixture
def docker_daemon(daemon_factory: Any) -> Iterator[tuple[DaemonProcess, docker.DockerClient]]:
    with docker_daemon_running(daemon_factory, config='[serving]\nauth = "on"\n') as running:
        yield running


def post(url: str, body: Any, token: str | None = None) -> tuple[int, dict[str, str]]:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code, dict(exc.headers)


def get(url: str, token: str | None = None) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


def test_a_container_checks_the_token(docker_daemon: tuple[DaemonProcess, docker.DockerClient], tmp_path: Path) -> None:
    d, client = docker_daemon
    name = f"ak{uuid.uuid4().hex[:8]}"
    assert d.cli("push", str(python_model(tmp_path / "m", name=name))).returncode == 0
    detail = cli_json(d, "deploy", name, "--backend", "docker")
    token = detail["token"]
    dep = detail["deployment"]
    assert dep["state"] == "running", dep
    assert dep["health"] == "healthy"  # the daemon's health checks pass
    endpoint = dep["endpoint"]
    status, headers = post(endpoint + "/predict", {"inputs": [[1.0]]})
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert post(endpoint + "/predict", {"inputs": [[1.0]]}, token)[0] == 200
    admin_url = dep["instance"]["admin_url"]
    assert get(admin_url + "/feedback/rows") == 401
    assert get(admin_url + "/feedback/rows", token) == 403
    assert get(admin_url + "/feedback/rows", admin_token(d, name)) == 200
    (container,) = client.containers.list(filters={"label": f"modeltui.owner={owner_id(d.state_dir)}"})
    env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
    assert env["MODELTUI_TOKEN_SHA256"] == sha256_hex(token)
    assert env["MODELTUI_ADMIN_TOKEN_SHA256"] == sha256_hex(admin_token(d, name))
    inspected = json.dumps(container.attrs)
    assert token not in inspected
    assert admin_token(d, name) not in inspected
    assert d.cli("undeploy", name).returncode == 0
