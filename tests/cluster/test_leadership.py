"""Leadership as the daemon sees it: the lowest candidacy leads, and only while the session is connected."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient

from daemon.cluster.layout import DeploymentNode, HostNode, Paths
from daemon.cluster.presence import Presence, candidate_owner
from tests.helpers.zookeeper import ZkEnsemble


def test_candidate_names_parse_strictly() -> None:
    assert candidate_owner("c-host-a1b2-0000000007") == (7, "host-a1b2")
    for bad in ("c-host-7", "x-host-0000000007", "c-host-0000000007x", "c-0000000007", "host-0000000007"):
        assert candidate_owner(bad) is None, bad


class _Zk:
    """Just what Presence reads of the session, driven by the test (calls go to a real ZooKeeper)."""

    def __init__(self, client: KazooClient) -> None:
        self.client = client
        self.state = "connected"
        self.session = client.client_id[0]

    @property
    def connected(self) -> bool:
        return self.state == "connected"

    def call(self, what: str, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        return fn(*args, **kwargs).get(timeout=5)


@pytest.fixture
def client(zk: ZkEnsemble) -> Iterator[KazooClient]:
    c = KazooClient(hosts=zk.connect_string())
    c.start(10)
    yield c
    c.stop()
    c.close()


def test_the_lowest_candidacy_leads_and_a_suspended_session_leads_nothing(client: KazooClient) -> None:
    zk = _Zk(client)
    # Another daemon stood for "jobs" first: the lowest sequence leads.
    root = f"/{uuid.uuid4().hex}"  # the run's server is shared: a path of this test's own
    earlier = client.create(f"{root}/leader/jobs/c-h0-", b"", ephemeral=True, sequence=True, makepath=True)
    me = HostNode(id="h1", host="h", pid=1, socket="/s", started_at="2026-01-01T00:00:00Z")
    none: list[DeploymentNode] = []
    presence = Presence(zk, Paths(root), "h1", lambda: me, lambda: none, lambda _d: ("jobs", "model-m"))  # type: ignore[arg-type]
    presence.refresh()
    assert presence.leaders == {"jobs": "h0", "model-m": "h1"}
    assert not presence.is_leader("jobs")
    assert presence.is_leader("model-m")
    zk.state = "suspended"  # the connection dropped: another daemon may lead by now
    assert not presence.is_leader("model-m")
    zk.state = "connected"
    client.delete(earlier)  # the other daemon went: the next candidate leads
    assert presence.read_leaders()["jobs"] == "h1"
    assert presence.is_leader("jobs")
