"""The registry with TLS and htpasswd authentication (issue 15, item 5), against a real Debian docker-registry
of this module's own (tests/helpers/tls_registry.py: a self-signed certificate, bcrypt htpasswd): the artifact
client with and without the right credentials and CA, two cluster daemons transferring a version through it,
and the Docker engine pushing an image to it with ``auth_config``. Plus a local server that redirects, to show
that the credentials never follow a redirect to another host."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.server
import io
import json
import os
import tarfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from daemon.cluster.artifacts import ArtifactError, ArtifactFile, ArtifactStore
from daemon.settings import RegistryAccess
from tests.helpers.daemon import DaemonProcess, cli_json
from tests.helpers.models import make_model_dir
from tests.helpers.prerequisites import need
from tests.helpers.tls_registry import PASSWORD, USER, TlsRegistry, started
from tests.helpers.zookeeper import ZkEnsemble


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRegistry]:
    yield from started(tmp_path_factory.mktemp("tls-registry"))


def access(reg: TlsRegistry, **over: Any) -> RegistryAccess:
    kw: dict[str, Any] = {"tls": True, "ca_file": reg.cert, "username": USER, "password": PASSWORD} | over
    return RegistryAccess(reg.address, **kw)


def version() -> tuple[str, str, dict[str, bytes], list[ArtifactFile]]:
    model = f"Tls.Model_{uuid.uuid4().hex}"
    contents = {"weights.bin": os.urandom(256 * 1024), "bin/serve": b"#!/bin/sh\necho hi\n"}
    files = [ArtifactFile(p, hashlib.sha256(d).hexdigest(), len(d), p == "bin/serve") for p, d in contents.items()]
    return model, hashlib.sha256(model.encode()).hexdigest(), {f.sha256: contents[f.path] for f in files}, files


def fetch(store: ArtifactStore, model: str, f: ArtifactFile) -> bytes:
    out = bytearray()
    store.fetch(model, f.sha256, f.size, out.extend)
    return bytes(out)


def test_push_and_fetch_with_the_right_credentials_and_ca(reg: TlsRegistry) -> None:
    store = ArtifactStore(reg.address, timeout_s=10, access=access(reg))
    store.ping()
    model, digest, blobs, files = version()
    store.push(model, digest, files, lambda sha: io.BytesIO(blobs[sha]))
    assert store.uploads == 3  # two files and the config blob
    other = ArtifactStore(reg.address, timeout_s=10, access=access(reg))  # another host
    assert other.files(model, digest) == files
    for f in files:
        assert fetch(other, model, f) == blobs[f.sha256]


def test_a_wrong_password_is_a_clear_401_naming_the_registry(reg: TlsRegistry) -> None:
    store = ArtifactStore(reg.address, timeout_s=10, access=access(reg, password="not-the-password"))
    with pytest.raises(ArtifactError) as info:
        store.ping()
    text = str(info.value)
    for part in (reg.address, "401", "refused the credentials"):
        assert part in text, text
    model, digest, _, _ = version()
    with pytest.raises(ArtifactError, match="401"):
        store.files(model, digest)


def test_no_credentials_says_the_registry_wants_them(reg: TlsRegistry) -> None:
    store = ArtifactStore(reg.address, timeout_s=10, access=access(reg, username="", password=""))
    with pytest.raises(ArtifactError, match=r"401.*wants credentials.*\[registry\] username"):
        store.ping()


def test_without_the_ca_the_tls_verification_error_is_stated(reg: TlsRegistry) -> None:
    store = ArtifactStore(reg.address, timeout_s=10, access=access(reg, ca_file=None))  # the system's CAs
    with pytest.raises(ArtifactError) as info:
        store.ping()
    text = str(info.value)
    for part in (reg.address, "TLS certificate verification failed", "ca_file"):
        assert part in text, text
    assert "self-signed" in text or "self signed" in text, text


def test_plain_http_to_the_tls_port_says_it_serves_tls(reg: TlsRegistry) -> None:
    store = ArtifactStore(reg.address, timeout_s=10, access=access(reg, tls=False))  # loopback: allowed
    with pytest.raises(ArtifactError, match=r"400.*serves TLS.*\[registry\] tls = true"):
        store.ping()


def test_credentials_are_refused_over_plain_http_to_another_host() -> None:
    creds = {"username": USER, "password": PASSWORD}
    with pytest.raises(ArtifactError, match="refusing to send credentials over plain HTTP"):
        ArtifactStore("registry.example:5000", access=RegistryAccess("registry.example:5000", **creds))


# -- credentials never follow a redirect to another host ------------------------------------------------------


class _Seen(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[int, str, str | None]]  # (port, path, Authorization)
    target: str  # where /v2/ blobs redirect to ("" = serve them)

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.seen.append((self.server.server_address[1], self.path, self.headers.get("Authorization")))
        if "/blobs/" in self.path and self.target:
            self.send_response(307)
            self.send_header("Location", f"{self.target}/storage/{self.path.rsplit(':', 1)[1]}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"blob"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_credentials_never_follow_a_redirect_to_another_host() -> None:
    seen: list[tuple[int, str, str | None]] = []
    servers = []
    for target in ("", "later"):
        handler = type("H", (_Seen,), {"seen": seen, "target": target})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    storage, registry = (f"127.0.0.1:{s.server_address[1]}" for s in servers)
    servers[1].RequestHandlerClass.target = f"http://{storage}"  # type: ignore[attr-defined]
    try:
        store = ArtifactStore(registry, timeout_s=5, access=RegistryAccess(registry, username="u", password="p"))
        assert fetch(store, "m", ArtifactFile("x", hashlib.sha256(b"blob").hexdigest(), 4)) == b"blob"
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()
    ports = {int(a.rsplit(":", 1)[1]): a for a in (storage, registry)}
    assert [(ports[p], auth is not None) for p, _, auth in seen] == [(registry, True), (storage, False)], seen


# -- two cluster daemons transfer a version through it --------------------------------------------------------


def test_two_cluster_daemons_transfer_a_version_through_the_tls_registry(
    reg: TlsRegistry, daemon_factory: Callable[[str], DaemonProcess], zk: ZkEnsemble, tmp_path: Path
) -> None:
    secret = tmp_path / "registry-password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    chroot = f"/modeltui-tls-{uuid.uuid4().hex[:8]}"
    daemons = []
    for name in ("a", "b", "c"):
        d = daemon_factory(name)
        if name == "c":  # the environment wins over the file: a wrong password
            d.env["MODELTUI_REGISTRY_PASSWORD"] = "not-the-password"
        d.env["MODELTUI_ZK_CREDENTIALS"] = "modeltui:cluster-test-secret"  # when ZooKeeper digest auth is on
        Path(d.env["MODELTUI_CONFIG"]).write_text(
            f'[cluster]\nzookeeper = "{zk.connect_string()}"\nchroot = "{chroot}"\nregistry = "{reg.address}"\n'
            f'session_timeout_seconds = 4\n[registry]\ntls = true\nca_file = "{reg.cert}"\nusername = "{USER}"\n'
            f'password_file = "{secret}"\n[exporter]\nenabled = false\n'
        )
        daemons.append(d.start())
    a, b, c = daemons
    model_dir = make_model_dir(tmp_path / "m", weights=os.urandom(4096))
    assert a.cli("push", str(model_dir)).returncode == 0
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        got = b.cli("log", "demo", "--json")
        if got.returncode == 0 and json.loads(got.stdout)["items"]:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the version did not reach B")
    # B has none of the files: the checkout fetches them from the TLS registry with the credentials.
    out = tmp_path / "out"
    done = b.cli("checkout", "demo:1", str(out))
    assert done.returncode == 0, done.stderr
    for p in model_dir.rglob("*"):
        if p.is_file():
            assert (out / p.relative_to(model_dir)).read_bytes() == p.read_bytes()
    repos = reg.base / "data" / "docker" / "registry" / "v2" / "repositories" / "modeltui"
    assert any(repos.iterdir()), "the version's files went through the TLS registry"
    doctor = {x["name"]: x for x in cli_json(a, "doctor")["checks"]}
    assert doctor["artifact registry"]["status"] == "ok", doctor["artifact registry"]
    # C's password is wrong: its push is refused (UNAVAILABLE, exit 7) saying which registry said 401, and so
    # does its doctor.
    refused = c.cli("push", str(make_model_dir(tmp_path / "m2", "other")))
    assert refused.returncode == 7, refused.stderr
    for part in ("cannot share the version's files", reg.address, "401", "refused the credentials"):
        assert part in refused.stderr, refused.stderr
    failed = c.cli("doctor", "--json")
    assert failed.returncode != 0, failed.stdout
    doctor = {x["name"]: x for x in json.loads(failed.stdout)["checks"]}
    assert doctor["artifact registry"]["status"] == "fail", doctor["artifact registry"]
    assert "401" in doctor["artifact registry"]["detail"], doctor["artifact registry"]


# -- the Docker engine pushes an image to it --------------------------------------------------------------------


def _tiny_image(api: Any, repository: str, tag: str = "1") -> None:
    """A one-file image made by import (no build, no base image): enough for a push."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"modeltui registry test\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    api.import_image_from_data(buf.getvalue(), repository=repository, tag=tag)


def test_the_docker_engine_pushes_with_auth_config_and_a_wrong_password_fails_clearly(reg: TlsRegistry) -> None:
    from daemon.deploy.image import ImageError, push_image

    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except docker.errors.DockerException as exc:
        need(False, f"Docker engine not reachable ({exc}); run scripts/services.sh as root")
    api = client.api
    repository = f"{reg.address}/modeltui/tls-test-{uuid.uuid4().hex[:12]}"
    tag = f"{repository}:1"
    _tiny_image(api, repository)
    lines: list[str] = []
    try:
        with reg.engine_trusts_it():
            with pytest.raises(ImageError, match=r"(?i)pushing .* failed: .*(unauthorized|authentication)"):
                push_image(api, tag, lines.append, {"username": USER, "password": "not-the-password"})
            push_image(api, tag, lines.append, {"username": USER, "password": PASSWORD})
        store = ArtifactStore(reg.address, timeout_s=10, access=access(reg))
        _, _, body = store._request("GET", f"/v2/{repository.split('/', 1)[1]}/tags/list", (200,))
        assert json.loads(body)["tags"] == ["1"]
        assert any("Pushed" in line for line in lines), lines
    finally:
        api.remove_image(tag, force=True)
        client.close()


# -- token auth (WWW-Authenticate: Bearer): a local fake of distribution's token flow -------------------------


class _TokenRegistry(http.server.BaseHTTPRequestHandler):
    """``/v2/...`` wants ``Bearer tok-<scope>``; ``/token`` gives it for the right Basic credentials. ``realm``
    is where the challenge sends clients (a class attribute a test may change)."""

    realm = ""
    log: list[tuple[str, str | None]]

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization")
        self.log.append((self.path.split("?")[0], auth))
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/token":
            scope = urllib.parse.parse_qs(url.query).get("scope", [""])[0]
            good = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if auth != good:
                self._send(401, b'{"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]}')
            else:
                self._send(200, json.dumps({"token": f"tok-{scope}"}).encode())
            return
        scope = "registry:catalog:*" if url.path == "/v2/" else "repository:m:pull"
        if auth != f"Bearer tok-{scope}":
            challenge = f'Bearer realm="{self.realm}",service="fake",scope="{scope}"'
            self._send(401, b"{}", {"WWW-Authenticate": challenge})
        else:
            self._send(200, b"blob")


@pytest.fixture
def token_registry() -> Iterator[tuple[str, type[_TokenRegistry]]]:
    handler = type("H", (_TokenRegistry,), {"log": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    address = f"127.0.0.1:{server.server_address[1]}"
    handler.realm = f"http://{address}/token"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield address, handler
    server.shutdown()
    server.server_close()


def test_a_token_auth_registry_gets_the_credentials_at_its_realm_and_the_token_after(
    token_registry: tuple[str, type[_TokenRegistry]],
) -> None:
    address, handler = token_registry
    store = ArtifactStore(address, timeout_s=5, access=RegistryAccess(address, username=USER, password=PASSWORD))
    store.ping()
    assert fetch(store, "m", ArtifactFile("x", hashlib.sha256(b"blob").hexdigest(), 4)) == b"blob"
    basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    # The credentials went to the realm, once per scope (the catalog, then the repository); the tokens to /v2/.
    assert [auth for path, auth in handler.log if path == "/token"] == [basic, basic]
    assert ("/v2/", "Bearer tok-registry:catalog:*") in handler.log
    wrong = ArtifactStore(address, timeout_s=5, access=RegistryAccess(address, username=USER, password="nope"))
    with pytest.raises(ArtifactError, match=r"/token: 401 .*refused the credentials"):
        wrong.ping()


def test_a_token_realm_over_plain_http_elsewhere_gets_no_credentials(
    token_registry: tuple[str, type[_TokenRegistry]],
) -> None:
    address, handler = token_registry
    handler.realm = "http://192.0.2.1/token"  # TEST-NET-1: never contacted
    store = ArtifactStore(address, timeout_s=5, access=RegistryAccess(address, username=USER, password=PASSWORD))
    with pytest.raises(ArtifactError, match="refusing to ask for a token over plain HTTP"):
        store.ping()
    assert [path for path, _ in handler.log] == ["/v2/"]


def test_the_docker_backend_pushes_with_the_settings_credentials(reg: TlsRegistry, tmp_path: Path) -> None:
    """The daemon's wiring: ``[registry]`` settings → the Docker backend (as the daemon builds it) → the push of
    ``ensure_image`` (the image exists, so nothing is built: only the push runs)."""
    from daemon.app import _docker_backend
    from daemon.deploy import image as img
    from daemon.deploy.base import InstanceSpec
    from daemon.protocol.deploy import ContainerOptions
    from daemon.settings import load_settings

    secret = tmp_path / "registry-password"
    secret.write_text(PASSWORD)
    secret.chmod(0o600)
    config = tmp_path / "daemon.toml"
    config.write_text(
        f'[docker]\nregistry = "{reg.address}"\n[registry]\ntls = true\nca_file = "{reg.cert}"\n'
        f'username = "{USER}"\npassword_file = "{secret}"\n'
    )
    settings = load_settings(config, environ={"MODELTUI_STATE_DIR": str(tmp_path / "state")})
    backend = _docker_backend(settings, "registry-tls-test")
    assert backend is not None
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except docker.errors.DockerException as exc:
        need(False, f"Docker engine not reachable ({exc}); run scripts/services.sh as root")
    model, digest = f"tls-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    tag = img.image_tag(reg.address, model, 1, digest)
    _tiny_image(client.api, tag.rpartition(":")[0], tag.rpartition(":")[2])
    spec = InstanceSpec(
        deployment="d", instance_id="i", model=model, version=1, digest=digest, model_dir=tmp_path, public_port=1,
        admin_port=2, env={}, options=ContainerOptions(), log_dir=tmp_path / "logs",
    )  # fmt: skip
    lines: list[str] = []
    try:
        with reg.engine_trusts_it():
            assert asyncio.run(backend.ensure_image(spec, lines.append)) == tag
        store = ArtifactStore(reg.address, timeout_s=10, access=access(reg))
        _, _, body = store._request("GET", f"/v2/{tag.split('/', 1)[1].rpartition(':')[0]}/tags/list", (200,))
        assert json.loads(body)["tags"] == [tag.rpartition(":")[2]], lines
    finally:
        client.api.remove_image(tag, force=True)
        client.close()
        asyncio.run(backend.close())
