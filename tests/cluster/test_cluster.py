"""Two real daemons sharing one real ZooKeeper (and the real registry on 127.0.0.1:5000 for files): the
registry mirror, compare-and-set alias moves, offline behaviour, re-registration and hostile nodes."""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cluster import daemon_log, zk_client
from tests.helpers.cluster import member as cluster_member
from tests.helpers.daemon import DaemonProcess, cli_json
from tests.helpers.docker_engine import REGISTRY, registry_up
from tests.helpers.example_data import eval_features
from tests.helpers.models import make_model_dir
from tests.helpers.prerequisites import need
from tests.helpers.rawsock import RawClient
from tests.helpers.zookeeper import ZkEnsemble

#: The credential every test daemon of a cluster shares ([cluster] zk_auth = "digest", the default).
CREDENTIAL = "modeltui:cluster-test-secret"


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60.0, every: float = 0.05) -> Any:
    """``check()`` once it is truthy; ``timeout`` is a limit only a hang reaches (a loaded machine is slow, and
    how fast something happens is a figure for a benchmark, not an assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = check()
        except (AssertionError, json.JSONDecodeError):
            got = None
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def member(daemon_factory: Callable[[str], DaemonProcess], name: str, zk: ZkEnsemble, chroot: str,
           cluster: str = "") -> DaemonProcess:  # fmt: skip
    return cluster_member(daemon_factory, name, zk, chroot, CREDENTIAL, cluster)


def connected(d: DaemonProcess) -> dict[str, Any]:
    status: dict[str, Any] = cli_json(d, "cluster", "status")
    return status if status["state"] == "connected" else {}


@pytest.fixture
def chroot() -> str:
    return f"/modeltui-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def pair(
    daemon_factory: Callable[[str], DaemonProcess], zk: ZkEnsemble, chroot: str
) -> tuple[DaemonProcess, DaemonProcess]:
    a, b = member(daemon_factory, "a", zk, chroot), member(daemon_factory, "b", zk, chroot)
    wait_for(lambda: len((connected(a) or {}).get("hosts", [])) == 2, "both daemons registered")
    return a, b


def test_a_push_on_a_is_deployable_on_b_and_a_sees_it_running_at_its_endpoint(
    pair: tuple[DaemonProcess, DaemonProcess], example_dir: Path
) -> None:
    need(registry_up(), f"no OCI registry on {REGISTRY}; run scripts/services.sh as root")
    a, b = pair
    on_b = RawClient(b.socket)  # looks at B without a Python process start per look
    try:
        session = on_b.request({"op": "cluster.status"})["result"]["session"]
        assert a.cli("push", str(example_dir), "--alias", "production").returncode == 0
        # B learns of it through its watches alone: the mirror has no periodic sync (only a full one at each
        # (re)connection), so seeing it in the same session is the watch at work.
        wait_for(lambda: (got := on_b.request({"op": "versions.log", "name": "breast-cancer"}))["type"] == "response"
                 and got["result"]["total"], "the version on B", every=0.02)  # fmt: skip
        status = on_b.request({"op": "cluster.status"})["result"]
        assert (status["state"], status["session"]) == ("connected", session)
    finally:
        on_b.close()
    seen = cli_json(b, "log", "breast-cancer")["items"]
    assert seen[0]["number"] == 1
    assert wait_for(lambda: cli_json(b, "show", "breast-cancer@production")["version"]["number"] == 1, "alias on B")
    # B has none of the files: deploying fetches them from the registry and checks every sha256.
    objects = b.state_dir / "objects"
    assert not any(p.is_file() for p in objects.rglob("*")) if objects.exists() else True
    dep = cli_json(b, "deploy", "breast-cancer@production", "--name", "bc")["deployment"]
    assert dep["state"] == "running"
    assert dep["version"] == 1
    _, rows = eval_features(example_dir)
    req = urllib.request.Request(f"{dep['endpoint']}/predict", json.dumps({"inputs": rows[:3]}).encode(),
                                 {"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert len(json.loads(resp.read())["predictions"]) == 3
    # What runs where: A sees B's deployment, B lists it as its own.
    fleet = wait_for(lambda: cli_json(a, "ps", "--all-hosts")["remote"], "B's deployment seen from A")
    assert [(x["name"], x["version"]) for x in fleet] == [("bc", 1)]
    # B registered it while starting, then updated its node once healthy: A sees it running at its endpoint
    # (in `ps --all-hosts` and `cluster status`), not "starting" forever.
    b_id = cli_json(b, "cluster", "status")["host_id"]
    running = {"name": "bc", "host_id": b_id, "state": "running", "health": "healthy", "endpoint": dep["endpoint"]}

    def seen_running(rows: list[dict[str, Any]]) -> bool:
        return [{k: x[k] for k in running} for x in rows] == [running]

    wait_for(lambda: seen_running(cli_json(a, "ps", "--all-hosts")["remote"]), "B's deployment running, from A")
    assert seen_running(cli_json(a, "cluster", "status")["deployments"])
    # B runs the model, A does not: B stands alone in the model's election (its maintenance runs there).
    assert wait_for(lambda: connected(b)["leaders"].get("model-breast-cancer") == b_id, "B leading the model")
    assert "model-breast-cancer" not in connected(a)["leaders"]  # A is no candidate: it runs none of it
    for d in (a, b):  # ZooKeeper was there all along: every presence refresh must have succeeded
        assert "presence not refreshed" not in daemon_log(d)


def test_tags_and_descriptions_travel_both_ways(pair: tuple[DaemonProcess, DaemonProcess], tmp_path: Path) -> None:
    need(registry_up(), f"no OCI registry on {REGISTRY}; run scripts/services.sh as root")
    a, b = pair
    assert a.cli("push", str(make_model_dir(tmp_path / "m1"))).returncode == 0
    wait_for(lambda: cli_json(b, "log", "demo")["items"], "the version on B")
    assert a.cli("tag", "demo:1", "stage=canary", "owner=ml").returncode == 0
    assert a.cli("describe", "demo", "fraud scores").returncode == 0
    wait_for(lambda: cli_json(b, "show", "demo:1")["version"]["tags"] == {"stage": "canary", "owner": "ml"}, "tags")
    wait_for(lambda: cli_json(b, "describe", "demo")["model"]["description"] == "fraud scores", "description on B")
    assert b.cli("tag", "demo:1", "--rm", "owner").returncode == 0
    wait_for(lambda: cli_json(a, "show", "demo:1")["version"]["tags"] == {"stage": "canary"}, "the removal on A")


def test_concurrent_alias_moves_exactly_one_wins_and_histories_agree(
    pair: tuple[DaemonProcess, DaemonProcess], tmp_path: Path, zk: ZkEnsemble, chroot: str
) -> None:
    a, b = pair
    need(registry_up(), f"no OCI registry on {REGISTRY}; run scripts/services.sh as root")
    for i in (1, 2, 3):
        assert a.cli("push", str(make_model_dir(tmp_path / f"m{i}", weights=f"w{i}".encode()))).returncode == 0
    wait_for(lambda: len(cli_json(b, "log", "demo")["items"]) == 3, "three versions on B")

    def history(d: DaemonProcess) -> list[tuple[Any, Any]]:
        return [(e["from_version"], e["to_version"]) for e in cli_json(d, "alias", "history", "demo")["events"]]

    # Rounds of both hosts moving production at the same moment (each from its cached state). Whenever the two
    # overlap, exactly one wins and the other gets CONFLICT; never both lose, never a lost update. (Whether a
    # round overlaps depends on process start-up jitter against a ~10 ms sync: the exact compare-and-set is
    # the next test's.)
    for n in range(8):
        targets = {"a": 2 + n % 2, "b": 1 + n % 3}
        codes: dict[str, int] = {}
        barrier = threading.Barrier(2)

        def move(name: str, d: DaemonProcess, codes: dict[str, int] = codes, barrier: threading.Barrier = barrier,
                 targets: dict[str, int] = targets) -> None:  # fmt: skip
            barrier.wait()
            codes[name] = d.cli("alias", "set", "demo", "production", str(targets[name])).returncode

        threads = [threading.Thread(target=move, args=(name, d)) for name, d in (("a", a), ("b", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(codes.values()) in ([0, 0], [0, 5]), codes
        wait_for(lambda: history(a) == history(b), f"the same history on both (round {n})")
    events = history(a)[::-1]  # oldest first: one chain, each move from where the previous one left the alias
    assert all(prev[1] == cur[0] for prev, cur in itertools.pairwise(events)), events
    assert cli_json(a, "show", "demo@production")["version"]["number"] == events[-1][1]
    wait_for(lambda: cli_json(b, "show", "demo@production")["version"]["number"] == events[-1][1], "B's alias")


def test_an_alias_moved_elsewhere_meanwhile_is_a_conflict_not_an_overwrite(
    pair: tuple[DaemonProcess, DaemonProcess], tmp_path: Path, zk: ZkEnsemble, chroot: str
) -> None:
    """Compare-and-set, exactly: another writer changes the alias node behind B's cache; B's move is refused
    with CONFLICT and the shared alias keeps the other writer's value."""
    need(registry_up(), f"no OCI registry on {REGISTRY}; run scripts/services.sh as root")
    a, b = pair
    for i in (1, 2):
        assert a.cli("push", str(make_model_dir(tmp_path / f"m{i}", weights=f"w{i}".encode()))).returncode == 0
    assert a.cli("alias", "set", "demo", "production", "1").returncode == 0
    wait_for(lambda: cli_json(b, "show", "demo@production")["version"]["number"] == 1, "alias on B")
    client = zk_client(zk, CREDENTIAL)
    try:
        path = f"{chroot}/models/demo/aliases/production"
        data, _ = client.get(path)
        client.set(path, json.dumps({**json.loads(data), "version": 2}).encode())  # no history entry: B can't know
        done = b.cli("alias", "set", "demo", "production", "2", "--reason", "stale")
        assert done.returncode == 5, done.stderr
        assert "moved on another host" in done.stderr
        assert json.loads(client.get(path)[0])["version"] == 2
    finally:
        client.stop()
        client.close()


def test_the_whole_ensemble_away_for_30_s_reads_answer_writes_fail_fast_and_everything_converges(
    daemon_factory: Callable[[str], DaemonProcess], tmp_path: Path, zk_ensemble: ZkEnsemble, chroot: str
) -> None:
    need(registry_up(), f"no OCI registry on {REGISTRY}; run scripts/services.sh as root")
    zk = zk_ensemble
    # A write that waited for ZooKeeper would take this long; failing fast takes a client's start and no wait.
    waited = "write_timeout_seconds = 30\n"
    a, b = member(daemon_factory, "a", zk, chroot, waited), member(daemon_factory, "b", zk, chroot, waited)
    wait_for(lambda: len((connected(a) or {}).get("hosts", [])) == 2, "both daemons registered")
    assert a.cli("push", str(make_model_dir(tmp_path / "m1"))).returncode == 0
    wait_for(lambda: cli_json(b, "log", "demo")["items"], "the version on B")
    zk.stop_all()
    away = time.monotonic()
    wait_for(lambda: cli_json(a, "cluster", "status")["state"] != "connected", "A noticing")
    # Reads answer from the cache; the status says how stale it is.
    assert cli_json(b, "log", "demo")["items"][0]["number"] == 1
    time.sleep(6)  # longer than the session timeout (4 s): the sessions will have expired
    status = cli_json(a, "cluster", "status")
    assert status["state"] != "connected"
    assert status["staleness_seconds"] > 5
    # Writes that need the shared registry fail fast and clearly: refused because the session is gone, before
    # any call to ZooKeeper, not after waiting the 30 s write timeout ("did not answer within 30 s").
    for args in (
        ("alias", "set", "demo", "production", "1"),
        ("push", str(make_model_dir(tmp_path / "m2", weights=b"w2"))),
    ):
        done = a.cli(*args)
        assert done.returncode == 7
        assert "ZooKeeper" in done.stderr
        assert "reads still answer from this host's cache" in done.stderr
        assert "did not answer within" not in done.stderr
    time.sleep(max(0.0, 30 - (time.monotonic() - away)))  # away for 30 s, as the issue asks
    assert cli_json(b, "log", "demo")["items"][0]["number"] == 1
    # Back: new sessions, both daemons registered again, and the caches converge.
    zk.start_all()
    on_a = RawClient(a.socket)  # looks at A without a Python process start per look
    try:

        def both_registered() -> bool:
            status = on_a.request({"op": "cluster.status"})["result"]
            return bool(status["state"] == "connected" and len(status["hosts"]) == 2)

        wait_for(both_registered, "both registered again", every=0.1)
    finally:
        on_a.close()
    assert a.cli("alias", "set", "demo", "production", "1").returncode == 0
    wait_for(lambda: cli_json(b, "show", "demo@production")["version"]["number"] == 1, "the move on B")


def test_hostile_or_corrupt_nodes_are_ignored_and_the_daemon_keeps_serving(
    daemon_factory: Callable[[str], DaemonProcess], zk: ZkEnsemble, chroot: str
) -> None:
    client = zk_client(zk, CREDENTIAL)
    try:
        good = {"version": 1, "by": "x", "at": "2026-01-01T00:00:00Z"}
        for path, data in {
            f"{chroot}/models/evil/versions/0000000001": b"\x00\xffnot json",
            f"{chroot}/models/evil/versions/0000000002": json.dumps({"model": "evil", "number": 2}).encode(),
            f"{chroot}/models/evil/versions/0000000003": b"{" + b" " * (600 << 10) + b"}",
            f"{chroot}/models/evil/aliases/production": json.dumps(good).encode(),
            f"{chroot}/models/..bad/versions/0000000001": b"{}",
            f"{chroot}/hosts/intruder": b"[1, 2, 3]",
            f"{chroot}/deployments/x/intruder": json.dumps({"name": "y"}).encode(),
        }.items():
            client.create(path, data, makepath=True)
        digest = "a" * 64
        hostile = {
            "model": "evil", "number": 4, "digest": digest, "flavor": "sklearn", "model_file": "m.skops",
            "manifest": "", "created_by": "x", "created_at": "2026-01-01T00:00:00Z", "size": 1,
            "files": [{"path": "../../etc/passwd", "size": 1, "sha256": digest}],
        }  # fmt: skip
        client.create(f"{chroot}/models/evil/versions/0000000004", json.dumps(hostile).encode())
        d = member(daemon_factory, "a", zk, chroot)
        status = wait_for(lambda: connected(d), "connected")
        wait_for(lambda: cli_json(d, "cluster", "status")["ignored_nodes"] >= 6, "the bad nodes counted")
        assert status["host_id"]
        assert cli_json(d, "ls")["items"] == [] or all(m["versions"] == 0 for m in cli_json(d, "ls")["items"])
        log = (d.state_dir.parent / "daemon.out").read_text() + (d.state_dir / "daemon.log").read_text()
        assert "ignoring shared version evil" in log
        assert "ignoring host node" in log
        assert d.ping()
    finally:
        client.stop()
        client.close()


def test_one_leader_per_job_and_it_moves_when_its_daemon_goes(
    pair: tuple[DaemonProcess, DaemonProcess],
) -> None:
    a, b = pair
    status = wait_for(lambda: (s := connected(a)) and s["leaders"].get("jobs") and s, "a leader")
    id_a, id_b = status["host_id"], cli_json(b, "cluster", "status")["host_id"]
    leader = status["leaders"]["jobs"]
    assert leader in (id_a, id_b)
    assert cli_json(b, "cluster", "status")["leaders"]["jobs"] == leader  # both see the same one
    gone, stays, stays_id = (a, b, id_b) if leader == id_a else (b, a, id_a)
    gone.stop()  # a clean stop leaves the election at once
    assert wait_for(lambda: connected(stays)["leaders"]["jobs"] == stays_id, "the other daemon leading")


def test_killing_the_ensemble_leader_loses_no_session(
    daemon_factory: Callable[[str], DaemonProcess], zk_ensemble: ZkEnsemble, chroot: str
) -> None:
    d = member(daemon_factory, "a", zk_ensemble, chroot)
    before = wait_for(lambda: connected(d), "connected")
    leader = zk_ensemble.leader()
    assert leader is not None
    leader.kill()
    zk_ensemble.wait_for_leader(15, other_than=leader)
    after = wait_for(lambda: connected(d), "connected again")
    assert after["session"] == before["session"]  # the same session: its ephemeral nodes never went away
    assert [h["id"] for h in after["hosts"]] == [before["host_id"]]


def test_pushes_racing_on_two_hosts_both_land_with_distinct_numbers(
    pair: tuple[DaemonProcess, DaemonProcess], tmp_path: Path
) -> None:
    """Each push takes the first free number in the shared registry: racing pushes of one model never fail and
    never collide; both hosts end with the same versions."""
    need(registry_up(), f"no OCI registry on {REGISTRY}; run scripts/services.sh as root")
    a, b = pair
    codes: list[int] = []
    barrier = threading.Barrier(2)

    def pushes(d: DaemonProcess, name: str) -> None:
        dirs = [make_model_dir(tmp_path / f"{name}{i}", weights=f"{name}{i}".encode()) for i in range(4)]
        barrier.wait()
        codes.extend(d.cli("push", str(m)).returncode for m in dirs)

    threads = [threading.Thread(target=pushes, args=(d, name)) for d, name in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [0] * 8

    def log(d: DaemonProcess) -> list[tuple[int, str]]:
        return sorted((v["number"], v["digest"]) for v in cli_json(d, "log", "demo")["items"])

    wait_for(lambda: len(log(a)) == 8 and log(a) == log(b), "the same eight versions on both")
    assert [n for n, _ in log(a)] == list(range(1, 9))
    assert len({digest for _, digest in log(a)}) == 8


def test_removal_is_refused_in_a_cluster_rather_than_half_done(
    pair: tuple[DaemonProcess, DaemonProcess], tmp_path: Path
) -> None:
    need(registry_up(), f"no OCI registry on {REGISTRY}; run scripts/services.sh as root")
    a, _ = pair
    assert a.cli("push", str(make_model_dir(tmp_path / "m1"))).returncode == 0
    for args in (("rm", "demo:1"), ("rm", "demo", "--model")):
        done = a.cli(*args)
        assert done.returncode == 4
        assert "not shared across hosts" in done.stderr
    assert cli_json(a, "log", "demo")["items"][0]["number"] == 1


def test_versions_that_appear_after_their_model_was_seen_are_still_synced(
    daemon_factory: Callable[[str], DaemonProcess], zk: ZkEnsemble, chroot: str
) -> None:
    """A push on another host creates the model's node, then its versions' node, then the version: a sync that
    ran in between (no versions node yet) must leave a watch for its creation, not lose the version."""
    from daemon.cluster.layout import FileNode, VersionNode, encode

    d = member(daemon_factory, "a", zk, chroot)
    wait_for(lambda: connected(d), "connected")
    client = zk_client(zk, CREDENTIAL)
    try:
        client.create(f"{chroot}/models/late", b"", makepath=True)
        time.sleep(0.5)  # the daemon syncs "late": nothing below it yet
        digest = "b" * 64
        node = VersionNode(
            model="late", number=1, digest=digest, flavor="sklearn", model_file="m.skops", manifest="",
            created_by="x", created_at="2026-01-01T00:00:00Z", size=1,  # type: ignore[arg-type]
            files=[FileNode(path="m.skops", size=1, sha256=digest)],
        )  # fmt: skip
        client.create(f"{chroot}/models/late/versions/0000000001", encode(node), makepath=True)
        assert wait_for(lambda: cli_json(d, "log", "late")["items"], "the late version")[0]["number"] == 1
    finally:
        client.stop()
        client.close()
