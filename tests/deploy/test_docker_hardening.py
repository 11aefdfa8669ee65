"""Hardened containers (docs/security.md "Hardened containers"): real deployments through a real daemon with the
Docker backend, pinned in the real ``docker inspect`` output; a container of one deployment tries to reach
another's admin port and the host's loopback registry and fails. The engine and the registry on 127.0.0.1:5000
come from scripts/services.sh; the bridge tests need the engine's bridge networking (docker0)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from daemon.deploy.base import owner_id
from daemon.deploy.image import VENV
from tests.helpers.daemon import DaemonProcess, cli_json, daemon_env, deployment
from tests.helpers.docker_engine import docker_daemon_running, engine_problem
from tests.helpers.endpoints import predictions
from tests.helpers.models import python_model
from tests.helpers.prerequisites import need
from tests.helpers.waiting import wait_for

#: Run inside a container: GET each URL, print {url: HTTP status, or the error when nothing answered}.
PROBE = """\
import json, sys, urllib.error, urllib.request
out = {}
for url in sys.argv[1:]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            out[url] = r.status
    except urllib.error.HTTPError as e:
        out[url] = e.code
    except Exception as e:
        out[url] = f"{type(e).__name__}: {e}"
print(json.dumps(out))
"""
#: One model for the module's two daemons: the same files make the same image tag, so the second reuses it.
MODEL = f"hd{uuid.uuid4().hex[:8]}"


@dataclass
class Deployed:
    d: DaemonProcess
    a: dict[str, Any]
    """deployment a: the settings' default limits"""
    b: dict[str, Any]
    """deployment b: ``--cpus 0.5 --memory 256``"""


def inspect(container: str) -> dict[str, Any]:
    """The real ``docker inspect`` CLI's view of one container."""
    res = subprocess.run(["docker", "inspect", container], capture_output=True, text=True, timeout=60, check=True)
    (attrs,) = json.loads(res.stdout)
    return attrs  # type: ignore[no-any-return]


def probe(container: str, *urls: str) -> dict[str, Any]:
    """GET ``urls`` from inside ``container`` (``docker exec``, as the container's own user)."""
    res = subprocess.run(
        ["docker", "exec", container, f"{VENV}/bin/python", "-c", PROBE, *urls],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def in_container(container: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "exec", container, *argv], capture_output=True, text=True, timeout=60)


def deploy_two(d: DaemonProcess, tmp: Path, prefix: str) -> Deployed:
    name = MODEL
    assert d.cli("push", str(python_model(tmp / "m", name=name))).returncode == 0
    res = d.cli("deploy", f"{name}:1", "--name", f"{prefix}-a", "--backend", "docker", timeout=300)
    assert res.returncode == 0, res.stderr
    res = d.cli("deploy", f"{name}:1", "--name", f"{prefix}-b", "--backend", "docker", "--cpus", "0.5",
                "--memory", "256", timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr
    return Deployed(d, deployment(d, f"{prefix}-a"), deployment(d, f"{prefix}-b"))


def check_hardened(attrs: dict[str, Any], *, nano_cpus: int, memory: int) -> None:
    """Every setting of docs/security.md "Hardened containers", as the engine reports it."""
    host = attrs["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["Tmpfs"] == {"/tmp": "rw,nosuid,nodev,noexec,size=64m,mode=1777"}
    assert host["CapDrop"] == ["ALL"]
    assert not host.get("CapAdd")
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert host["PidsLimit"] == 256
    assert host["Memory"] == memory
    assert host["NanoCpus"] == nano_cpus
    assert host["Privileged"] is False
    assert not host.get("Binds")
    assert not host.get("Devices")
    assert attrs["Config"]["User"] == "10001:10001"


def check_inside(container: str) -> None:
    """What the process in the container can do: no capability, no privilege gain, nowhere to write but /tmp."""
    status = in_container(container, "cat", "/proc/1/status").stdout
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["CapEff"].strip() == "0000000000000000"
    assert fields["CapBnd"].strip() == "0000000000000000"
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["Uid"].split()[0] == "10001"
    wrote = in_container(container, "touch", "/app/x")
    assert wrote.returncode != 0
    assert "Read-only file system" in wrote.stderr
    assert in_container(container, "touch", "/tmp/x").returncode == 0
    assert in_container(container, "sh", "-c", "cp /bin/true /tmp/t && /tmp/t").returncode != 0  # noexec


def healthy(container: str) -> bool:
    return inspect(container)["State"].get("Health", {}).get("Status") == "healthy"


# -- the bridge network: each deployment on its own ----------------------------------------------------------


@contextlib.contextmanager
def two_deployed(base: Path, config: str, prefix: str) -> Iterator[Deployed]:
    """A Docker-backend daemon under ``base`` with ``config`` and two deployments of one model (``deploy_two``);
    stopped, and its containers removed, afterwards."""
    (base / "home").mkdir()
    env = daemon_env(base)
    made = DaemonProcess(Path(env["MODELTUI_STATE_DIR"]), Path(env["MODELTUI_SOCKET"]), env=env)
    with docker_daemon_running(lambda: made, config) as (d, _client):
        try:
            yield deploy_two(d, base, prefix)
        finally:
            d.stop()
            d.kill_deployments()


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Iterator[Deployed]:
    """One daemon with ``[docker] network = "bridge"`` and two deployments of one model (one image build)."""
    problem = engine_problem()
    need(problem is None, problem or "")
    # An engine without bridge networking (dockerd --bridge=none) is a legitimate setup, where only host
    # networking works: skipped there, but CI's engine (scripts/services.sh: a plain dockerd) has docker0.
    need(Path("/sys/class/net/docker0").exists(), "the engine has no bridge networking (no docker0)")
    config = f'[docker]\nnetwork = "bridge"\nwheelhouse = "{wheelhouse}"\n'
    with two_deployed(tmp_path_factory.mktemp("hardening"), config, "br") as deployed:
        yield deployed


def test_bridge_containers_are_hardened_and_serve(bridge: Deployed) -> None:
    a, b = bridge.a, bridge.b
    owner = owner_id(bridge.d.state_dir)
    attrs = inspect(a["instance"]["key"])
    check_hardened(attrs, nano_cpus=1_000_000_000, memory=1024 << 20)  # [docker] cpus, memory_mb defaults
    assert attrs["HostConfig"]["NetworkMode"] == f"modeltui-{owner}-{a['name']}"
    assert attrs["HostConfig"]["PortBindings"] == {  # the admin port on the host's loopback only
        f"{a['port']}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(a["port"])}],
        f"{int(a['instance']['admin_url'].rsplit(':', 1)[1])}/tcp": [
            {"HostIp": "127.0.0.1", "HostPort": a["instance"]["admin_url"].rsplit(":", 1)[1]}
        ],
    }
    attrs_b = inspect(b["instance"]["key"])
    check_hardened(attrs_b, nano_cpus=500_000_000, memory=256 << 20)  # the deployment's own limits
    assert attrs_b["HostConfig"]["NetworkMode"] == f"modeltui-{owner}-{b['name']}"

    assert predictions(a["endpoint"], [2.5]) == [5.0]
    assert predictions(b["endpoint"], [1.0]) == [2.0]
    assert a["state"] == b["state"] == "running"
    wait_for(lambda: deployment(bridge.d, a["name"])["health"] == "healthy", "the daemon's health check")
    wait_for(lambda: healthy(a["instance"]["key"]), "the image's HEALTHCHECK", timeout=120)
    check_inside(a["instance"]["key"])
    doctor = {c["name"]: c for c in cli_json(bridge.d, "doctor")["checks"]}
    assert doctor["docker"]["status"] == "ok", doctor["docker"]


def test_bridge_container_cannot_reach_another_deployment_or_host_loopback(bridge: Deployed) -> None:
    a, b = bridge.a, bridge.b
    a_admin = int(a["instance"]["admin_url"].rsplit(":", 1)[1])
    b_admin = int(b["instance"]["admin_url"].rsplit(":", 1)[1])
    a_net = inspect(a["instance"]["key"])["NetworkSettings"]["Networks"]
    (a_ip,) = [n["IPAddress"] for n in a_net.values()]
    b_net = inspect(b["instance"]["key"])["NetworkSettings"]["Networks"]
    (gateway,) = [n["Gateway"] for n in b_net.values()]
    own = f"http://127.0.0.1:{b_admin}/health"
    targets = [
        f"http://{a_ip}:{a_admin}/feedback/rows",  # a's admin port, directly on a's network
        f"http://{a_ip}:{a['port']}/health",  # a's public port, directly
        f"http://{gateway}:{a_admin}/feedback/rows",  # a's admin port as published on the host
        f"http://127.0.0.1:{a_admin}/feedback/rows",  # "localhost" is the container's own
        f"http://{gateway}:5000/v2/",  # the host's loopback registry
        "http://127.0.0.1:5000/v2/",
    ]
    seen = probe(b["instance"]["key"], own, *targets)
    assert seen[own] == 200  # the probe works: the container's own admin port answers
    for url in targets:
        assert not isinstance(seen[url], int), f"{url} answered {seen[url]} from another deployment's container"
    # the daemon (the host) still reaches a's admin port: health and scrapes work
    health = f"{a['instance']['admin_url']}/health"
    curl = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", health], capture_output=True, text=True
    )
    assert curl.stdout == "200"


def test_the_image_has_no_setuid_or_setgid_file(bridge: Deployed) -> None:
    image = bridge.a["image"]
    res = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--user", "0", "--entrypoint", "find", image,
         "/", "-xdev", "-perm", "/6000"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""


def test_undeploy_removes_the_deployment_network(bridge: Deployed, tmp_path: Path) -> None:
    d, b = bridge.d, bridge.b
    net = inspect(b["instance"]["key"])["HostConfig"]["NetworkMode"]
    client = docker.from_env(timeout=30)
    try:
        assert d.cli("undeploy", b["name"]).returncode == 0
        assert client.networks.list(names=[net]) == []
        assert client.networks.list(names=[inspect(bridge.a["instance"]["key"])["HostConfig"]["NetworkMode"]])
    finally:
        client.close()


# -- the host network (the default): the admin token guards the admin routes ---------------------------------


@pytest.fixture(scope="module")
def on_host(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Iterator[Deployed]:
    """One daemon with the default ``[docker] network = "host"`` and two deployments of one model."""
    with two_deployed(
        tmp_path_factory.mktemp("hardening-host"), f'[docker]\nwheelhouse = "{wheelhouse}"\n', "ho"
    ) as deployed:
        yield deployed


def test_host_network_containers_are_hardened_and_another_deployment_needs_the_admin_token(on_host: Deployed) -> None:
    a, b = on_host.a, on_host.b
    attrs = inspect(a["instance"]["key"])
    check_hardened(attrs, nano_cpus=1_000_000_000, memory=1024 << 20)
    assert attrs["HostConfig"]["NetworkMode"] == "host"
    check_hardened(inspect(b["instance"]["key"]), nano_cpus=500_000_000, memory=256 << 20)
    assert predictions(a["endpoint"], [2.5]) == [5.0]
    check_inside(a["instance"]["key"])

    # b's container shares the host's loopback with a's admin port: the rows of a's clients need the admin
    # token, which only the daemon holds; what reveals no input still answers (docs/security.md)
    rows = f"{a['instance']['admin_url']}/feedback/rows"
    health = f"{a['instance']['admin_url']}/health"
    seen = probe(b["instance"]["key"], rows, health)
    assert seen[rows] == 401
    assert seen[health] == 200

    # the daemon says that containers share the host's network
    doctor = {c["name"]: c for c in cli_json(on_host.d, "doctor")["checks"]}
    assert doctor["docker"]["status"] == "warn"
    assert "host's network" in doctor["docker"]["detail"]
    assert "share the host's network" in (on_host.d.state_dir / "daemon.log").read_text()
