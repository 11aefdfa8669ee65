"""The Docker backend on the host network with ``[docker] bind_address = "0.0.0.0"`` and ``[serving]
tls_cert``/``tls_key``: a real daemon, engine and registry, a real ``curl`` (traffic stays on loopback). The
public port listens on every interface and serves TLS from the daemon's read-only copy of the certificate and
key; the admin port listens on 127.0.0.1 only (review findings 6 and 10(b))."""

from __future__ import annotations

import shutil
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from daemon.deploy.base import owner_id
from daemon.deploy.docker import TLS_MOUNT
from daemon.deploy.tls import self_signed
from tests.helpers.daemon import DaemonProcess, cli_json
from tests.helpers.docker_engine import docker_daemon_running
from tests.helpers.models import python_model
from tests.helpers.prerequisites import need

pytestmark = pytest.mark.integration


def listening(port: int) -> set[str]:
    """The local addresses with a socket listening on ``port`` (IPv4 and IPv6), from the kernel's tables."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            next(fh)
            for line in fh:
                fields = line.split()
                addr, _, hex_port = fields[1].partition(":")
                if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    if len(addr) == 8:
                        found.add(".".join(str(b) for b in reversed(bytes.fromhex(addr))))
                    else:
                        found.add("::" if int(addr, 16) == 0 else addr)
    return found


@pytest.fixture
def running(daemon_factory: Any, tmp_path: Path) -> Iterator[tuple[DaemonProcess, docker.DockerClient, Path]]:
    need(shutil.which("openssl") is not None and shutil.which("curl") is not None, "needs openssl and curl")
    cert, key = self_signed(tmp_path / "tls", "127.0.0.1")
    config = (
        f'[docker]\nnetwork = "host"\nbind_address = "0.0.0.0"\n\n[serving]\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
    )
    with docker_daemon_running(daemon_factory, config=config) as (d, client):
        yield d, client, cert


def test_host_network_admin_on_loopback_and_tls_from_a_read_only_copy(
    running: tuple[DaemonProcess, docker.DockerClient, Path], tmp_path: Path
) -> None:
    d, client, cert = running
    name = f"at{uuid.uuid4().hex[:8]}"
    assert d.cli("push", str(python_model(tmp_path / "m", name=name))).returncode == 0
    detail = cli_json(d, "deploy", name, "--backend", "docker")
    dep = detail["deployment"]
    assert dep["state"] == "running", dep
    assert dep["health"] == "healthy"  # the daemon reaches the admin port on 127.0.0.1
    assert dep["endpoint"].startswith("https://"), dep["endpoint"]
    public = int(dep["endpoint"].rsplit(":", 1)[1].split("/")[0])
    admin = int(dep["instance"]["admin_url"].rsplit(":", 1)[1].split("/")[0])

    # the container shares the host's network: the host's tables are the container's
    assert listening(public) == {"0.0.0.0"}
    assert listening(admin) == {"127.0.0.1"}

    url = f"https://127.0.0.1:{public}/predict"
    cmd = ["curl", "-sS", "--cacert", str(cert), "-H", f"Authorization: Bearer {detail['token']}"]
    cmd += ["-H", "Content-Type: application/json", "-d", '{"inputs": [[1.0]]}', "-w", "\n%{http_code}", url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rsplit("\n", 1)[1] == "200", done.stdout
    plain = subprocess.run(["curl", "-sS", f"http://127.0.0.1:{public}/health"], capture_output=True, timeout=60)
    assert plain.returncode != 0 or b"200" not in plain.stdout  # no plain HTTP on the public port

    (container,) = client.containers.list(filters={"label": f"modeltui.owner={owner_id(d.state_dir)}"})
    [mount] = container.attrs["Mounts"]
    assert (mount["Destination"], mount["RW"]) == (TLS_MOUNT, False)
    source = Path(mount["Source"])
    assert source.parent.parent == d.state_dir
    assert stat.S_IMODE(source.parent.stat().st_mode) == 0o700  # no other host user gets in
    key = (source / "key.pem").stat()
    assert (key.st_uid, stat.S_IMODE(key.st_mode)) == (10001, 0o400)  # the container's uid only (daemon as root)
    env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
    assert env["MODELTUI_TLS_KEY"] == f"{TLS_MOUNT}/key.pem"
    assert d.cli("undeploy", name).returncode == 0
