"""Daemon settings: defaults for the mode, then the TOML file, then the environment. No I/O at import."""

from __future__ import annotations

import ipaddress
import os
import stat
import tomllib
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from daemon.protocol import paths


class ConfigError(Exception):
    """The configuration cannot be used; the message says where and why."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DaemonSection(_Section):
    mode: paths.Mode | None = None
    socket: Path | None = None
    state_dir: Path | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: ``text`` (one line per record) or ``json`` (one JSON object per line); under systemd (JOURNAL_STREAM)
    #: each line also starts with its syslog priority, ``<3>`` … ``<7>``, for journald
    log_format: Literal["text", "json"] = "text"
    max_clients: Annotated[int, Field(ge=1, le=10_000)] = 256
    #: connections one uid may hold (root and the daemon's own user excepted: they are admins)
    max_clients_per_uid: Annotated[int, Field(ge=1, le=10_000)] = 32
    #: the last this many of ``max_clients`` are only for admins (at most ``max_clients`` - 1)
    admin_reserved_clients: Annotated[int, Field(ge=0, le=10_000)] = 8
    #: a connection idle this long after hello (nothing in flight, no subscription) is closed; 0 = never
    idle_timeout_seconds: Annotated[float, Field(ge=0, le=86_400)] = 300.0


class StoreSection(_Section):
    busy_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 5.0
    gc_grace_seconds: Annotated[int, Field(ge=0)] = 3600


class DeploySection(_Section):
    """Supervision of deployments (both backends)."""

    health_timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 120.0
    stop_grace_seconds: Annotated[float, Field(ge=0, le=600)] = 10.0
    restart_backoff_max_seconds: Annotated[float, Field(gt=0, le=3600)] = 30.0
    #: this many exits, each within ``crashloop_window_seconds`` of starting, in a row = a crash loop
    crashloop_restarts: Annotated[int, Field(ge=1, le=1000)] = 5
    crashloop_window_seconds: Annotated[float, Field(gt=0)] = 60.0
    log_max_mb: Annotated[int, Field(ge=1, le=10_240)] = 10
    log_files: Annotated[int, Field(ge=1, le=100)] = 3
    #: fork process deployments from a warm process that has these modules imported (fast starts)
    zygote: bool = True
    #: runtimes keep the inputs of their last 100,000 predictions, so labelled feedback can train a
    #: challenger (``data = "feedback"``, docs/maintenance.md); about 50 MiB per runtime at 30 numeric
    #: inputs once full. false: nothing is kept, and maintenance cannot use feedback as data.
    feedback_inputs: bool = True
    preload: Annotated[list[str], Field(max_length=50)] = Field(
        default_factory=lambda: ["numpy", "sklearn.ensemble", "sklearn.linear_model", "skops.io"]
    )


def _zero_or_at_least_32(value: int) -> int:
    if 0 < value < 32:
        raise ValueError("use 0 (no limit) or at least 32 MiB")
    return value


class ServingSection(_Section):
    """Authentication and TLS of the deployments' runtimes (docs/security.md, "Endpoint authentication").

    A deployment is *beyond loopback* when its runtime listens on an address outside 127.0.0.0/8 and ::1:
    today that is the Docker backend with ``[docker] bind_address`` such as ``0.0.0.0`` (the process backend
    always binds 127.0.0.1)."""

    #: auto: the prediction and feedback routes need the deployment's token when it is beyond loopback, and
    #: in system mode on loopback too (every local user reaches it); only a user-mode daemon's loopback
    #: runtimes stay open; on/off: always/never. The admin routes always need the admin token.
    auth: Literal["auto", "on", "off"] = "auto"
    #: ``/health`` (and ``/ping``, ``/health/live``) answer without a token: load balancers probe them, and
    #: they reveal nothing about inputs
    health_open: bool = True
    #: ``/metrics`` without a token; None: open on loopback in user mode, closed beyond it and in system mode
    #: (it carries per-feature histograms of the clients' inputs). The daemon's scrapes send the admin token.
    metrics_open: bool | None = None
    #: PEM certificate (chain) and key: the runtime's public port serves HTTPS (both or neither;
    #: ``modeltuid tls self-signed`` makes a pair for a first try)
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @model_validator(mode="after")
    def _pair(self) -> ServingSection:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("set both tls_cert and tls_key (or neither)")
        return self


class DockerSection(_Section):
    """The Docker backend: where the engine is, what images start from, where they are pushed."""

    host: str | None = None  # None: DOCKER_HOST or the engine's default socket
    base_image: Annotated[str, Field(min_length=1, max_length=256)] = "modeltui-base:bookworm"
    registry: Annotated[str, Field(max_length=256)] = "127.0.0.1:5000"  # "" = do not push
    network: Literal["host", "bridge"] = "host"
    bind_address: str = "127.0.0.1"
    wheelhouse: Path | None = None  # None: STATE/wheelhouse
    timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 5.0  # per engine API call (not builds)
    #: per model, the images of this many newest versions stay after undeploy and rollouts (and gc); older
    #: ones go unless a deployment uses them (see docs/deploy-docker.md)
    keep_images: Annotated[int, Field(ge=0, le=1000)] = 2
    #: limits every container gets unless its deployment sets its own (``--cpus``/``--memory``); 0 = none
    cpus: Annotated[float, Field(ge=0, le=256)] = 1.0
    memory_mb: Annotated[int, Field(ge=0, le=1 << 20), AfterValidator(_zero_or_at_least_32)] = 1024
    #: at most this many processes and threads per container (a fork bomb stops here)
    pids_limit: Annotated[int, Field(ge=16, le=1 << 22)] = 256
    #: the size of the tmpfs on /tmp, the only writable place (the root filesystem is read-only)
    tmpfs_mb: Annotated[int, Field(ge=1, le=1 << 16)] = 64


class MonitorSection(_Section):
    """Scraping deployments' ``/metrics``, keeping samples and rollups (see docs/monitoring.md)."""

    scrape_interval_seconds: Annotated[float, Field(ge=0.2, le=3600)] = 15.0
    #: per target; never more than the interval (like Prometheus' scrape_timeout)
    scrape_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 2.0
    scrape_concurrency: Annotated[int, Field(ge=1, le=4096)] = 64
    #: raw samples (every scrape); longer windows are answered from the hourly rollups
    raw_retention_hours: Annotated[float, Field(gt=0, le=24 * 90)] = 6.0
    rollup_retention_days: Annotated[float, Field(gt=0, le=3650)] = 30.0

    @property
    def timeout_seconds(self) -> float:
        return min(self.scrape_timeout_seconds, self.scrape_interval_seconds)


def check_loopback_address(value: str) -> str:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) on a loopback address: the exporter has no authentication."""
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r}: use HOST:PORT, e.g. 127.0.0.1:9464 (port 0: any free port)")
    if not is_loopback_host(host):
        raise ValueError(
            f"{value!r}: the exporter serves plain HTTP on a loopback address only (127.0.0.1, ::1); "
            "beyond loopback set [exporter] tls_cert and tls_key, or allow_plain_http = true"
        )
    return value


def check_host_port(value: str) -> str:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6); port 0: any free port."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r}: use HOST:PORT, e.g. 127.0.0.1:9464 (port 0: any free port)")
    return value


class ExporterSection(_Section):
    """The daemon's own Prometheus ``/metrics`` (see docs/monitoring.md, "Exporter and Prometheus").

    It has no authentication: on loopback it serves plain HTTP; beyond loopback only with ``tls_cert`` and
    ``tls_key`` (HTTPS), or when ``allow_plain_http`` says so (docs/security.md, "TLS")."""

    enabled: bool = True
    address: Annotated[str, AfterValidator(check_host_port)] = "127.0.0.1:9464"
    #: PEM certificate (chain) and key: serve HTTPS (both or neither)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: serve plain HTTP on an address beyond loopback (refused otherwise: anyone on the network reads it)
    allow_plain_http: bool = False
    #: the derived metrics (rates, latency quantiles, quality, drift) are computed over this window
    window_seconds: Annotated[int, Field(ge=10, le=30 * 86400)] = 300

    @model_validator(mode="after")
    def _beyond_loopback(self) -> ExporterSection:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("set both tls_cert and tls_key (or neither)")
        if self.tls_cert is None and not self.allow_plain_http:
            check_loopback_address(self.address)
        return self

    @property
    def host(self) -> str:
        host = self.address.rpartition(":")[0]
        return host[1:-1] if host.startswith("[") else host

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])


def check_connect_string(value: str) -> str:
    """``HOST:PORT[,HOST:PORT...]`` (kazoo's form, without a chroot: that is ``chroot``); "" = no cluster."""
    if value:
        for part in value.split(","):
            host, sep, port = part.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
                raise ValueError(f"{part.strip()!r}: use HOST:PORT[,HOST:PORT...], e.g. 127.0.0.1:2181")
    return value


def check_chroot(value: str) -> str:
    parts = value.split("/")
    if not value.startswith("/") or value == "/" or any(p in ("", ".", "..") for p in parts[1:]):
        raise ValueError(f"{value!r}: use an absolute ZooKeeper path such as /modeltui")
    return value


class ClusterSection(_Section):
    """Several daemons sharing one registry through ZooKeeper (see docs/cluster.md). Without ``zookeeper``
    nothing changes: the daemon needs no other service."""

    zookeeper: Annotated[str, AfterValidator(check_connect_string), Field(max_length=1024)] = ""
    chroot: Annotated[str, AfterValidator(check_chroot), Field(max_length=256)] = "/modeltui"
    session_timeout_seconds: Annotated[float, Field(ge=2, le=120)] = 10.0
    #: writes that need the shared registry give up after this long (UNAVAILABLE)
    write_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0
    #: the OCI registry a version's files travel through ("" = [docker] registry)
    registry: Annotated[str, Field(max_length=256)] = ""
    #: how this daemon is named to the others ("" = the host name); unique per daemon with host_id
    host: Annotated[str, Field(max_length=128)] = ""
    #: ``digest``: authenticate as ``user:password`` and make every node creator-only (docs/cluster.md);
    #: ``none`` loosens that: no credential, every node open to whoever reaches ZooKeeper
    zk_auth: Literal["digest", "none"] = "digest"
    #: a file holding ``user:password``, readable by the daemon's user only (MODELTUI_ZK_CREDENTIALS wins)
    zk_credentials_file: Annotated[str, Field(max_length=4096)] = ""
    #: TLS to ZooKeeper's ``secureClientPort`` (the certificate and its host name are checked), so that the
    #: credential and the nodes never cross the network in clear; ``zk_ca_file``: the CA ("" = the system's)
    zk_tls: bool = False
    zk_ca_file: Annotated[str, Field(max_length=4096)] = ""

    @property
    def enabled(self) -> bool:
        return bool(self.zookeeper)


def is_loopback_host(address: str) -> bool:
    """Whether ``HOST[:PORT]`` (``[::1]:PORT`` for IPv6) names this host: ``localhost`` or a loopback IP."""
    if address.startswith("["):  # [IPv6] or [IPv6]:PORT
        host = address[1 : address.find("]")]
    else:  # HOST, HOST:PORT or a bare IPv6 address
        host = address.rpartition(":")[0] if address.count(":") == 1 else address
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RegistrySection(_Section):
    """How the daemon talks to its OCI registries (``[docker] registry`` for images, ``[cluster] registry``
    for versions' files): TLS and credentials (HTTP Basic, as docker-registry's htpasswd auth wants). See
    docs/security.md, "Registry authentication and TLS"."""

    #: None: TLS unless the registry is on loopback (or ``allow_plain_http``); true/false: always/never TLS
    tls: bool | None = None
    #: plain HTTP to a registry that is not on loopback; refused at start otherwise (credentials never are)
    allow_plain_http: bool = False
    #: a PEM bundle of the CA(s) the registry's certificate must chain to (None: the system's CAs)
    ca_file: Path | None = None
    #: the user name (also MODELTUI_REGISTRY_USERNAME); "" = no credentials
    username: Annotated[str, Field(max_length=256, pattern=r"^[^:\s]*$")] = ""
    #: a file holding the password, readable by the daemon's user only (mode 0600 or 0400, like ssh keys);
    #: MODELTUI_REGISTRY_PASSWORD in the environment is used instead when set
    password_file: Path | None = None

    def uses_tls(self, address: str) -> bool:
        if self.tls is not None:
            return self.tls
        return not (is_loopback_host(address) or self.allow_plain_http)


ZK_CREDENTIALS_ENV = "MODELTUI_ZK_CREDENTIALS"


def zk_credentials(cluster: ClusterSection, env: Mapping[str, str], base: Path) -> SecretStr | None:
    """The ``user:password`` a cluster daemon authenticates with (None: no cluster, or ``zk_auth = "none"``).

    From MODELTUI_ZK_CREDENTIALS, else from ``zk_credentials_file``, which must be a regular file that only its
    owner (the daemon's user, or root) can read or write: like ssh with a private key, a credential others can
    read is refused rather than used."""
    zookeeper = env.get("MODELTUI_ZOOKEEPER", cluster.zookeeper)
    if zookeeper and cluster.zk_tls and cluster.zk_ca_file:  # checked here: kazoo would only fail per connection
        ca = Path(cluster.zk_ca_file)
        if not ca.is_absolute():
            raise ConfigError(f"[cluster] zk_ca_file {ca}: use an absolute path")
        try:
            with ca.open("rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"[cluster] zk_ca_file {ca}: cannot read: {exc.strerror}") from None
    if not zookeeper or cluster.zk_auth == "none":
        return None
    if env.get(ZK_CREDENTIALS_ENV):
        return SecretStr(_check_zk_credential(env[ZK_CREDENTIALS_ENV], ZK_CREDENTIALS_ENV))
    if not cluster.zk_credentials_file:
        raise ConfigError(
            '[cluster] zk_auth = "digest" needs a credential: set [cluster] zk_credentials_file (a file holding '
            f'user:password, mode 0600) or {ZK_CREDENTIALS_ENV}; or set zk_auth = "none" to use ZooKeeper '
            "without authentication (every node open to whoever reaches it)"
        )
    path = _resolve(base, Path(cluster.zk_credentials_file))
    where = f"[cluster] zk_credentials_file {path}"
    data = read_secret_file(path, where, "a credential")
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not UTF-8 text") from None
    return SecretStr(_check_zk_credential(text.strip("\r\n"), where))


#: Secrets the settings read from the environment: the daemon removes them from its own environment once
#: loaded, so that no process it starts (maintenance workers, pip, ssh-keygen, openssl, the zygote, the
#: runtimes) inherits them. Workers also start from an allow-list (daemon.maintain.worker.WORKER_ENV).
SECRET_ENV = (ZK_CREDENTIALS_ENV, "MODELTUI_REGISTRY_USERNAME", "MODELTUI_REGISTRY_PASSWORD")


def forget_secrets(environ: MutableMapping[str, str]) -> None:
    for name in SECRET_ENV:
        environ.pop(name, None)


def _check_zk_credential(value: str, where: str) -> str:
    user, sep, password = value.partition(":")
    if not sep or not user or not password or len(value) > 4096 or any(c in value for c in "\r\n\0"):
        raise ConfigError(f"{where}: use user:password on one line (both non-empty)")
    return value


#: A user name, or ``@group`` for every member of a group; ``*`` is everyone who can reach the socket.
Principal = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^(\*|@?[A-Za-z0-9_][A-Za-z0-9_.-]*\$?)$")]


class AccessSection(_Section):
    """Who may do what (docs/operations.md). Each request type needs a role: viewer < operator < admin. A
    caller's role is the highest one any of its entries gives (by user name, or ``@group`` for any of the
    caller's groups); the daemon's own user and root are always admin. Reaching the socket at all is decided
    by its mode (0660 and the service group in system mode)."""

    admins: Annotated[list[Principal], Field(max_length=1000)] = Field(default_factory=list)
    operators: Annotated[list[Principal], Field(max_length=1000)] = Field(default_factory=list)
    viewers: Annotated[list[Principal], Field(max_length=1000)] = Field(default_factory=lambda: ["*"])


class SigningSection(_Section):
    """Signed versions (docs/security.md, "Signed versions")."""

    #: git's gpg.ssh.allowedSignersFile format: "PRINCIPAL[,…] [OPTIONS] KEYTYPE KEY". None: no signer is allowed.
    allowed_signers: Path | None = None
    #: "none": signatures are recorded and shown only; "deploy": deployments start (deploy, rollout by alias
    #: move) only versions with a verified signature; "promote": that, and aliases move only to such versions.
    require: Literal["none", "deploy", "promote"] = "none"
    #: Per ssh-keygen run (verifying runs off the event loop).
    timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 10.0


class WorkloadsSection(_Section):
    """Who workloads run as (docs/security.md, "Workloads run under their own uid")."""

    #: the account serving processes, maintenance workers and searches run as (its primary group too); None:
    #: ``modeltui-run`` in system mode, the daemon's own user in user mode; "": the daemon's own user (a warning)
    user: Annotated[str, Field(max_length=32, pattern=r"^([a-z_][a-z0-9_-]*\$?)?$")] | None = None
    #: where workloads' files live (None: beside the state directory, ``STATE-workloads``)
    dir: Path | None = None


class PolicySection(_Section):
    """Who may make code from a manifest run on the daemon's hosts (docs/security.md, "Code-running manifests
    and pickle files")."""

    #: "admin": only admins deploy, roll out (alias move), train or promote a version whose manifest runs code
    #: (``flavor = "python"``, ``trusted = true`` on a model file that fails or skips the pickle scan,
    #: ``[training] command``), unless an admin approved that version (``modeltui approve-code``);
    #: "operators": operators may too (the behaviour before this setting existed).
    run_code: Literal["admin", "operators"] = "admin"


class ConfigFile(_Section):
    daemon: DaemonSection = Field(default_factory=DaemonSection)
    store: StoreSection = Field(default_factory=StoreSection)
    deploy: DeploySection = Field(default_factory=DeploySection)
    docker: DockerSection = Field(default_factory=DockerSection)
    monitor: MonitorSection = Field(default_factory=MonitorSection)
    exporter: ExporterSection = Field(default_factory=ExporterSection)
    cluster: ClusterSection = Field(default_factory=ClusterSection)
    access: AccessSection = Field(default_factory=AccessSection)
    serving: ServingSection = Field(default_factory=ServingSection)
    signing: SigningSection = Field(default_factory=SigningSection)
    workloads: WorkloadsSection = Field(default_factory=WorkloadsSection)
    policy: PolicySection = Field(default_factory=PolicySection)

    registry: RegistrySection = Field(default_factory=RegistrySection)


@dataclass(frozen=True)
class RegistryAccess:
    """What a client of one registry needs: the address, whether to use TLS (and which CAs), credentials."""

    address: str
    tls: bool = False
    ca_file: Path | None = None
    username: str = ""
    password: str = field(default="", repr=False)

    @property
    def credentials(self) -> tuple[str, str] | None:
        return (self.username, self.password) if self.username else None

    @property
    def docker_auth(self) -> dict[str, str] | None:
        """The ``auth_config`` of docker-py's ``push`` (None: push anonymously)."""
        return {"username": self.username, "password": self.password} if self.username else None


class Settings(BaseModel):
    """Everything the daemon needs to start, resolved to absolute paths."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: paths.Mode
    config_path: Path
    socket: Path
    state_dir: Path
    log_level: str
    log_format: Literal["text", "json"] = "text"
    max_clients: int
    max_clients_per_uid: int = 32
    admin_reserved_clients: int = 8
    idle_timeout_seconds: float = 300.0
    busy_timeout_seconds: float
    gc_grace_seconds: int
    deploy: DeploySection = Field(default_factory=DeploySection)
    docker: DockerSection = Field(default_factory=DockerSection)
    monitor: MonitorSection = Field(default_factory=MonitorSection)
    exporter: ExporterSection = Field(default_factory=ExporterSection)
    cluster: ClusterSection = Field(default_factory=ClusterSection)
    #: ``user:password`` for ZooKeeper (``[cluster] zk_auth = "digest"``), never shown
    zk_credentials: SecretStr | None = None
    access: AccessSection = Field(default_factory=AccessSection)
    serving: ServingSection = Field(default_factory=ServingSection)
    signing: SigningSection = Field(default_factory=SigningSection)
    workloads: WorkloadsSection = Field(default_factory=WorkloadsSection)
    policy: PolicySection = Field(default_factory=PolicySection)
    registry: RegistrySection = Field(default_factory=RegistrySection)
    #: read from ``[registry] password_file`` or MODELTUI_REGISTRY_PASSWORD at start, never shown
    registry_password: SecretStr | None = None

    def registry_access(self, address: str) -> RegistryAccess:
        reg = self.registry
        password = self.registry_password.get_secret_value() if self.registry_password else ""
        return RegistryAccess(address, reg.uses_tls(address), reg.ca_file, reg.username, password)

    @property
    def artifact_registry(self) -> str:
        """The registry a cluster's versions travel through ("" = none)."""
        return self.cluster.registry or self.docker.registry

    @property
    def log_file(self) -> Path:
        return self.state_dir / "daemon.log"

    @property
    def lock_file(self) -> Path:
        return self.socket.with_name(self.socket.name + ".lock")


def _resolve(base: Path, value: Path) -> Path:
    return value if value.is_absolute() else (base / value).resolve()


def load_settings(
    config: str | Path | None = None,
    *,
    socket: str | None = None,
    state_dir: str | None = None,
    log_level: str | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Flags > environment > TOML file > defaults for the mode."""
    env = os.environ if environ is None else environ
    mode: paths.Mode = "system" if env.get(paths.ENV_MODE) == "system" else "user"
    config_path = Path(config or env.get(paths.ENV_CONFIG) or paths.default_config_path(mode)).absolute()
    try:
        raw = paths.read_config(config_path)
        parsed = ConfigFile.model_validate(raw)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{config_path}: not valid TOML: {exc}") from None
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{config_path}: {where}") from None
    except OSError as exc:
        raise ConfigError(f"{config_path}: cannot read: {exc.strerror}") from None
    d = parsed.daemon
    if d.mode is not None and paths.ENV_MODE not in env:
        mode = d.mode
    base = config_path.parent
    state = (
        Path(state_dir)
        if state_dir
        else Path(env[paths.ENV_STATE_DIR])
        if env.get(paths.ENV_STATE_DIR)
        else _resolve(base, d.state_dir)
        if d.state_dir
        else paths.default_state_dir(mode)
    )
    if socket:
        sock = Path(socket)
    elif env.get(paths.ENV_SOCKET):
        sock = Path(env[paths.ENV_SOCKET])
    elif d.socket:
        sock = _resolve(base, d.socket)
    else:
        runtime = env.get(paths.ENV_RUNTIME_DIR)
        sock = (Path(runtime) if runtime else paths.default_runtime_dir(mode)) / paths.SOCKET_NAME
    level = log_level or env.get("MODELTUI_LOG_LEVEL") or d.log_level
    if level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"log level {level!r}: use DEBUG, INFO, WARNING or ERROR")
    settings = Settings(
        mode=mode,
        config_path=config_path,
        socket=sock.absolute(),
        state_dir=state.absolute(),
        log_level=level.upper(),
        log_format=d.log_format,
        max_clients=d.max_clients,
        max_clients_per_uid=d.max_clients_per_uid,
        admin_reserved_clients=d.admin_reserved_clients,
        idle_timeout_seconds=d.idle_timeout_seconds,
        busy_timeout_seconds=parsed.store.busy_timeout_seconds,
        gc_grace_seconds=parsed.store.gc_grace_seconds,
        deploy=parsed.deploy,
        monitor=parsed.monitor,
        exporter=parsed.exporter.model_copy(
            update={k: _resolve(base, v) for k in ("tls_cert", "tls_key") if (v := getattr(parsed.exporter, k))}
        ),
        access=parsed.access,
        serving=parsed.serving.model_copy(
            update={k: _resolve(base, v) for k in ("tls_cert", "tls_key") if (v := getattr(parsed.serving, k))}
        ),
        signing=parsed.signing.model_copy(
            update={"allowed_signers": _resolve(base, parsed.signing.allowed_signers)}
            if parsed.signing.allowed_signers
            else {}
        ),
        workloads=parsed.workloads,
        policy=parsed.policy,
        cluster=parsed.cluster.model_copy(
            update={"zookeeper": check_connect_string(env["MODELTUI_ZOOKEEPER"])} if "MODELTUI_ZOOKEEPER" in env else {}
        ),
        zk_credentials=zk_credentials(parsed.cluster, env, base),
        docker=parsed.docker.model_copy(
            update={"host": env.get("DOCKER_HOST") or parsed.docker.host}
            | ({"registry": env["MODELTUI_DOCKER_REGISTRY"]} if "MODELTUI_DOCKER_REGISTRY" in env else {})
            | ({"base_image": env["MODELTUI_DOCKER_BASE_IMAGE"]} if env.get("MODELTUI_DOCKER_BASE_IMAGE") else {})
        ),
    )
    return _with_registry(settings, parsed.registry, base, env)


def _with_registry(settings: Settings, reg: RegistrySection, base: Path, env: Mapping[str, str]) -> Settings:
    """Resolve ``[registry]`` (paths, the environment, the password file) and refuse what would be unsafe."""
    reg = reg.model_copy(
        update={
            "ca_file": _resolve(base, reg.ca_file) if reg.ca_file else None,
            "password_file": _resolve(base, reg.password_file) if reg.password_file else None,
            "username": env.get("MODELTUI_REGISTRY_USERNAME", reg.username),
        }
    )
    if ":" in reg.username or any(c.isspace() for c in reg.username) or len(reg.username) > 256:
        raise ConfigError("[registry] username: at most 256 characters, no ':' or white space (HTTP Basic)")
    if reg.ca_file and not reg.ca_file.is_file():
        raise ConfigError(f"[registry] ca_file: {reg.ca_file} is not a readable file")
    password = env.get("MODELTUI_REGISTRY_PASSWORD")
    if password is None and reg.password_file:
        password = read_password_file(reg.password_file)
    if bool(password) != bool(reg.username):
        have, lack = ("a password", "[registry] username") if password else ("[registry] username", "a password")
        raise ConfigError(f"{have} is set but {lack} is not (give both, or neither for no credentials)")
    used = {f"[docker] registry = {settings.docker.registry!r}": settings.docker.registry}
    if settings.cluster.enabled and settings.artifact_registry:
        what = "[cluster] registry" if settings.cluster.registry else "[docker] registry (used by the cluster)"
        used[f"{what} = {settings.artifact_registry!r}"] = settings.artifact_registry
    for what, address in used.items():
        if not address or reg.uses_tls(address) or is_loopback_host(address):
            continue
        if not reg.allow_plain_http:
            raise ConfigError(
                f"{what}: plain HTTP to a registry that is not on loopback is refused; use TLS ([registry] tls, "
                "ca_file) or, on a network you trust, set [registry] allow_plain_http = true"
            )
        if password:
            raise ConfigError(f"{what}: plain HTTP would carry the registry credentials in clear; use TLS")
    return settings.model_copy(update={"registry": reg, "registry_password": SecretStr(password) if password else None})


def read_secret_file(path: Path, where: str, what: str) -> bytes:
    """The first 4097 bytes of a secret file (``what``: "a password", for the message); refused unless it is a
    regular file (no symlink followed) that its group and others may neither read nor change (like ssh's keys),
    owned by the daemon's user (or root). ``where`` names the setting in every error."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{where}: not a regular file")
        if st.st_mode & 0o077:
            raise ConfigError(
                f"{where}: mode {stat.S_IMODE(st.st_mode):04o} lets its group or others read or change it; "
                f"{what} must be readable by the daemon's user only (chmod 600)"
            )
        euid = os.geteuid()
        if euid != 0 and st.st_uid not in (euid, 0):
            raise ConfigError(f"{where}: owned by uid {st.st_uid}, not by the daemon's user ({euid}) or root")
        return f.read(4097)


def read_password_file(path: Path) -> str:
    """The first line of ``path``; refused when its group or others may read or write it (like ssh's keys), or
    when it belongs to another user than the daemon's (root's files excepted)."""
    where = f"[registry] password_file {path}"
    data = read_secret_file(path, where, "a password")
    if len(data) > 4096:
        raise ConfigError(f"{where}: longer than 4096 bytes")
    try:
        lines = data.decode().splitlines()
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not UTF-8 text") from None
    if not lines or not lines[0]:
        raise ConfigError(f"{where}: the first line (the password) is empty")
    return lines[0]
