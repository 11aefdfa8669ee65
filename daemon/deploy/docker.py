"""The Docker backend: build an image per version, push it to the registry, run it with labels.

Every engine call runs in a worker thread with a short timeout (``[docker] timeout_seconds``; builds and
pushes get a long one), and every way the engine can be missing — no socket, a socket nobody answers, a
restart in the middle — becomes :class:`BackendUnavailable` within that timeout, so a stopped Docker never
hangs the daemon, and the daemon starts fine without Docker (the client is made on first use).

Containers carry ``modeltui.owner`` (a stable id of the daemon's state directory), which is how
:meth:`DockerBackend.discover` finds them again after a daemon restart. What a container may be given is
decided in one place, :func:`run_kwargs`, from a fixed allowlist: never privileged, no devices, capabilities
or namespaces of the host, no mounts but the daemon's read-only copy of the TLS certificate and key. Every
container is hardened the same way (:func:`hardening`): a read-only root filesystem with a small tmpfs on
``/tmp``, every capability dropped, no-new-privileges, a pids limit, memory and CPU limits (the deployment's
or ``[docker]``'s), an unprivileged uid.

Networks: with ``network = "bridge"`` each deployment gets its own user-defined bridge network
(:func:`network_name`), so containers of different deployments cannot reach each other and none reaches the
host's loopback services; only the public port is published on ``bind_address``, the admin port on
127.0.0.1 only (for the daemon). With ``network = "host"`` containers share the host's network: the public
port listens on ``bind_address``, the admin port on 127.0.0.1 only (``--admin-host``), where other local
users and containers still reach it: its routes are as private as the admin token makes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.constants
import docker.errors
import docker.types
import docker.utils
import requests.exceptions
import urllib3.exceptions

from daemon.protocol.deploy import check_env_name, check_env_value
from daemon.serving.auth import ENV_TLS_CERT, ENV_TLS_KEY
from daemon.settings import DockerSection

from . import image as img
from .base import Backend, BackendError, BackendUnavailable, Instance, InstanceSpec, ProgressLine, owner_id

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Builds and pushes stream for minutes; their HTTP reads get this long instead of ``timeout_seconds``.
LONG_TIMEOUT_SECONDS = 3600.0
LABEL_OWNER = "modeltui.owner"
#: The only keyword arguments that ever reach ``containers.run`` (see :func:`run_kwargs`).
ALLOWED_RUN_KEYS = frozenset(
    {
        "image", "command", "name", "detach", "labels", "environment", "user", "network_mode", "ports",
        "nano_cpus", "mem_limit", "log_config", "restart_policy",
        "read_only", "tmpfs", "cap_drop", "security_opt", "pids_limit", "mounts",
    }
)  # fmt: skip
#: The keys :func:`hardening` sets: always present, never loosened by a deployment.
HARDENING_KEYS = frozenset({"read_only", "tmpfs", "cap_drop", "security_opt", "pids_limit", "user"})
LABEL_DEPLOYMENT = "modeltui.deployment"
#: where a container finds the daemon's copy of ``[serving] tls_cert``/``tls_key`` (read-only)
TLS_MOUNT = "/run/modeltui-tls"
TLS_CERT_NAME, TLS_KEY_NAME = "cert.pem", "key.pem"


#: What a missing, hung or restarting engine raises (API errors with a status are handled before these).
_TRANSPORT_ERRORS = (
    docker.errors.DockerException,
    requests.exceptions.RequestException,
    urllib3.exceptions.HTTPError,
    OSError,
)


def check_env(env: dict[str, str]) -> dict[str, str]:
    """Re-check what reaches ``docker run`` (the protocol checked it already: defense in depth)."""
    for name, value in env.items():
        try:
            check_env_name(name)
            check_env_value(value)
        except ValueError as exc:
            raise BackendError(f"environment: {exc}") from None
    return dict(env)


def hardening(settings: DockerSection) -> dict[str, Any]:
    """What every container gets, whatever its deployment says: nothing in the image can be changed
    (``/tmp`` is a small tmpfs, the only place to write; logs go to stdout), no capability, no way to gain
    privileges (setuid bits are stripped from the image too), a bounded number of processes, a uid that owns
    nothing."""
    return {
        "user": img.RUN_AS,
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,nosuid,nodev,noexec,size={settings.tmpfs_mb}m,mode=1777"},
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "pids_limit": settings.pids_limit,
    }


def stage_tls(root: Path, deployment: str, cert: Path, key: Path) -> Path:
    """Blocking: copy ``[serving] tls_cert``/``tls_key`` to ``root/deployment`` for a container to mount
    read-only (a container cannot read the host's files otherwise, and the key must not be readable by the
    workload's uid anywhere else). ``root`` is 0700 (no other host user gets in); the copy of the key is owned
    by the container's uid with mode 0400 when the daemon can chown (it runs as root), else mode 0644, which
    only the daemon and the container can reach. Copied again at every start: a renewed certificate counts."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    target = root / deployment
    target.mkdir(mode=0o755, exist_ok=True)
    os.chmod(target, 0o755)  # the container's uid must enter its mount point; root above keeps others out
    uid, gid = (int(part) for part in img.RUN_AS.split(":"))
    for src, name, secret in ((cert, TLS_CERT_NAME, False), (key, TLS_KEY_NAME, True)):
        try:
            data = src.read_bytes()
        except OSError as exc:
            raise BackendError(f"cannot read [serving] {'tls_key' if secret else 'tls_cert'} {src}: {exc}") from None
        fd, tmp = tempfile.mkstemp(dir=target, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            if secret and os.geteuid() == 0:
                os.chown(tmp, uid, gid)
                os.chmod(tmp, 0o400)
            else:
                os.chmod(tmp, 0o644)
            os.replace(tmp, target / name)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    return target


def network_name(owner: str, deployment: str) -> str:
    """The bridge network of one deployment (``network = "bridge"``); the owner keeps two daemons apart."""
    return f"modeltui-{owner}-{deployment}"


def run_kwargs(
    spec: InstanceSpec, settings: DockerSection, *, image: str, owner: str, tls_dir: Path | None = None
) -> dict[str, Any]:
    """The complete ``containers.run`` arguments for one instance: only allowlisted keys, only from
    ``ContainerOptions`` and the backend's own settings. When the runtime serves TLS, ``tls_dir`` (the
    daemon's copy from :func:`stage_tls`) is mounted read-only at :data:`TLS_MOUNT`: the only mount."""
    env = check_env(spec.env)
    bridge = settings.network == "bridge"
    if bridge:  # the container's own network namespace: listen on all of it; only published ports are reachable
        listen = admin_listen = "0.0.0.0"
    else:  # the host's network: the admin port on its loopback only, whatever bind_address is
        listen, admin_listen = settings.bind_address, "127.0.0.1"
    runtime = dict(spec.runtime_env)
    mounts: list[Any] = []
    if ENV_TLS_CERT in runtime or ENV_TLS_KEY in runtime:
        if tls_dir is None:
            raise BackendError("TLS for a container needs the daemon's copy of the certificate and key")
        runtime.update({ENV_TLS_CERT: f"{TLS_MOUNT}/{TLS_CERT_NAME}", ENV_TLS_KEY: f"{TLS_MOUNT}/{TLS_KEY_NAME}"})
        mounts.append(docker.types.Mount(TLS_MOUNT, str(tls_dir), type="bind", read_only=True))
    env.update(runtime, MODELTUI_ADMIN_PORT=str(spec.admin_port), MODELTUI_ADMIN_HOST="127.0.0.1")
    opts = spec.options
    kw: dict[str, Any] = {
        "image": image,
        "command": [
            "--host", listen, "--admin-host", admin_listen,
            "--port", str(spec.admin_port), "--public-port", str(spec.public_port),
            "--model-version", str(spec.version), "--instance", spec.instance_id,
            *([] if spec.feedback_inputs else ["--no-feedback-inputs"]),
        ],
        "name": container_name(spec.deployment, spec.instance_id),
        "detach": True,
        "labels": {
            LABEL_OWNER: owner,
            LABEL_DEPLOYMENT: spec.deployment,
            "modeltui.instance": spec.instance_id,
            "modeltui.model": spec.model,
            "modeltui.version": str(spec.version),
            "modeltui.public_port": str(spec.public_port),
            "modeltui.admin_port": str(spec.admin_port),
        },
        "environment": env,
        "log_config": {
            "type": "json-file",
            "config": {"max-size": f"{opts.log_max_mb}m", "max-file": str(opts.log_files)},
        },
        "restart_policy": {"Name": "no"},  # the daemon supervises and restarts
        **hardening(settings),
    }  # fmt: skip
    if mounts:  # the only mount ever: the daemon's read-only copy of [serving] tls_cert/tls_key
        kw["mounts"] = mounts
    if not bridge:
        kw["network_mode"] = "host"
    else:
        kw["network_mode"] = network_name(owner, spec.deployment)
        kw["ports"] = {  # the admin port for the daemon only (host loopback), never on bind_address
            f"{spec.public_port}/tcp": (settings.bind_address, spec.public_port),
            f"{spec.admin_port}/tcp": ("127.0.0.1", spec.admin_port),
        }
    cpus = opts.cpus if opts.cpus is not None else settings.cpus
    memory_mb = opts.memory_mb if opts.memory_mb is not None else settings.memory_mb
    if cpus:
        kw["nano_cpus"] = int(cpus * 1e9)
    if memory_mb:
        kw["mem_limit"] = f"{memory_mb}m"
    extra = set(kw) - ALLOWED_RUN_KEYS
    if extra:  # a programming error, not user input: refuse rather than run something unreviewed
        raise BackendError(f"refusing container options outside the allowlist: {sorted(extra)}")
    return kw


def _read_timeout(exc: BaseException) -> bool:
    """requests wraps a read timeout on the engine's unix socket in a ConnectionError: not an engine outage."""
    return isinstance(exc, requests.exceptions.ConnectionError) and any(
        isinstance(arg, urllib3.exceptions.ReadTimeoutError) for arg in exc.args
    )


def container_name(deployment: str, instance_id: str) -> str:
    return f"modeltui-{deployment}-{instance_id}"


def _parse_time(value: str) -> datetime:
    """Docker's RFC 3339 with nanoseconds → an aware datetime (microseconds)."""
    if not value or value.startswith("0001-"):
        return datetime.now(UTC)
    head, _, frac = value.rstrip("Z").partition(".")
    tz = ""
    for sign in ("+", "-"):
        if sign in frac:
            frac, _, rest = frac.partition(sign)
            tz = sign + rest
    micro = (frac + "000000")[:6] if frac else "000000"
    return datetime.fromisoformat(f"{head}.{micro}{tz or '+00:00'}")


def local_engine(where: str) -> bool:
    """Whether ``where`` (``[docker] host`` or ``DOCKER_HOST``) is an engine on this machine: a unix socket.
    A tcp:// or ssh:// engine may be another machine, where a bind mount names that machine's path."""
    return where.startswith(("unix:", "http+unix:", "/"))


class DockerBackend(Backend):
    """Runs deployments as containers of the Docker Engine at ``settings.host`` (or ``DOCKER_HOST``)."""

    name = "docker"
    builds_images = True

    def __init__(
        self,
        settings: DockerSection,
        *,
        state_dir: Path,
        owner: str | None = None,
        registry_auth: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.registry_auth = registry_auth  # [registry] credentials for pushes (None: anonymous)
        self.state_dir = state_dir
        self.owner = owner or owner_id(state_dir)
        self.wheelhouse = settings.wheelhouse or state_dir / "wheelhouse"
        self.where = settings.host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        self._client: Any = None
        self._long: Any = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._streams: set[Any] = set()
        self._image_locks: dict[str, asyncio.Lock] = {}
        self._warned_host_network = False

    def _warn_host_network(self) -> None:
        """Said once per daemon run, when a container is started or adopted with host networking."""
        if self.settings.network == "host" and not self._warned_host_network:
            self._warned_host_network = True
            log.warning(
                "Docker deployments share the host's network ([docker] network = host): a container can reach "
                "the host's loopback services and other deployments' admin ports, which only their admin token "
                "protects; use network = bridge where the engine has bridge networking (docs/deploy-docker.md)"
            )

    # -- the engine ----------------------------------------------------------------------------------------

    def _make(self, timeout: float) -> Any:
        """A client speaking the engine's API version. docker-py would ask for it inside its constructor and
        leak the connection when that fails, so the client starts at the oldest version and asks here."""
        version = docker.constants.MINIMUM_DOCKER_API_VERSION
        if self.settings.host:
            client = docker.DockerClient(base_url=self.settings.host, timeout=timeout, version=version)
        else:
            client = docker.from_env(timeout=timeout, version=version)
        try:
            server = str(client.api.version(api_version=False)["ApiVersion"])
        except BaseException:
            client.close()
            raise
        newest = docker.constants.DEFAULT_DOCKER_API_VERSION
        client.api._version = newest if docker.utils.version_lt(newest, server) else server
        return client

    def _api(self, *, long: bool = False) -> Any:
        """The low-level client (made on first use: making it asks the engine for its API version)."""
        with self._lock:
            if self._closed.is_set():
                raise BackendError("the Docker backend is closed")
            if self._client is None:
                self._client = self._make(self.settings.timeout_seconds)
            if not long:
                return self._client.api
            if self._long is None:
                self._long = self._make(LONG_TIMEOUT_SECONDS)
            return self._long.api

    def _unavailable(self, exc: BaseException) -> BackendUnavailable:
        reason = str(exc).strip() or type(exc).__name__
        return BackendUnavailable(f"the Docker engine at {self.where} is not reachable: {reason[:300]}")

    def _guard(self, fn: Callable[[], T]) -> T:
        """Run one engine interaction, translating transport failures (engine down) and API errors."""
        try:
            self._probe()
            return fn()
        except docker.errors.NotFound:
            raise
        except BackendError:
            raise
        except Exception as exc:
            raise self._translate(exc) from None

    def _probe(self) -> None:
        """Connect to a unix:// engine socket first: docker-py leaks its socket when that connect fails
        (engine down), which would be one leaked descriptor per call for as long as the engine is down."""
        if not self.where.startswith("unix://"):
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.settings.timeout_seconds)
            sock.connect(self.where.removeprefix("unix://"))

    def _translate(self, exc: Exception) -> Exception:
        if isinstance(exc, docker.errors.APIError):
            return BackendError(f"Docker: {exc.explanation or exc}")
        if isinstance(exc, img.ImageError):
            return BackendError(str(exc))
        if isinstance(exc, _TRANSPORT_ERRORS):
            return self._unavailable(exc)
        return exc

    async def _call(self, fn: Callable[[], T]) -> T:
        return await asyncio.to_thread(self._guard, fn)

    async def ping(self) -> None:
        """Raise :class:`BackendUnavailable` unless the engine answers (within ``timeout_seconds``)."""
        await self._call(lambda: self._api().ping())

    # -- start ---------------------------------------------------------------------------------------------

    async def ensure_image(self, spec: InstanceSpec, progress: ProgressLine) -> str:
        """The image for this version: reused when the tag exists, else built; pushed when a registry is set."""
        tag = img.image_tag(self.settings.registry, spec.model, spec.version, spec.digest)
        loop = asyncio.get_running_loop()

        def report(line: str) -> None:  # called from worker threads: hand the line to the loop
            loop.call_soon_threadsafe(progress, line)

        lock = self._image_locks.setdefault(tag, asyncio.Lock())
        async with lock:
            if await self._call(lambda: self._image_exists(tag)):
                progress(f"image {tag} exists; reusing it")
            else:
                try:
                    requirements = img.read_requirements(spec.model_dir)
                    wheels = await img.ensure_wheelhouse(self.wheelhouse, requirements, progress)
                except img.ImageError as exc:
                    raise BackendError(str(exc)) from None
                labels = {
                    LABEL_OWNER: self.owner,
                    "modeltui.model": spec.model,
                    "modeltui.version": str(spec.version),
                    "modeltui.digest": spec.digest,
                }
                build_root = self.state_dir / "build"
                build_root.mkdir(parents=True, exist_ok=True)
                ctx = Path(tempfile.mkdtemp(prefix="ctx-", dir=build_root))
                try:
                    img.prepare_context(
                        ctx, model_dir=spec.model_dir, wheels=wheels,
                        dockerfile_text=img.dockerfile(self.settings.base_image, labels),
                    )  # fmt: skip
                    progress(f"building {tag} from {self.settings.base_image}")
                    started = time.monotonic()
                    await self._call(lambda: img.build_image(self._api(long=True), ctx, tag, report))
                    progress(f"built {tag} in {time.monotonic() - started:.1f}s")
                finally:
                    await asyncio.to_thread(shutil.rmtree, ctx, True)
            if self.settings.registry:
                progress(f"pushing {tag}")
                try:
                    await self._call(lambda: img.push_image(self._api(long=True), tag, report, self.registry_auth))
                except BackendUnavailable:
                    raise
                except BackendError as exc:
                    raise BackendError(f"{exc} (registry {self.settings.registry})") from None
        return tag

    def _image_exists(self, tag: str) -> bool:
        try:
            self._api().inspect_image(tag)
        except docker.errors.NotFound:
            return False
        return True

    async def start(self, spec: InstanceSpec, progress: ProgressLine) -> Instance:
        tls_dir = self.state_dir / "docker-tls" / spec.deployment
        run_kwargs(spec, self.settings, image="-", owner=self.owner, tls_dir=tls_dir)  # bad input fails before a build
        tls = ENV_TLS_CERT in spec.runtime_env or ENV_TLS_KEY in spec.runtime_env
        if tls and not local_engine(self.where):
            raise BackendError(
                f"[serving] tls_cert/tls_key need a local Docker engine, but [docker] host (or DOCKER_HOST) is "
                f"{self.where}: a container mounts the daemon's copy of the certificate and key from this machine; "
                "use the engine's unix socket, or remove tls_cert/tls_key"
            )
        await self.ping()
        tag = await self.ensure_image(spec, progress)
        kw = run_kwargs(spec, self.settings, image=tag, owner=self.owner, tls_dir=tls_dir)
        if "mounts" in kw:
            cert, key = Path(spec.runtime_env[ENV_TLS_CERT]), Path(spec.runtime_env[ENV_TLS_KEY])
            await asyncio.to_thread(stage_tls, tls_dir.parent, spec.deployment, cert, key)
        self._warn_host_network()
        progress(f"starting container {kw['name']}")
        attrs = await self._call(lambda: self._run(kw))
        if not tls:  # TLS was turned off: the key's copy goes once no instance of the deployment mounts it
            try:
                await asyncio.to_thread(self._drop_tls_copy, spec.deployment, True)
            except Exception as exc:  # the container runs: a later start or the undeploy removes the copy
                log.warning("could not remove the TLS copy of deployment %s: %s", spec.deployment, exc)
        return Instance(
            backend=self.name,
            deployment=spec.deployment,
            instance_id=spec.instance_id,
            version=spec.version,
            key=str(attrs["Id"]),
            admin_port=spec.admin_port,
            public_port=spec.public_port,
            started_at=_parse_time(str(attrs.get("State", {}).get("StartedAt", ""))),
            image=tag,
            extra={"container": kw["name"]},
        )

    def _drop_tls_copy(self, deployment: str, unless_mounted: bool) -> None:
        """Blocking: delete the deployment's copy of ``tls_cert``/``tls_key`` (``STATE/docker-tls/<deployment>``).
        With ``unless_mounted``, keep it while a container of the deployment mounts it (the old instance during
        a rollout)."""
        target = self.state_dir / "docker-tls" / deployment
        if not target.exists():
            return
        if unless_mounted:
            labels = [f"{LABEL_OWNER}={self.owner}", f"{LABEL_DEPLOYMENT}={deployment}"]
            for c in self._api().containers(all=True, filters={"label": labels}):
                if any(m.get("Destination") == TLS_MOUNT for m in c.get("Mounts") or []):
                    return
        shutil.rmtree(target, ignore_errors=True)

    def remove_logs(self, deployment: str) -> None:
        """The engine keeps a container's logs (removed with it); what the daemon keeps of a removed deployment
        is its copy of the TLS certificate and key."""
        self._drop_tls_copy(deployment, unless_mounted=False)

    def _run(self, kw: dict[str, Any]) -> dict[str, Any]:
        api = self._api()
        try:  # a container of ours left under this name by a crash would make the name conflict
            old = api.inspect_container(kw["name"])
            if old["Config"]["Labels"].get(LABEL_OWNER) == self.owner:
                log.info("removing leftover container %s (%s)", kw["name"], old["Id"][:12])
                api.remove_container(old["Id"], force=True)
        except docker.errors.NotFound:
            pass
        if kw["network_mode"] != "host":
            self._ensure_network(api, kw["network_mode"], kw["labels"][LABEL_DEPLOYMENT])
        client = self._client
        try:
            container = client.containers.run(**kw)
        except docker.errors.APIError:
            with contextlib.suppress(docker.errors.APIError):
                api.remove_container(kw["name"], force=True)  # created but not started: do not leak it
            raise
        return dict(api.inspect_container(container.id))

    def _ensure_network(self, api: Any, name: str, deployment: str) -> None:
        """The deployment's own bridge network (instances of one deployment share it, a rollout too)."""
        try:
            found = api.inspect_network(name)
        except docker.errors.NotFound:
            try:
                api.create_network(
                    name, driver="bridge", check_duplicate=True,
                    labels={LABEL_OWNER: self.owner, LABEL_DEPLOYMENT: deployment},
                )  # fmt: skip
                log.info("created network %s", name)
                return
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: another instance made it meanwhile
                    raise
                found = api.inspect_network(name)
        if (found.get("Labels") or {}).get(LABEL_OWNER) != self.owner:
            raise BackendError(f"the Docker network {name} exists but is not this daemon's; remove it")

    def _remove_idle_networks(self, api: Any, only: str | None = None) -> None:
        """Remove this daemon's deployment networks that no container uses any more (``only``: that one)."""
        filters: dict[str, Any] = {"label": f"{LABEL_OWNER}={self.owner}"}
        if only is not None:
            filters["name"] = only
        for net in api.networks(filters=filters):
            name = str(net.get("Name", ""))
            if only is not None and name != only:
                continue  # the name filter matches substrings
            if api.containers(all=True, filters={"network": name}):
                continue
            try:
                api.remove_network(net["Id"])
                log.info("removed network %s", name)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:  # a container joined meanwhile ("has active endpoints")
                log.info("keeping network %s: %s", name, exc.explanation or exc)

    # -- images ------------------------------------------------------------------------------------------

    async def prune_images(self, *, keep: int, in_use: set[tuple[str, int]], dry_run: bool = False) -> img.Pruned:
        """Remove this daemon's images that the policy lets go (see :func:`image.images_to_remove`); never one
        being built, nor one any container on the engine was made from (Docker would refuse it anyway)."""
        if await asyncio.to_thread(self._no_engine_here):
            return img.Pruned()  # no images either: gc need not mention Docker
        building = {tag for tag, lock in self._image_locks.items() if lock.locked()}
        return await self._call(lambda: self._prune(keep, in_use, building, dry_run))

    def _no_engine_here(self) -> bool:
        """No engine socket on this host (Docker not installed), as opposed to an engine that does not answer."""
        return self.where.startswith("unix://") and not os.path.exists(self.where.removeprefix("unix://"))

    def _prune(self, keep: int, in_use: set[tuple[str, int]], building: set[str], dry_run: bool) -> img.Pruned:
        api = self._api(long=True)  # `system df` and removing a large image outlast the 5 s of routine calls
        listing = api.images(filters={"label": f"{LABEL_OWNER}={self.owner}"})
        used_ids = {str(c.get("ImageID")) for c in api.containers(all=True)}
        tags_left = {str(i["Id"]): max(1, len(i.get("RepoTags") or [])) for i in listing}
        doomed = [
            i for i in img.images_to_remove(img.built_images(listing), keep=keep, in_use=in_use)
            if i.ref not in building and not (i.image_id in used_ids and tags_left[i.image_id] == 1)
        ]  # fmt: skip
        pruned = img.Pruned()
        if not doomed:
            return pruned
        unique = {str(i["Id"]): max(0, int(i["Size"]) - max(0, int(i["SharedSize"]))) for i in api.df()["Images"]}
        for image in doomed:
            if not dry_run and not self._remove_image(api, image.ref):
                continue
            pruned.removed.append(image.ref)
            tags_left[image.image_id] -= 1
            if tags_left[image.image_id] == 0:
                pruned.bytes += unique.get(image.image_id, 0)
        return pruned

    def _remove_image(self, api: Any, ref: str) -> bool:
        """Untag (or delete, for its last tag) one image; False when it was gone or is in use after all."""
        try:
            api.remove_image(ref, force=False)
        except docker.errors.NotFound:
            return False
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: a container was made from it meanwhile
                raise
            log.info("keeping image %s: %s", ref, exc.explanation or exc)
            return False
        log.info("removed image %s", ref)
        return True

    # -- wait / stop ---------------------------------------------------------------------------------------

    async def wait(self, instance: Instance) -> int | None:
        cancelled = threading.Event()
        try:
            return await asyncio.to_thread(self._wait, instance.key, cancelled)
        finally:  # a cancelled wait must not keep its thread until the container exits
            cancelled.set()

    def _wait(self, cid: str, cancelled: threading.Event) -> int | None:
        """Block until the container exits. Each wait is one short request; if the engine goes away (a
        restart), poll every second until it answers again, then wait again. Ends early when the backend
        closes or the awaiting coroutine was cancelled."""
        while not self._closed.is_set() and not cancelled.is_set():
            try:
                self._probe()
                result = self._api().wait(cid, timeout=self.settings.timeout_seconds)
                return int(result.get("StatusCode", -1))
            except docker.errors.NotFound:
                return None
            except (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError):
                continue  # still running
            except BackendError:
                return None
            except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
                if _read_timeout(exc):
                    continue  # still running: over a unix socket the timeout comes wrapped in a ConnectionError
                log.warning("waiting for container %s: %s; retrying until the engine answers", cid[:12], exc)
                cancelled.wait(1.0)
        return None

    async def stop(self, instance: Instance, grace: float = 10.0) -> None:
        await self._call(lambda: self._stop(instance.key, grace))

    def _stop(self, cid: str, grace: float) -> None:
        api = self._api()
        network = None
        with contextlib.suppress(docker.errors.NotFound):
            network = str(api.inspect_container(cid)["HostConfig"].get("NetworkMode") or "")
            api.stop(cid, timeout=max(0, round(grace)))
        try:
            api.remove_container(cid, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress
                raise
        if network and network.startswith(f"modeltui-{self.owner}-"):
            self._remove_idle_networks(api, only=network)

    # -- discover ------------------------------------------------------------------------------------------

    async def discover(self) -> list[Instance]:
        found = await self._call(self._discover)
        if found:
            self._warn_host_network()
        return found

    def _discover(self) -> list[Instance]:
        api = self._api()
        found: list[Instance] = []
        for c in api.containers(all=True, filters={"label": f"{LABEL_OWNER}={self.owner}"}):
            cid = str(c["Id"])
            labels = c.get("Labels") or {}
            state = c.get("State")
            inst = None
            if state == "running":
                try:
                    attrs = api.inspect_container(cid)
                    inst = Instance(
                        backend=self.name,
                        deployment=labels["modeltui.deployment"],
                        instance_id=labels["modeltui.instance"],
                        version=int(labels["modeltui.version"]),
                        key=cid,
                        admin_port=int(labels["modeltui.admin_port"]),
                        public_port=int(labels["modeltui.public_port"]),
                        started_at=_parse_time(str(attrs["State"].get("StartedAt", ""))),
                        image=str(attrs["Config"].get("Image") or c.get("Image") or ""),
                        extra={"container": str(attrs.get("Name", "")).lstrip("/")},
                    )
                except docker.errors.NotFound:
                    continue
                except (KeyError, ValueError):
                    log.warning("container %s has unreadable modeltui labels; removing it", cid[:12])
            if inst is not None:
                found.append(inst)
                continue
            if state == "removing":
                continue
            name = (c.get("Names") or ["?"])[0]
            log.info("removing %s container %s (%s) left by an earlier run", state, name, cid[:12])
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_container(cid, force=True)
        self._remove_idle_networks(api)
        return found

    # -- logs ----------------------------------------------------------------------------------------------

    async def logs(self, instance: Instance, tail: int) -> list[str]:
        def read() -> list[str]:
            try:
                raw = self._api().logs(instance.key, stdout=True, stderr=True, tail=max(0, tail))
            except docker.errors.NotFound:
                return []
            return bytes(raw).decode(errors="replace").splitlines()

        return await self._call(read)

    async def follow(self, instance: Instance) -> AsyncIterator[list[str]]:
        """Lines as they come, in batches; a thread reads the engine's stream into a queue."""
        await self.ping()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[list[str] | BaseException | None] = asyncio.Queue()
        done = threading.Event()
        holder: list[Any] = []

        def put(item: list[str] | BaseException | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def pump() -> None:
            since: float = time.time()
            try:
                while not done.is_set():
                    stream = self._api(long=True).logs(
                        instance.key, stdout=True, stderr=True, stream=True, follow=True, since=since
                    )
                    holder.append(stream)
                    self._streams.add(stream)
                    try:
                        if done.is_set():
                            return
                        partial = b""
                        for chunk in stream:
                            since = time.time()
                            partial += chunk
                            *lines, partial = partial.split(b"\n")
                            if lines:
                                put([line.decode(errors="replace") for line in lines])
                        if partial:
                            put([partial.decode(errors="replace")])
                        return  # the stream ended: the container stopped
                    except (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError):
                        continue  # quiet for an hour: ask again from where we were
                    finally:
                        self._streams.discard(stream)
                        stream.close()
            except docker.errors.NotFound:
                return
            except Exception as exc:
                if not done.is_set():
                    put(exc if isinstance(exc, BackendError) else self._translate(exc))
            finally:
                put(None)

        worker = asyncio.ensure_future(asyncio.to_thread(pump))
        pending: list[list[str] | BaseException | None] = []
        try:
            while True:
                item = pending.pop() if pending else await queue.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                batch = list(item)
                while not queue.empty():  # lines that arrived together go out together
                    more = queue.get_nowait()
                    if more is None or isinstance(more, BaseException):
                        pending.append(more)  # after this batch
                        break
                    batch.extend(more)
                yield batch
        finally:
            done.set()
            for stream in holder:
                with contextlib.suppress(Exception):
                    stream.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(worker), timeout=self.settings.timeout_seconds)

    # -- close ---------------------------------------------------------------------------------------------

    async def close(self) -> None:
        self._closed.set()
        for stream in list(self._streams):
            with contextlib.suppress(Exception):
                stream.close()
        with self._lock:
            clients, self._client, self._long = [self._client, self._long], None, None
        for client in clients:
            if client is not None:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(client.close)
