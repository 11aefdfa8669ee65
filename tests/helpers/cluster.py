"""Daemons in a ZooKeeper cluster for the tests: a member started on an ensemble and a chroot, a kazoo client
authenticated as the members are, and what a member logged."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kazoo.client import KazooClient

from daemon.cluster.zk import digest_acl
from tests.helpers.daemon import DaemonProcess
from tests.helpers.docker_engine import REGISTRY
from tests.helpers.zookeeper import ZkEnsemble


def member(factory: Callable[[str], DaemonProcess], name: str, zk: ZkEnsemble, chroot: str,
           credential: str | None, extra: str = "") -> DaemonProcess:  # fmt: skip
    """A started daemon of the cluster on ``zk`` under ``chroot`` (artifacts through the local registry),
    with ``credential`` in its environment (None: none) and ``extra`` lines in its ``[cluster]`` section."""
    d = factory(name)
    if credential is not None:
        d.env["MODELTUI_ZK_CREDENTIALS"] = credential
    Path(d.env["MODELTUI_CONFIG"]).write_text(
        f'[cluster]\nzookeeper = "{zk.connect_string()}"\nchroot = "{chroot}"\nregistry = "{REGISTRY}"\n'
        f"session_timeout_seconds = 4\n{extra}\n[exporter]\nenabled = false\n"
    )
    return d.start(timeout=60)  # only a hang takes that long, however loaded the machine


def zk_client(zk: ZkEnsemble, credential: str | None) -> KazooClient:
    """A started kazoo client authenticated as the members are (``None``: no credential at all)."""
    client = KazooClient(
        hosts=zk.connect_string(),
        auth_data=[("digest", credential)] if credential else None,
        default_acl=digest_acl(credential) if credential else None,
    )
    client.start(10)
    return client


def daemon_log(d: DaemonProcess) -> str:
    """Everything the daemon logged (its stdout/stderr and its log file)."""
    paths = (d.state_dir.parent / "daemon.out", d.state_dir / "daemon.log")
    return "".join(p.read_text(errors="replace") for p in paths if p.exists())
