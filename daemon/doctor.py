"""``modeltui doctor``, the daemon's half: each check says ok, warn or fail, what it saw, and the fix.

The client checks what only it can see: the socket's path, its permissions for the caller, whether anything
answers (``modeltui/cli/doctor.py``). Here the daemon checks itself: the database's integrity, free space, its
directories, and every service it is configured to use (ZooKeeper, the Docker engine, the OCI registry, the
Prometheus exporter). A service nothing depends on yet is a warning, not a failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import stat
from typing import TYPE_CHECKING, Literal

from daemon import workload
from daemon.cluster.artifacts import ArtifactStore
from daemon.deploy.manager import DeploymentManager
from daemon.protocol import results as r
from daemon.settings import RegistryAccess, Settings

if TYPE_CHECKING:
    from daemon.cluster.service import Cluster

#: Free space under which the state directory's filesystem is a warning, then a failure.
WARN_FREE_BYTES = 2 * 1024**3
FAIL_FREE_BYTES = 256 * 1024**2
WARN_FREE_SHARE = 0.05
#: How long a service may take to answer.
SERVICE_TIMEOUT_S = 3.0

Status = Literal["ok", "warn", "fail"]


def check(name: str, status: Status, detail: str, fix: str = "") -> r.DoctorCheck:
    return r.DoctorCheck(name=name, status=status, detail=detail, fix="" if status == "ok" else fix)


def database(settings: Settings) -> r.DoctorCheck:
    """``PRAGMA quick_check`` on a read-only connection of its own (blocking)."""
    path = settings.state_dir / "registry.db"
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=settings.busy_timeout_seconds)
        try:
            rows = [row[0] for row in conn.execute("PRAGMA quick_check").fetchall()]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return check("database", "fail", f"{path}: {exc}", "restore the last backup: modeltuid restore BACKUP")
    if rows == ["ok"]:
        return check("database", "ok", f"{path}: quick_check ok")
    shown = "; ".join(rows[:3])
    return check("database", "fail", f"{path}: {shown}", "stop the daemon and restore the last backup: "
                 "modeltuid restore BACKUP (docs/backup.md)")  # fmt: skip


def disk(settings: Settings) -> r.DoctorCheck:
    usage = shutil.disk_usage(settings.state_dir)
    share = usage.free / usage.total if usage.total else 0.0
    detail = (
        f"{settings.state_dir}: {usage.free / 1024**3:.1f} GiB free of {usage.total / 1024**3:.1f} GiB ({share:.0%})"
    )
    fix = "free space on that filesystem: modeltui gc (unreferenced files), remove old versions, or grow the disk"
    if usage.free < FAIL_FREE_BYTES:
        return check("disk", "fail", detail, fix)
    if usage.free < WARN_FREE_BYTES and share < WARN_FREE_SHARE:
        return check("disk", "warn", detail, fix)
    return check("disk", "ok", detail)


def directories(settings: Settings) -> r.DoctorCheck:
    """The state directory is the daemon's own and private (it holds every version's files)."""
    st = os.stat(settings.state_dir)
    problems = []
    if st.st_uid != os.getuid():
        problems.append(f"owned by uid {st.st_uid}, not the daemon's ({os.getuid()})")
    if stat.S_IMODE(st.st_mode) & 0o077:
        problems.append(f"mode {stat.S_IMODE(st.st_mode):04o} lets others in")
    if problems:
        return check("state directory", "warn", f"{settings.state_dir}: " + "; ".join(problems),
                     f"chown the directory to the daemon's user and chmod 700 {settings.state_dir}")  # fmt: skip
    return check("state directory", "ok", f"{settings.state_dir}: private to the daemon's user")


def socket_file(settings: Settings) -> r.DoctorCheck:
    path = settings.socket
    try:
        st = os.lstat(path)
    except OSError as exc:
        return check("socket", "fail", f"{path}: {exc.strerror}", "restart the daemon (it recreates its socket)")
    want = 0o600 if settings.mode == "user" else 0o660
    mode = stat.S_IMODE(st.st_mode)
    if not stat.S_ISSOCK(st.st_mode) or mode != want:
        return check("socket", "warn", f"{path}: mode {mode:04o}, expected {want:04o}",
                     "restart the daemon; in system mode the unit's Group= decides who may connect")  # fmt: skip
    return check("socket", "ok", f"{path}: mode {mode:04o}, group {st.st_gid}")


def zookeeper(settings: Settings, cluster: Cluster | None) -> r.DoctorCheck | None:
    if not settings.cluster.enabled:
        return None
    where = settings.cluster.zookeeper
    fix = (f"start ZooKeeper at {where} (systemctl start zookeeper) or fix [cluster] zookeeper; until then "
           "reads answer from this host's cache and writes are refused")  # fmt: skip
    if cluster is None:
        return check("zookeeper", "fail", f"{where}: the cluster service did not start (see the daemon's log)", fix)
    s = cluster.status()
    if s.problem:
        return check("zookeeper", "fail", f"{where}: {s.problem}",
                     "give every daemon of the cluster the same [cluster] zk_credentials_file (user:password, mode "
                     "0600) or MODELTUI_ZK_CREDENTIALS, then restart this one (docs/cluster.md)")  # fmt: skip
    if s.state == "connected":
        return check("zookeeper", "ok", f"{where}: connected (session {s.session})")
    return check("zookeeper", "fail", f"{where}: {s.state}; cache may be {s.staleness_seconds:.0f} s stale", fix)


async def docker(deployments: DeploymentManager) -> r.DoctorCheck | None:
    backend = deployments.backends.get("docker")
    used = deployments.uses_backend("docker")
    if backend is None:
        if used:
            return check("docker", "fail", "docker deployments exist but the docker SDK is not installed",
                         "install the project with its docker extra into the daemon's environment")  # fmt: skip
        return None
    try:
        await asyncio.wait_for(backend.ping(), SERVICE_TIMEOUT_S)
    except Exception as exc:  # the engine's errors are many; any of them means "not usable now"
        fix = ("start the engine (systemctl start docker) or set [docker] host / DOCKER_HOST; the daemon's user "
               "needs /run/docker.sock (group docker, which is root-equivalent)")  # fmt: skip
        return check("docker", "fail" if used else "warn", f"the engine does not answer: {exc}", fix)
    if used and getattr(getattr(backend, "settings", None), "network", None) == "host":
        return check("docker", "warn", "the engine answers; containers share the host's network ([docker] network "
                     "= host): they reach the host's loopback services and other deployments' admin ports",
                     "set [docker] network = \"bridge\" where the engine has bridge networking "
                     "(docs/deploy-docker.md, Networks)")  # fmt: skip
    return check("docker", "ok", "the engine answers")


def registry(name: str, address: str, needed: bool, access: RegistryAccess | None = None) -> r.DoctorCheck:
    """Blocking: ``GET /v2/`` of an OCI registry (with TLS and credentials as ``[registry]`` says)."""
    try:
        ArtifactStore(address, timeout_s=SERVICE_TIMEOUT_S, access=access).ping()
    except Exception as exc:  # ArtifactError or a socket error: either way it cannot be used
        fix = (f"start the registry at {address} (systemctl start docker-registry) or fix its address in the "
               "daemon's config")  # fmt: skip
        return check(name, "fail" if needed else "warn", f"{address}: {exc}", fix)
    return check(name, "ok", f"{address}: answers the V2 API")


def exporter(settings: Settings, url: str | None) -> r.DoctorCheck | None:
    if not settings.exporter.enabled:
        return None
    if url is None:
        detail = f"{settings.exporter.address}: not serving (see the daemon's log)"
        return check("exporter", "warn", detail, "free the port or set [exporter] address; Prometheus cannot "
                     "scrape the daemon meanwhile")  # fmt: skip
    return check("exporter", "ok", f"serving {url}")


def workloads(settings: Settings) -> r.DoctorCheck | None:
    """Who deployments and maintenance workers run as (docs/security.md); None outside a daemon."""
    identity = workload.current()
    if identity is None:
        return None
    if identity.problem is not None:
        return check("workloads", "fail", identity.problem,
                     "create the account and give the daemon CAP_SETUID CAP_SETGID CAP_KILL (docs/operations.md, "
                     "Install), or set [workloads] user")  # fmt: skip
    if identity.user:
        detail = f"run as {identity.user} (uid {identity.uid}), their files in {identity.root}"
        return check("workloads", "ok", detail)
    if settings.mode == "system":
        return check("workloads", "warn", "run as the daemon's own user ([workloads] user = \"\"): model code is "
                     "admin on the socket and reads the state directory",
                     "create modeltui-run and unset [workloads] user (docs/security.md)")  # fmt: skip
    return check("workloads", "ok", "run as you (user mode: there is no second account; docs/security.md)")


async def run_checks(
    settings: Settings, deployments: DeploymentManager, cluster: Cluster | None, exporter_url: str | None
) -> list[r.DoctorCheck]:
    checks = [
        await asyncio.to_thread(database, settings),
        await asyncio.to_thread(disk, settings),
        await asyncio.to_thread(directories, settings),
        await asyncio.to_thread(socket_file, settings),
    ]
    optional = [zookeeper(settings, cluster), await docker(deployments), exporter(settings, exporter_url)]
    optional.append(workloads(settings))
    if settings.docker.registry:
        used = deployments.uses_backend("docker")
        image = settings.registry_access(settings.docker.registry)
        optional.append(await asyncio.to_thread(registry, "image registry", settings.docker.registry, used, image))
    shared = settings.cluster.registry or settings.docker.registry
    if settings.cluster.enabled and shared and shared != settings.docker.registry:
        access = settings.registry_access(shared)
        optional.append(await asyncio.to_thread(registry, "artifact registry", shared, True, access))
    return checks + [c for c in optional if c is not None]
