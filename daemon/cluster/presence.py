"""Who is here and who leads: this daemon's ephemeral nodes (itself, its deployments, its election
candidacies) and a reader for everyone's.

Ephemeral nodes vanish with the session that made them. After an expired session they are made again, and
a node left by this daemon's previous session (it still exists until that session's timeout) is deleted and
re-created so that it is owned by the current one (``ephemeralOwner``). Everything here blocks; the
service calls it from a thread every couple of seconds and at each (re)connection.

Elections: each candidate holds an ephemeral sequential node ``c-<host-id>-<seq>`` under ``/leader/<job>``;
the lowest sequence leads. Leadership counts only while the session is connected: a suspended connection
means it may already have passed to another daemon.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from kazoo.exceptions import NodeExistsError, NoNodeError

from .layout import BadNode, DeploymentNode, HostNode, Paths, decode, encode
from .zk import Zk

log = logging.getLogger("modeltuid.cluster")


def candidate_owner(child: str) -> tuple[int, str] | None:
    """(sequence, host id) of an election child ``c-<host-id>-<10 digits>``."""
    head, _, seq = child.rpartition("-")
    if not head.startswith("c-") or len(seq) != 10 or not seq.isdigit():
        return None
    return int(seq), head[2:]


class Presence:
    def __init__(
        self,
        zk: Zk,
        paths: Paths,
        host_id: str,
        me: Callable[[], HostNode],
        deployments: Callable[[], list[DeploymentNode]],
        jobs: Callable[[list[DeploymentNode]], tuple[str, ...]],
    ) -> None:
        self.zk = zk
        self.paths = paths
        self.host_id = host_id
        self.me = me
        self.deployments = deployments
        self.jobs = jobs
        """The elections to stand in, given this daemon's deployments."""
        self.leaders: dict[str, str | None] = {}
        """Each job's leader (host id) as last read."""
        self._written: dict[str, bytes] = {}  # path → data as last written by this session
        self._candidacy: dict[str, str] = {}  # job → our election node
        self._session: int | None = None

    # -- this daemon's nodes -----------------------------------------------------------------------------

    def refresh(self) -> None:
        """Make this daemon's nodes match what it is now (blocking)."""
        if self.zk.session != self._session:  # a new session: nothing of ours exists any more
            self._written.clear()
            self._candidacy.clear()
            self._session = self.zk.session
        want = {self.paths.host(self.host_id): encode(self.me())}
        deployments = self.deployments()
        for d in deployments:
            want[self.paths.deployment(d.name, self.host_id)] = encode(d)
        for path, data in want.items():
            if self._written.get(path) != data:
                self._put(path, data)
        for path in [p for p in self._written if p not in want]:
            with contextlib.suppress(NoNodeError):
                self.zk.call("unregister a deployment", self.zk.client.delete_async, path)
            del self._written[path]
        jobs = self.jobs(deployments)
        for job in jobs:
            self._stand(job)
        for job in [j for j in self._candidacy if j not in jobs]:  # no longer a candidate (model undeployed)
            with contextlib.suppress(NoNodeError):
                self.zk.call("leave an election", self.zk.client.delete_async, self._candidacy.pop(job))
            self.leaders.pop(job, None)
        self.read_leaders()

    def _put(self, path: str, data: bytes) -> None:
        client = self.zk.client
        what = "register with the cluster"
        try:
            self.zk.call(what, client.create_async, path, data, ephemeral=True, makepath=True)
        except NodeExistsError:
            _, stat = self.zk.call(what, client.get_async, path)
            if stat.ephemeralOwner != self.zk.session:  # left by our previous session (or a stray): replace it
                log.info("replacing %s left by session %#x", path, stat.ephemeralOwner)
                with contextlib.suppress(NoNodeError):
                    self.zk.call(what, client.delete_async, path, version=stat.version)
                self.zk.call(what, client.create_async, path, data, ephemeral=True, makepath=True)
            else:
                self.zk.call(what, client.set_async, path, data)
        self._written[path] = data

    def _stand(self, job: str) -> None:
        client = self.zk.client
        path = self._candidacy.get(job)
        if path is not None and self.zk.call("stand for election", client.exists_async, path) is not None:
            return
        base = self.paths.election(job)
        self.zk.call("stand for election", client.ensure_path_async, base)
        # A candidacy of our previous session would precede ours: remove it.
        for child in self.zk.call("stand for election", client.get_children_async, base):
            owner = candidate_owner(child)
            if owner is not None and owner[1] == self.host_id:
                _, stat = self.zk.call("stand for election", client.get_async, f"{base}/{child}")
                if stat.ephemeralOwner != self.zk.session:
                    with contextlib.suppress(NoNodeError):
                        self.zk.call("stand for election", client.delete_async, f"{base}/{child}")
        self._candidacy[job] = self.zk.call(
            "stand for election", client.create_async, f"{base}/c-{self.host_id}-", b"", ephemeral=True,
            sequence=True,
        )  # fmt: skip

    def read_leaders(self) -> dict[str, str | None]:
        """The leader of every election this daemon stands in."""
        for job in list(self._candidacy):
            try:
                children = self.zk.call("read the election", self.zk.client.get_children_async,
                                        self.paths.election(job))  # fmt: skip
            except NoNodeError:
                children = []
            owners = sorted(o for c in children if (o := candidate_owner(c)) is not None)
            self.leaders[job] = owners[0][1] if owners else None
        return dict(self.leaders)

    def is_leader(self, job: str) -> bool:
        """Whether this daemon leads ``job`` now: never while the session is not connected."""
        return self.zk.connected and self.leaders.get(job) == self.host_id

    def leave(self) -> None:
        """Remove this daemon's nodes (a clean stop; the session's end would remove them too)."""
        for path in list(self._written) + list(self._candidacy.values()):
            with contextlib.suppress(NoNodeError):
                self.zk.call("leave the cluster", self.zk.client.delete_async, path)
        self._written.clear()
        self._candidacy.clear()

    # -- everyone's --------------------------------------------------------------------------------------

    def hosts(self) -> tuple[list[HostNode], list[DeploymentNode], int]:
        """Every registered daemon and deployment (validated; the count of nodes ignored as invalid)."""
        client = self.zk.client
        what = "read the cluster"
        hosts: list[HostNode] = []
        deployments: list[DeploymentNode] = []
        bad = 0
        try:
            host_ids = self.zk.call(what, client.get_children_async, self.paths.hosts)
        except NoNodeError:
            host_ids = []
        for child in host_ids:
            try:
                data, _ = self.zk.call(what, client.get_async, self.paths.host(child))
                hosts.append(decode(HostNode, data))
            except (BadNode, NoNodeError) as exc:
                bad += 1
                log.warning("ignoring host node %r: %s", child[:100], exc)
        try:
            names = self.zk.call(what, client.get_children_async, self.paths.deployments)
        except NoNodeError:
            names = []
        for name in names:
            try:
                owners = self.zk.call(what, client.get_children_async, f"{self.paths.deployments}/{name}")
            except NoNodeError:
                continue
            for owner in owners:
                try:
                    data, _ = self.zk.call(what, client.get_async, self.paths.deployment(name, owner))
                    node = decode(DeploymentNode, data)
                    if node.name != name or node.host_id != owner:
                        raise BadNode(f"holds {node.name} of {node.host_id}")
                    deployments.append(node)
                except (BadNode, NoNodeError) as exc:
                    bad += 1
                    log.warning("ignoring deployment node %r/%r: %s", name[:100], owner[:100], exc)
        return hosts, deployments, bad
