"""The Docker backend against a real Docker Engine and a real registry on 127.0.0.1:5000 (scripts/services.sh
starts both). Containers use host networking and bind 127.0.0.1 only. One unit test uses a fake client: the
one that pins the exact arguments that may reach ``containers.run``."""

from __future__ import annotations

import asyncio
import http.server
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from pydantic import ValidationError

from daemon.deploy import image as img
from daemon.deploy.base import BackendError, BackendUnavailable, Instance, InstanceSpec, free_port
from daemon.deploy.docker import ALLOWED_RUN_KEYS, DockerBackend, run_kwargs, stage_tls
from daemon.protocol.deploy import ContainerOptions
from daemon.serving.auth import ENV_TLS_CERT, ENV_TLS_KEY
from daemon.settings import DockerSection
from tests.helpers.docker_engine import (
    BASE_IMAGE,
    REGISTRY,
    engine_problem,
    http_get,
    http_post,
    python_model,
    registry_up,
)
from tests.helpers.paths import EXAMPLE
from tests.helpers.prerequisites import need

#: One digest per test session: the first build of the tiny model is real, later tests reuse the image.
SESSION = uuid.uuid4().hex


def _spec(model_dir: Path, tmp: Path, *, model: str = "doubler", digest: str = SESSION, **kw: Any) -> InstanceSpec:
    args: dict[str, Any] = {
        "deployment": "dep",
        "instance_id": uuid.uuid4().hex[:8],
        "model": model,
        "version": 1,
        "digest": digest,
        "model_dir": model_dir,
        "public_port": free_port(),
        "admin_port": free_port(),
        "env": {"GREETING": "hello"},
        "options": ContainerOptions(cpus=0.5, memory_mb=256, log_max_mb=5, log_files=2),
        "log_dir": tmp / "logs",
    }
    args.update(kw)
    return InstanceSpec(**args)


@pytest.fixture
def engine() -> Iterator[docker.DockerClient]:
    problem = engine_problem()
    need(problem is None, problem or "")
    client = docker.from_env(timeout=30)
    yield client
    client.close()


@pytest.fixture
async def backend(engine: docker.DockerClient, tmp_path: Path, wheelhouse: Path) -> AsyncIterator[DockerBackend]:
    """A backend with its own owner id; every container it owns is removed at teardown."""
    need(registry_up(), f"registry not answering at http://{REGISTRY}/v2/; run scripts/services.sh as root")
    settings = DockerSection(base_image=BASE_IMAGE, registry=REGISTRY, network="host", wheelhouse=wheelhouse)
    owner = f"test-{uuid.uuid4().hex[:12]}"
    b = DockerBackend(settings, state_dir=tmp_path / "state", owner=owner)
    yield b
    await b.close()
    for c in engine.containers.list(all=True, filters={"label": f"modeltui.owner={owner}"}):
        c.remove(force=True)
    for image in engine.images.list(filters={"label": f"modeltui.owner={owner}"}):
        for tag in image.tags:  # the layers stay as build cache for the next test
            engine.images.remove(tag, force=True)


async def _healthy(inst: Instance, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, _ = await asyncio.to_thread(http_get, f"{inst.admin_url}/health", 1.0)
        if status == 200:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{inst.admin_url}/health never answered 200")


# -- the allowlist (no engine) -------------------------------------------------------------------------------


class _FakeApi:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.networks: dict[str, dict[str, Any]] = {}
        self.listing: list[dict[str, Any]] = []

    def containers(self, **kw: Any) -> list[dict[str, Any]]:
        return self.listing

    def ping(self) -> bool:
        return True

    def inspect_image(self, tag: str) -> dict[str, Any]:
        return {"Id": "sha256:img"}

    def inspect_container(self, ref: str) -> dict[str, Any]:
        if ref.startswith("modeltui-"):
            raise docker.errors.NotFound("no such container")
        return {"Id": ref, "State": {"StartedAt": "2025-01-02T03:04:05.123456789Z"}}

    def inspect_network(self, name: str) -> dict[str, Any]:
        if name not in self.networks:
            raise docker.errors.NotFound("no such network")
        return self.networks[name]

    def create_network(self, name: str, **kw: Any) -> dict[str, Any]:
        self.networks[name] = {"Name": name, **{k.capitalize(): v for k, v in kw.items()}}
        return {"Id": name}


class _FakeContainers:
    def __init__(self) -> None:
        self.kwargs: dict[str, Any] = {}

    def run(self, **kw: Any) -> Any:
        self.kwargs = kw
        return type("C", (), {"id": "c0ffee"})()


class _FakeClient:
    def __init__(self) -> None:
        self.api = _FakeApi()
        self.containers = _FakeContainers()

    def close(self) -> None:
        pass


@pytest.mark.parametrize("network", ["host", "bridge"])
async def test_only_allowlisted_arguments_reach_containers_run(tmp_path: Path, network: str) -> None:
    settings = DockerSection(registry="", network=network)  # type: ignore[arg-type]
    b = DockerBackend(settings, state_dir=tmp_path, owner="o1")
    fake = _FakeClient()
    b._client = fake
    spec = _spec(python_model(tmp_path / "m"), tmp_path)
    lines: list[str] = []
    inst = await b.start(spec, lines.append)
    kw = fake.containers.kwargs
    expected = {
        "image", "command", "name", "detach", "labels", "environment", "user", "network_mode",
        "nano_cpus", "mem_limit", "log_config", "restart_policy",
        "read_only", "tmpfs", "cap_drop", "security_opt", "pids_limit",
    }  # fmt: skip
    if network == "bridge":
        expected.add("ports")
        assert kw["ports"] == {
            f"{spec.public_port}/tcp": ("127.0.0.1", spec.public_port),
            f"{spec.admin_port}/tcp": ("127.0.0.1", spec.admin_port),
        }
        assert kw["network_mode"] == "modeltui-o1-dep"  # the deployment's own network, made before the run
        assert fake.api.networks["modeltui-o1-dep"]["Labels"] == {"modeltui.owner": "o1", "modeltui.deployment": "dep"}
        # inside its own namespace; only published ports reach it (the admin port on the host's loopback)
        assert kw["command"][:4] == ["--host", "0.0.0.0", "--admin-host", "0.0.0.0"]
    else:
        assert kw["network_mode"] == "host"
        assert kw["command"][:4] == ["--host", "127.0.0.1", "--admin-host", "127.0.0.1"]
        assert fake.api.networks == {}
    assert set(kw) == expected
    assert expected <= ALLOWED_RUN_KEYS
    assert kw["read_only"] is True
    assert kw["tmpfs"] == {"/tmp": "rw,nosuid,nodev,noexec,size=64m,mode=1777"}
    assert kw["cap_drop"] == ["ALL"]
    assert kw["security_opt"] == ["no-new-privileges:true"]
    assert kw["pids_limit"] == 256
    assert kw["user"] == "10001:10001"
    assert kw["nano_cpus"] == 500_000_000
    assert kw["mem_limit"] == "256m"
    assert kw["log_config"] == {"type": "json-file", "config": {"max-size": "5m", "max-file": "2"}}
    assert kw["restart_policy"] == {"Name": "no"}
    assert kw["environment"] == {
        "GREETING": "hello", "MODELTUI_ADMIN_PORT": str(spec.admin_port), "MODELTUI_ADMIN_HOST": "127.0.0.1",
    }  # fmt: skip
    assert kw["labels"]["modeltui.owner"] == "o1"
    assert kw["image"] == f"modeltui/doubler:1-{SESSION[:12]}"
    assert inst.key == "c0ffee"
    assert inst.started_at == datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert any("reusing" in line for line in lines)
    await b.close()


def test_limits_default_from_settings_and_a_deployment_overrides_them(tmp_path: Path) -> None:
    model = python_model(tmp_path / "m")
    plain = _spec(model, tmp_path, options=ContainerOptions())
    kw = run_kwargs(plain, DockerSection(), image="i", owner="o")
    assert (kw["nano_cpus"], kw["mem_limit"], kw["pids_limit"]) == (1_000_000_000, "1024m", 256)
    own = DockerSection(cpus=2.5, memory_mb=300, pids_limit=64, tmpfs_mb=8)
    kw = run_kwargs(plain, own, image="i", owner="o")
    assert (kw["nano_cpus"], kw["mem_limit"], kw["pids_limit"]) == (2_500_000_000, "300m", 64)
    assert "size=8m" in kw["tmpfs"]["/tmp"]
    kw = run_kwargs(
        _spec(model, tmp_path, options=ContainerOptions(cpus=0.25, memory_mb=64)), own, image="i", owner="o"
    )
    assert (kw["nano_cpus"], kw["mem_limit"]) == (250_000_000, "64m")
    unlimited = run_kwargs(plain, DockerSection(cpus=0, memory_mb=0), image="i", owner="o")
    assert "nano_cpus" not in unlimited
    assert "mem_limit" not in unlimited
    assert unlimited["read_only"] is True  # limits may be loosened, the hardening may not
    for bad in ({"memory_mb": 16}, {"pids_limit": 0}, {"cpus": -1}, {"tmpfs_mb": 0}):
        with pytest.raises(ValidationError):
            DockerSection(**bad)  # type: ignore[arg-type]
    assert "RUN find / -xdev -perm /6000 -exec chmod a-s {} +" in img.dockerfile("base", {})


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (401, True), (503, False), (404, False)])
def test_the_image_healthcheck_passes_when_the_runtime_answers_200_or_needs_a_token(status: int, healthy: bool) -> None:
    """401: ``/health`` needs a token (``health_open = false``), which the image does not have; the daemon's
    own check sends the admin token. The probe is the one in the generated Dockerfile, run for real."""
    line = next(x for x in img.dockerfile("base", {}).splitlines() if x.startswith("HEALTHCHECK "))
    argv = json.loads(line.split(" CMD ", 1)[1])

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status if self.path == "/health" else 500)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {**os.environ, "MODELTUI_ADMIN_PORT": str(server.server_address[1])}
        res = subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, timeout=60)
    finally:
        server.shutdown()
        server.server_close()
    assert (res.returncode == 0) is healthy, res.stderr


def test_hostile_options_env_and_requirements_are_refused(tmp_path: Path) -> None:
    for bad in ({"privileged": True}, {"volumes": {"/": {}}}, {"cap_add": ["SYS_ADMIN"]}, {"network_mode": "x"}):
        with pytest.raises(ValidationError):
            ContainerOptions(**bad)
    model = python_model(tmp_path / "m")
    for env in ({"A": "x\ny"}, {"A": "nul\x00"}, {"LD_PRELOAD": "/x.so"}, {"MODELTUI_ADMIN_PORT": "1"}, {"1A": "v"}):
        with pytest.raises(BackendError, match="environment") as info:
            run_kwargs(_spec(model, tmp_path, env=env), DockerSection(), image="i", owner="o")
        assert not isinstance(info.value, BackendUnavailable)
    for req in ("--index-url=http://evil", "-r /etc/passwd", "pkg @ file:///etc", "a\nb", "x; rm -rf /`"):
        with pytest.raises(img.ImageError):
            img.check_requirement(req)
    assert img.check_requirement("scikit-learn[alldeps]>=1.5,<2; python_version >= '3.11'")


def test_on_the_host_network_the_admin_port_stays_on_loopback_whatever_bind_address_is(tmp_path: Path) -> None:
    spec = _spec(python_model(tmp_path / "m"), tmp_path)
    for bind in ("0.0.0.0", "::", "192.0.2.7"):
        command = run_kwargs(spec, DockerSection(bind_address=bind), image="i", owner="o")["command"]
        assert command[:4] == ["--host", bind, "--admin-host", "127.0.0.1"], command


def test_the_tls_copy_a_container_mounts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As root the key copy is the container uid's alone; otherwise 0644 behind the daemon's 0700 directory.
    A later start copies again (a renewed certificate) without leaving temporary files."""
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("CERT1")
    key.write_text("KEY")
    key.chmod(0o600)
    out = stage_tls(tmp_path / "copies", "dep", cert, key)
    assert out == tmp_path / "copies" / "dep"
    assert (tmp_path / "copies").stat().st_mode & 0o777 == 0o700
    if os.geteuid() == 0:
        st = (out / "key.pem").stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (10001, 10001, 0o400)
    cert.write_text("CERT2")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # a daemon that cannot chown
    stage_tls(tmp_path / "copies", "dep", cert, key)
    assert (out / "cert.pem").read_text() == "CERT2"
    assert (out / "key.pem").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in out.iterdir()) == ["cert.pem", "key.pem"]
    with pytest.raises(BackendError, match="tls_key"):
        stage_tls(tmp_path / "copies", "dep", cert, tmp_path / "missing.pem")


async def test_the_tls_copy_goes_at_undeploy_and_at_a_start_without_tls_once_unmounted(tmp_path: Path) -> None:
    """Review finding 5: the key's copy outlived the deployment and the TLS setting. A start without TLS keeps
    it while a container of the deployment (a rollout's old instance) still mounts it."""
    b = DockerBackend(DockerSection(registry=""), state_dir=tmp_path, owner="o1")
    fake = _FakeClient()
    b._client = fake
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("CERT")
    key.write_text("KEY")
    copy = stage_tls(tmp_path / "docker-tls", "dep", cert, key)
    spec = _spec(python_model(tmp_path / "m"), tmp_path)
    fake.api.listing = [{"Id": "old", "Mounts": [{"Type": "bind", "Destination": "/run/modeltui-tls"}]}]
    await b.start(spec, print)
    assert (copy / "key.pem").exists()  # the old instance still serves with it
    fake.api.listing = [{"Id": "new", "Mounts": []}]
    await b.start(spec, print)
    assert not copy.exists()
    stage_tls(tmp_path / "docker-tls", "dep", cert, key)
    stage_tls(tmp_path / "docker-tls", "other", cert, key)
    b.remove_logs("dep")  # what undeploy calls once the deployment's instances are stopped
    assert not copy.exists()
    assert (tmp_path / "docker-tls" / "other" / "key.pem").exists()
    await b.close()


@pytest.mark.parametrize("host", ["tcp://192.0.2.7:2376", "ssh://user@engine.example"])
async def test_tls_with_a_remote_engine_is_refused_before_touching_it(tmp_path: Path, host: str) -> None:
    """Review finding 5: the bind mount would name a path on the engine's machine."""
    b = DockerBackend(DockerSection(host=host), state_dir=tmp_path, owner="o")
    spec = _spec(python_model(tmp_path / "m"), tmp_path)
    spec.runtime_env.update({ENV_TLS_CERT: str(tmp_path / "c.pem"), ENV_TLS_KEY: str(tmp_path / "k.pem")})
    with pytest.raises(BackendError, match=r"tls_cert/tls_key need a local Docker engine.*\[docker\] host") as info:
        await b.start(spec, print)
    assert host in str(info.value)
    assert not isinstance(info.value, BackendUnavailable)
    assert not (tmp_path / "docker-tls").exists()
    await b.close()


def test_the_container_command_passes_the_feedback_inputs_setting(tmp_path: Path) -> None:
    model = python_model(tmp_path / "m")
    kept = run_kwargs(_spec(model, tmp_path), DockerSection(), image="i", owner="o")["command"]
    assert "--no-feedback-inputs" not in kept
    spec = _spec(model, tmp_path, feedback_inputs=False)
    assert run_kwargs(spec, DockerSection(), image="i", owner="o")["command"][-1] == "--no-feedback-inputs"


async def test_bad_env_fails_before_touching_the_engine(tmp_path: Path) -> None:
    b = DockerBackend(DockerSection(host="unix:///nonexistent.sock"), state_dir=tmp_path, owner="o")
    with pytest.raises(BackendError, match="environment") as info:
        await b.start(_spec(python_model(tmp_path / "m"), tmp_path, env={"A": "1\n2"}), print)
    assert not isinstance(info.value, BackendUnavailable)
    await b.close()


# -- engine down ---------------------------------------------------------------------------------------------


async def _all_calls_unavailable(b: DockerBackend, tmp_path: Path, limit: float) -> None:
    inst = Instance("docker", "dep", "i1", 1, "0123456789ab", free_port(), free_port(), datetime.now(UTC))
    calls = {
        "ping": b.ping(),
        "discover": b.discover(),
        "start": b.start(_spec(python_model(tmp_path / "m"), tmp_path), lambda line: None),
        "stop": b.stop(inst, 1.0),
        "logs": b.logs(inst, 10),
    }
    for what, coro in calls.items():
        t0 = time.monotonic()
        with pytest.raises(BackendUnavailable, match=r"the Docker engine at .* is not reachable"):
            await coro
        assert time.monotonic() - t0 < limit, what


async def test_engine_missing_is_unavailable_fast(tmp_path: Path) -> None:
    b = DockerBackend(DockerSection(host="unix:///nonexistent.sock"), state_dir=tmp_path, owner="o")
    await _all_calls_unavailable(b, tmp_path, limit=4.0)  # below the 5 s engine timeout it must not wait for
    await b.close()


async def test_engine_that_never_answers_is_unavailable_within_the_timeout(tmp_path: Path) -> None:
    path = tmp_path / "hung.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(64)  # connections are accepted by the kernel and never answered
    try:
        b = DockerBackend(DockerSection(host=f"unix://{path}", timeout_seconds=1.5), state_dir=tmp_path, owner="o")
        await _all_calls_unavailable(b, tmp_path, limit=5.0)
        await b.close()
    finally:
        server.close()


# -- the real engine -----------------------------------------------------------------------------------------


async def test_build_push_run_discover_stop(
    backend: DockerBackend, engine: docker.DockerClient, tmp_path: Path
) -> None:
    model = python_model(tmp_path / "doubler")
    (model / "predict.py").write_text(
        "def predict(X):\n    print(f'predicting {len(X)} rows', flush=True)\n    return [2 * float(r[0]) for r in X]\n"
    )
    spec = _spec(model, tmp_path, digest=uuid.uuid4().hex)
    lines: list[str] = []
    inst = await backend.start(spec, lines.append)
    assert any(line.startswith("Step ") for line in lines), lines[-20:]  # docker build output was streamed
    assert any("digest: sha256:" in line for line in lines), lines[-20:]  # the push reported its manifest
    await _healthy(inst)

    status, body = await asyncio.to_thread(http_post, f"{inst.endpoint}/predict", {"inputs": [[1.5], [2]]})
    assert status == 200, body
    assert body["predictions"] == [3.0, 4.0]

    # the image is in the registry
    repo = f"modeltui/{spec.model}"
    status, tags = await asyncio.to_thread(http_get, f"http://{REGISTRY}/v2/{repo}/tags/list")
    assert status == 200
    assert inst.image is not None
    assert inst.image.rsplit(":", 1)[1] in tags["tags"]

    # non-root, labels, limits, health check
    c = engine.containers.get(inst.key)
    assert c.attrs["Config"]["User"] == "10001:10001"
    code, out = c.exec_run(["id", "-u"])
    assert code == 0
    assert out.decode().strip() == "10001"
    labels = c.labels
    assert labels["modeltui.owner"] == backend.owner
    assert labels["modeltui.deployment"] == "dep"
    assert labels["modeltui.instance"] == spec.instance_id
    assert labels["modeltui.version"] == "1"
    assert labels["modeltui.public_port"] == str(spec.public_port)
    host = c.attrs["HostConfig"]
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == 256 * 1024 * 1024
    assert host["NetworkMode"] == "host"
    assert not host["Privileged"]
    assert not host.get("Binds")
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-file": "2", "max-size": "5m"}}
    assert c.attrs["Config"]["Env"].count("GREETING=hello") == 1
    deadline = time.monotonic() + 30
    while c.attrs["State"].get("Health", {}).get("Status") != "healthy" and time.monotonic() < deadline:
        await asyncio.sleep(1)
        c.reload()
    assert c.attrs["State"]["Health"]["Status"] == "healthy"

    # logs and follow
    assert any("SERVING" in line or "LISTENING" in line for line in await backend.logs(inst, 50))
    follow = backend.follow(inst)
    first = asyncio.ensure_future(anext(follow))
    await asyncio.sleep(1.0)  # the stream is open
    await asyncio.to_thread(http_post, f"{inst.endpoint}/predict", {"inputs": [[1.0], [2.0], [3.0]]})
    batch = await asyncio.wait_for(first, 10)
    assert "predicting 3 rows" in batch
    await follow.aclose()

    # a second instance of the same version reuses the image
    lines2: list[str] = []
    spec2 = _spec(model, tmp_path, digest=spec.digest, instance_id="second")
    inst2 = await backend.start(spec2, lines2.append)
    assert any("reusing" in line for line in lines2)
    assert not any(line.startswith("Step ") for line in lines2)

    # discover re-finds what runs
    found = {i.key: i for i in await backend.discover()}
    assert set(found) == {inst.key, inst2.key}
    again = found[inst.key]
    assert (again.deployment, again.instance_id, again.version) == ("dep", spec.instance_id, 1)
    assert (again.admin_port, again.public_port) == (inst.admin_port, inst.public_port)
    assert abs((again.started_at - inst.started_at).total_seconds()) < 1

    # wait sees the exit; stop removes; stop again is fine
    waiter = asyncio.ensure_future(backend.wait(inst))
    await asyncio.sleep(0.2)
    await backend.stop(inst, grace=5)
    assert await asyncio.wait_for(waiter, 15) == 0  # SIGTERM: the runtime exits cleanly
    await backend.stop(inst, grace=5)
    with pytest.raises(docker.errors.NotFound):
        engine.containers.get(inst.key)
    assert [i.key for i in await backend.discover()] == [inst2.key]
    await backend.stop(inst2, grace=1)


async def test_follow_ends_when_the_container_stops(backend: DockerBackend, tmp_path: Path) -> None:
    inst = await backend.start(_spec(python_model(tmp_path / "m"), tmp_path), lambda line: None)
    await _healthy(inst)

    async def drain() -> list[list[str]]:
        return [batch async for batch in backend.follow(inst)]

    task = asyncio.ensure_future(drain())
    await asyncio.sleep(1.0)
    await backend.stop(inst, grace=5)
    await asyncio.wait_for(task, 15)


async def test_discover_removes_exited_and_created_containers(
    backend: DockerBackend, engine: docker.DockerClient
) -> None:
    labels = {"modeltui.owner": backend.owner, "modeltui.deployment": "d", "modeltui.instance": "x"}
    created = engine.containers.create(BASE_IMAGE, ["true"], labels=labels, network_mode="none")
    exited = engine.containers.run(BASE_IMAGE, ["true"], labels=labels, network_mode="none", detach=True)
    exited.wait(timeout=30)
    broken = engine.containers.run(  # running, but without the labels an instance needs
        BASE_IMAGE, ["sleep", "60"], labels=labels, network_mode="none", detach=True
    )
    other = engine.containers.run(
        BASE_IMAGE, ["true"], labels={"modeltui.owner": "someone-else"}, network_mode="none", detach=True
    )
    try:
        assert await backend.discover() == []
        for c in (created, exited, broken):
            with pytest.raises(docker.errors.NotFound):
                engine.containers.get(c.id)
        engine.containers.get(other.id)  # another daemon's container is left alone
    finally:
        other.remove(force=True)


async def test_push_failure_is_a_clear_error(engine: docker.DockerClient, tmp_path: Path, wheelhouse: Path) -> None:
    closed = free_port()
    settings = DockerSection(base_image=BASE_IMAGE, registry=f"127.0.0.1:{closed}", wheelhouse=wheelhouse)
    b = DockerBackend(settings, state_dir=tmp_path / "state", owner=f"test-{uuid.uuid4().hex[:12]}")
    spec = _spec(python_model(tmp_path / "m"), tmp_path)
    try:
        with pytest.raises(BackendError, match=rf"pushing .* failed.*registry 127.0.0.1:{closed}") as info:
            await b.start(spec, lambda line: None)
        assert not isinstance(info.value, BackendUnavailable)
    finally:
        await b.close()
        tag = img.image_tag(settings.registry, spec.model, spec.version, spec.digest)
        engine.images.remove(tag, force=True)


@pytest.mark.slow
async def test_sklearn_example_through_the_wheelhouse(backend: DockerBackend, tmp_path: Path) -> None:
    spec = _spec(EXAMPLE, tmp_path, model="breast-cancer", digest=SESSION, env={})
    lines: list[str] = []
    inst = await backend.start(spec, lines.append)
    await _healthy(inst, timeout=120)
    request = json.loads((EXAMPLE / "request.json").read_text())
    status, body = await asyncio.to_thread(http_post, f"{inst.endpoint}/invocations", request)
    assert status == 200, body
    assert set(body["predictions"]) <= {0, 1}
    assert len(body["predictions"]) == len(request["dataframe_split"]["data"])
    wheels = {p.name.split("-")[0].lower() for p in backend.wheelhouse.glob("*/*.whl")}
    assert {"scikit_learn", "skops", "numpy", "scipy"} <= wheels
    await backend.stop(inst, grace=5)


async def test_waiting_on_a_running_container_is_quiet(
    engine: docker.DockerClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each wait is one request with a read timeout; its expiry means "still running", which over the engine's
    unix socket arrives as a ConnectionError. It was logged as an unreachable engine every few seconds."""
    owner = f"test-{uuid.uuid4().hex[:12]}"
    b = DockerBackend(DockerSection(timeout_seconds=0.5), state_dir=tmp_path, owner=owner)
    c = engine.containers.run(
        BASE_IMAGE, ["sleep", "60"], detach=True, network_mode="none", labels={"modeltui.owner": owner}
    )
    try:
        inst = Instance("docker", "dep", "i1", 1, c.id, free_port(), free_port(), datetime.now(UTC))
        caplog.set_level(logging.INFO, logger="daemon.deploy.docker")
        waiter = asyncio.ensure_future(b.wait(inst))
        await asyncio.sleep(2.0)  # several timed-out waits
        assert not waiter.done()
        c.kill()
        assert await asyncio.wait_for(waiter, 30) == 137
        assert "not reachable" not in caplog.text
        assert "retrying" not in caplog.text
    finally:
        await b.close()
        c.remove(force=True)


async def test_wait_survives_the_engine_going_away(backend: DockerBackend, tmp_path: Path) -> None:
    """``wait`` keeps polling while the engine is unreachable and returns the exit status once it is back.
    The engine "goes away" for a second backend whose socket is a proxy to the real one that is missing
    at first and appears later."""
    real = "/var/run/docker.sock"
    need(Path(real).exists(), f"{real} missing")
    inst = await backend.start(_spec(python_model(tmp_path / "m"), tmp_path), lambda line: None)
    path = tmp_path / "proxy.sock"
    other = DockerBackend(
        DockerSection(host=f"unix://{path}", timeout_seconds=2), state_dir=tmp_path / "other", owner=backend.owner
    )

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(real)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    waiter = asyncio.ensure_future(other.wait(inst))
    await asyncio.sleep(2.5)  # several failed polls
    assert not waiter.done()
    server = await asyncio.start_unix_server(relay, path=str(path))
    try:
        await asyncio.sleep(1.5)  # it reconnected and waits on the running container
        assert not waiter.done()
        await backend.stop(inst, grace=5)
        assert await asyncio.wait_for(waiter, 15) in (0, None)  # None: removed before the wait saw the exit
    finally:
        await other.close()
        server.close()
        await server.wait_closed()
