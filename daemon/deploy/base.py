"""What every backend offers the manager: start an instance, wait for it to end, stop it, find the ones
this daemon started earlier, read and follow its log; and what some offer (a warm-up, log rotation, an
engine to ping, images to prune), which the others leave as no-ops.

An *instance* is one running copy of one version: a child process or a container. It listens on two
ports: the deployment's public port (bound with SO_REUSEPORT only once the model is loaded, so during a
rollout old and new share it and no request meets a half-started server) and its own admin port, where
the manager checks its health and Prometheus scrapes it.
"""

from __future__ import annotations

import hashlib
import socket
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from daemon.protocol.deploy import ContainerOptions

from .image import Pruned

#: Reports a line of build or start progress to whoever waits on the deployment.
ProgressLine = Callable[[str], None]


class BackendError(Exception):
    """The backend cannot do what was asked; the message is for the operator (says what and why)."""


class BackendUnavailable(BackendError):
    """The backend's engine cannot be reached (Docker daemon down): retry later, keep the rest serving."""


@dataclass(frozen=True)
class InstanceSpec:
    """Everything needed to start one instance of one version."""

    deployment: str
    instance_id: str
    model: str
    version: int
    digest: str
    model_dir: Path
    public_port: int
    admin_port: int
    env: dict[str, str]
    options: ContainerOptions
    log_dir: Path
    feedback_inputs: bool = True
    """The runtime keeps its recent predictions' inputs, so labelled feedback can train (``[deploy]``)."""
    runtime_env: dict[str, str] = field(default_factory=dict)
    """Set by modeltui for the runtime itself (``MODELTUI_*``: token hashes, TLS files; never a secret in
    argv): added after ``env``; unlike a deployment's own ``env`` it never makes a process start cold."""



@dataclass
class Instance:
    """A started instance, as the manager tracks it and the store records it (``key`` finds it again)."""

    backend: str
    deployment: str
    instance_id: str
    version: int
    key: str
    admin_port: int
    public_port: int
    started_at: datetime
    image: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.public_port}"


class Backend(ABC):
    """A way to run instances. Subclasses implement the abstract methods; the optional ones default to doing
    nothing, so the manager calls them on every backend without asking which one it has."""

    name: ClassVar[str]
    builds_images: ClassVar[bool] = False
    """Starting an instance builds an image first (the deployment shows ``building``, not ``starting``), and
    the image policy runs after an undeploy or a rollout."""

    @abstractmethod
    async def start(self, spec: InstanceSpec, progress: ProgressLine) -> Instance:
        """Launch the instance and return once it runs (not necessarily healthy yet)."""

    @abstractmethod
    async def wait(self, instance: Instance) -> int | None:
        """Return when the instance has ended, with its exit status when known."""

    @abstractmethod
    async def stop(self, instance: Instance, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; idempotent; never raises for a gone instance."""

    @abstractmethod
    async def discover(self) -> list[Instance]:
        """Every instance this daemon (this state directory) started that still runs."""

    @abstractmethod
    async def logs(self, instance: Instance, tail: int) -> list[str]:
        """The last ``tail`` lines of the instance's log."""

    @abstractmethod
    def follow(self, instance: Instance) -> AsyncIterator[list[str]]:
        """New log lines from now on, in batches, until the instance ends or the iterator is closed."""

    # -- optional: each does nothing unless a backend has something to do ----------------------------------

    async def close(self) -> None:
        """Release clients and threads; running instances keep running."""
        return None

    def warm(self) -> None:
        """Prepare for fast starts, once there are deployments to start (the process backend's zygote)."""
        return None

    def rotate(self, deployment: str) -> bool:
        """Blocking: rotate the deployment's log file when it is over its size limit; True when it was."""
        return False

    def remove_logs(self, deployment: str) -> None:
        """Blocking: delete a removed deployment's logs, so a later one of the same name starts afresh."""
        return None

    def models_root(self, default: Path) -> Path:
        """Where versions are materialized for this backend's instances (``default``: the state directory's)."""
        return default

    async def ping(self) -> None:
        """Raise :class:`BackendUnavailable` unless the backend's engine answers (the doctor asks)."""
        return None

    async def prune_images(self, *, keep: int, in_use: set[tuple[str, int]], dry_run: bool = False) -> Pruned:
        """Remove images of versions no deployment uses beyond the newest ``keep`` per model."""
        return Pruned()


def owner_id(state_dir: Path) -> str:
    """Names what one daemon started (process command lines, zygote records, container labels): one id per
    state directory, so two daemons on a host never adopt or stop each other's instances."""
    return hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now. Another process may take it before we bind; starting then
    fails and the supervisor retries with a new one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
