"""ZooKeeper with credentials, against a real server: every node a daemon makes is its digest credential's
only (creator-all, nothing for the world); a client without the credential, or with a wrong password, can read
and write none of them (kazoo, and Debian's real zkCli); a daemon with a wrong credential says so naming the
setting and keeps serving from its cache; a world-open tree left by an older cluster is locked on start; a
credential file others can read is refused like ssh refuses such a key."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from textual.widgets import Static

from daemon.cluster.zk import digest_acl
from daemon.deploy.tls import self_signed
from daemon.settings import ClusterSection, ConfigError, zk_credentials
from modeltui.screens import FleetScreen
from tests.helpers import cluster
from tests.helpers.cluster import daemon_log, zk_client
from tests.helpers.daemon import DaemonProcess
from tests.helpers.docker_engine import REGISTRY, registry_up
from tests.helpers.models import make_model_dir
from tests.helpers.prerequisites import need
from tests.helpers.rawsock import RawClient
from tests.helpers.tui import SIZE, make_app, until
from tests.helpers.waiting import wait_for
from tests.helpers.zookeeper import JAVA_DIR, TLS_JARS, ZkEnsemble, java_missing

CREDENTIAL = "modeltui:the-cluster-secret"
WRONG = "modeltui:not-the-secret"


def member(factory: Callable[[str], DaemonProcess], name: str, zk: ZkEnsemble, chroot: str,
           credential: str | None = CREDENTIAL, extra: str = "") -> DaemonProcess:  # fmt: skip
    return cluster.member(factory, name, zk, chroot, credential, extra)


def status(d: DaemonProcess) -> dict[str, Any]:
    """``cluster status`` over the socket (no CLI process per look)."""
    raw = RawClient(d.socket)
    try:
        result: dict[str, Any] = raw.request({"op": "cluster.status"})["result"]
        return result
    finally:
        raw.close()


def refused(d: DaemonProcess) -> dict[str, Any] | None:
    got = status(d)
    return got if got["state"] == "refused" else None


def state(d: DaemonProcess) -> str:
    return str(status(d)["state"])


@pytest.fixture
def owner(zk: ZkEnsemble) -> Iterator[KazooClient]:
    c = zk_client(zk, CREDENTIAL)
    yield c
    c.stop()
    c.close()


def tree(c: KazooClient, top: str) -> list[str]:
    """``top`` and every node below it (read with a client that may)."""
    out, todo = [], [top]
    while todo:
        path = todo.pop()
        out.append(path)
        todo += [f"{path}/{child}" for child in c.get_children(path)]
    return sorted(out)


def zkcli(zk: ZkEnsemble, commands: str) -> str:
    """Debian's zkCli (ZooKeeperMain from the zookeeper package's jar), reading ``commands`` on stdin."""
    jar, nop = JAVA_DIR / "zookeeper.jar", JAVA_DIR / "slf4j-nop.jar"
    need(jar.exists() and nop.exists(), "zkCli needs /usr/share/java/zookeeper.jar and slf4j-nop.jar (zookeeper)")
    done = subprocess.run(
        ["java", "-cp", f"{jar}:{nop}", "org.apache.zookeeper.ZooKeeperMain", "-server", zk.connect_string()],
        input=commands + "quit\n", capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return done.stdout + done.stderr


def test_every_node_is_the_credentials_only_and_nothing_opens_it_without_it(
    daemon_factory: Callable[[str], DaemonProcess], zk: ZkEnsemble, owner: KazooClient, tmp_path: Path
) -> None:
    need(registry_up(), f"no OCI registry on {REGISTRY}; run scripts/services.sh as root")
    top = f"/modeltui-auth-{uuid.uuid4().hex[:8]}"
    chroot = f"{top}/team"  # the chroot's parent is made by the daemon too
    a, b = member(daemon_factory, "a", zk, chroot), member(daemon_factory, "b", zk, chroot)
    wait_for(lambda: len(status(a)["hosts"]) == 2, "both daemons registered")
    # Two daemons with one credential share the registry as without one.
    assert a.cli("push", str(make_model_dir(tmp_path / "m")), "--alias", "production").returncode == 0
    on_b = RawClient(b.socket)
    try:
        wait_for(lambda: on_b.request({"op": "versions.log", "name": "demo"}).get("result", {}).get("total"), "B")
    finally:
        on_b.close()
    assert b.cli("tag", "demo:1", "team=ml").returncode == 0
    wait_for(lambda: owner.get_children(f"{chroot}/leader/jobs"), "the election's candidates")

    nodes = tree(owner, top)
    kinds = {"/versions/", "/aliases/", "/history/ev-", "/hosts/", "/leader/jobs/c-"}
    assert all(any(k in n for n in nodes) for k in kinds), nodes  # data, sequential and ephemeral nodes
    assert {n: owner.get_acls(n)[0] for n in nodes} == dict.fromkeys(nodes, digest_acl(CREDENTIAL))

    for credential in (None, WRONG):
        other = zk_client(zk, credential)
        try:
            for n in nodes:
                with pytest.raises(NoAuthError):
                    other.get(n)
                with pytest.raises(NoAuthError):
                    other.get_children(n)
                with pytest.raises(NoAuthError):
                    other.get_acls(n)
                with pytest.raises(NoAuthError):
                    other.set(n, b"x")
                with pytest.raises(NoAuthError):
                    other.create(f"{n}/intruder", b"x")
                if n != top:  # deleting is the parent's permission: "/" is ZooKeeper's own (world:anyone)
                    with pytest.raises(NoAuthError):
                        other.delete(n)
        finally:
            other.stop()
            other.close()
    assert tree(owner, top) == nodes  # nothing was made, changed or removed

    # An operator inspects them with the real zkCli: refused without the credential, read after addauth.
    version = next(n for n in nodes if "/versions/" in n)
    refused = zkcli(zk, f"get {version}\n")
    assert "Insufficient permission" in refused
    assert '"model":"demo"' not in refused
    granted = zkcli(zk, f"addauth digest {CREDENTIAL}\nget {version}\ngetAcl {version}\n")
    assert '"model":"demo"' in granted
    assert "'digest,'modeltui:" in granted
    assert "cdrwa" in granted


def test_a_wrong_or_missing_credential_is_named_and_the_daemon_serves_from_its_cache(
    daemon_factory: Callable[[str], DaemonProcess], zk: ZkEnsemble, tmp_path: Path
) -> None:
    chroot = f"/modeltui-auth-{uuid.uuid4().hex[:8]}"
    a = member(daemon_factory, "a", zk, chroot)
    wait_for(lambda: state(a) == "connected", "A connected")
    wrong = member(daemon_factory, "wrong", zk, chroot, WRONG)
    bare = member(daemon_factory, "bare", zk, chroot, None, 'zk_auth = "none"')
    for d, setting in ((wrong, "zk_credentials_file"), (bare, 'zk_auth = "none"')):
        got = wait_for(functools.partial(refused, d), "refused")
        assert "NoAuth" in got["problem"], got
        assert setting in got["problem"], got
        log = daemon_log(d)  # the log says why, with the setting
        assert "ZooKeeper refuses access" in log
        assert setting in log
    for d in (a, wrong):  # and never a password
        assert "the-cluster-secret" not in daemon_log(d)
        assert "not-the-secret" not in daemon_log(d)
    assert "refuses access" in wrong.cli("cluster", "status").stdout  # the human form says it too
    done = wrong.cli("doctor", "--json")
    check = {c["name"]: c for c in json.loads(done.stdout)["checks"]}["zookeeper"]
    assert done.returncode == 1
    assert check["status"] == "fail"
    assert "zk_credentials_file" in check["detail"], check
    assert "zk_credentials_file" in check["fix"]
    # Writes that need the shared registry are refused as when ZooKeeper is away (exit 7), naming why; reads
    # answer from the cache.
    moved = wrong.cli("alias", "set", "demo", "production", "1")
    assert moved.returncode == 7, moved.stderr
    assert "refuses access" in moved.stderr
    assert wrong.cli("ls").returncode == 0
    # Neither got in: A sees only itself.
    seen = status(a)
    assert [h["id"] for h in seen["hosts"]] == [seen["host_id"]]


def test_a_world_open_tree_of_an_older_cluster_is_locked_at_start(
    daemon_factory: Callable[[str], DaemonProcess], zk: ZkEnsemble, owner: KazooClient
) -> None:
    chroot = f"/modeltui-auth-{uuid.uuid4().hex[:8]}"
    old = zk_client(zk, None)  # a daemon of before: no credential, every node world:anyone
    try:
        old.create(f"{chroot}/models/legacy/aliases/production", b"{}", makepath=True)
        old.create(f"{chroot}/hosts/old-daemon", b"{}", ephemeral=True, makepath=True)
        d = member(daemon_factory, "d", zk, chroot)
        # "connected" is shown as soon as the session is; the access check (which locks the tree) follows
        wait_for(lambda: "locked to this cluster's credential" in daemon_log(d), "the tree locked")
        assert state(d) == "connected"
        nodes = tree(owner, chroot)
        assert f"{chroot}/hosts/old-daemon" in nodes
        assert {n: owner.get_acls(n)[0] for n in nodes} == dict.fromkeys(nodes, digest_acl(CREDENTIAL))
        with pytest.raises(NoAuthError):
            old.get_children(chroot)
        with pytest.raises(NoAuthError):
            old.create(f"{chroot}/models/new", b"")
    finally:
        old.stop()
        old.close()


# -- the credential's source (no server needed) ---------------------------------------------------------------

ON = ClusterSection(zookeeper="127.0.0.1:2181")


def test_credentials_come_from_the_environment_or_a_private_file(tmp_path: Path) -> None:
    secret = tmp_path / "zk-credentials"
    secret.write_text("svc:s3cret\n")
    secret.chmod(0o600)
    in_file = ON.model_copy(update={"zk_credentials_file": "zk-credentials"})  # relative to the config file
    assert zk_credentials(in_file, {}, tmp_path).get_secret_value() == "svc:s3cret"  # type: ignore[union-attr]
    from_env = zk_credentials(in_file, {"MODELTUI_ZK_CREDENTIALS": "env:pw"}, tmp_path)
    assert from_env is not None
    assert from_env.get_secret_value() == "env:pw"
    assert "s3cret" not in repr(zk_credentials(in_file, {}, tmp_path))
    assert zk_credentials(ClusterSection(), {}, tmp_path) is None  # no cluster
    assert zk_credentials(ON.model_copy(update={"zk_auth": "none"}), {}, tmp_path) is None


@pytest.mark.parametrize(
    ("mode", "content", "expected"),
    [(0o640, "svc:pw", "chmod 600"), (0o604, "svc:pw", "mode 0604"), (0o600, "no-colon", "user:password"),
     (0o600, "svc:", "user:password"), (0o600, "svc:pw\nmore", "one line")],
)  # fmt: skip
def test_a_credential_file_others_can_read_or_a_bad_one_is_refused(
    tmp_path: Path, mode: int, content: str, expected: str
) -> None:
    secret = tmp_path / "zk-credentials"
    secret.write_text(content)
    secret.chmod(mode)
    with pytest.raises(ConfigError, match=expected) as err:
        zk_credentials(ON.model_copy(update={"zk_credentials_file": str(secret)}), {}, tmp_path)
    assert "zk_credentials_file" in str(err.value)
    assert content not in str(err.value)


def test_a_cluster_without_a_credential_does_not_start(tmp_path: Path) -> None:
    config = tmp_path / "daemon.toml"
    config.write_text('[cluster]\nzookeeper = "127.0.0.1:2181"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELTUI_")}
    env |= {"MODELTUI_CONFIG": str(config), "MODELTUI_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run([sys.executable, "-m", "daemon", "check-config"], env=env, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 78, done.stderr
    assert 'zk_auth = "none"' in done.stderr
    assert "zk_credentials_file" in done.stderr
    env["MODELTUI_ZK_CREDENTIALS"] = "svc:pw"
    shown = subprocess.run([sys.executable, "-m", "daemon", "check-config"], env=env, capture_output=True,
                           text=True, timeout=60, check=False)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "svc:pw" not in shown.stdout  # check-config never shows it


def test_the_daemon_forgets_the_credential_from_its_environment(tmp_path: Path) -> None:
    """Read into the settings, then removed from the daemon's environment: maintenance workers, pip and
    ssh-keygen, which inherit it, never see the credential."""
    config = tmp_path / "daemon.toml"
    config.write_text('[cluster]\nzookeeper = "127.0.0.1:2181"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELTUI_")}
    env |= {"MODELTUI_CONFIG": str(config), "MODELTUI_STATE_DIR": str(tmp_path / "state")}
    env["MODELTUI_ZK_CREDENTIALS"] = "svc:do-not-inherit"
    probe = (
        "import contextlib, io, os, subprocess, sys\n"
        "from daemon.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['check-config']) == 0\n"
        "print('MODELTUI_ZK_CREDENTIALS' in os.environ, subprocess.run(['env'], capture_output=True, text=True).stdout)"
    )
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("False ")
    assert "do-not-inherit" not in done.stdout


def test_over_tls_the_server_is_verified_and_the_nodes_still_carry_the_acl(
    daemon_factory: Callable[[str], DaemonProcess], tmp_path: Path
) -> None:
    """``zk_tls``: the daemon talks to ZooKeeper's secureClientPort (a real ZooKeeper with a PEM key store),
    checks its certificate against ``zk_ca_file``, and a server it cannot verify never gets the credential."""
    problem = java_missing() or next((f"{j} missing" for j in TLS_JARS if not (JAVA_DIR / j).exists()), None)
    need(problem is None, f"ZooKeeper over TLS: {problem}; run scripts/services.sh as root")
    cert, key = self_signed(tmp_path / "pki", "127.0.0.1")
    stranger, _ = self_signed(tmp_path / "other-pki", "127.0.0.1")
    chroot = f"/modeltui-tls-{uuid.uuid4().hex[:8]}"
    with ZkEnsemble(tmp_path / "zk", tls=(cert, key)) as ensemble:
        ensemble.start(timeout_s=30)

        def tls_member(name: str, ca: Path) -> DaemonProcess:
            d = daemon_factory(name)
            d.env["MODELTUI_ZK_CREDENTIALS"] = CREDENTIAL
            Path(d.env["MODELTUI_CONFIG"]).write_text(
                f'[cluster]\nzookeeper = "{ensemble.secure_connect_string()}"\nchroot = "{chroot}"\n'
                f'zk_tls = true\nzk_ca_file = "{ca}"\nsession_timeout_seconds = 4\n[exporter]\nenabled = false\n'
            )
            return d.start(timeout=60)

        d = tls_member("d", cert)
        wait_for(lambda: state(d) == "connected", "connected over TLS", 30)
        c = KazooClient(hosts=ensemble.secure_connect_string(), use_ssl=True, ca=str(cert),
                        auth_data=[("digest", CREDENTIAL)])  # fmt: skip
        c.start(15)
        try:
            wait_for(lambda: c.get_children(f"{chroot}/hosts"), "registered over TLS")
            nodes = tree(c, chroot)
            assert {n: c.get_acls(n)[0] for n in nodes} == dict.fromkeys(nodes, digest_acl(CREDENTIAL))
        finally:
            c.stop()
            c.close()
        wary = tls_member("wary", stranger)  # trusts another CA: the handshake fails before any credential
        time.sleep(3)
        assert state(wary) != "connected"
        assert len(status(d)["hosts"]) == 1


def test_an_ensemble_that_requires_sasl_is_named_as_the_reason(
    daemon_factory: Callable[[str], DaemonProcess], tmp_path: Path
) -> None:
    """A server that enforces SASL closes the digest session at its first request (kazoo's
    SessionClosedRequireSaslError): the daemon says so instead of retrying silently."""
    need(java_missing() is None, f"{java_missing()}; run scripts/services.sh as root")
    with ZkEnsemble(tmp_path / "zk") as ensemble:
        server = ensemble[0]
        server.cfg_file.write_text(
            server.cfg_file.read_text() + "authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider\n"
            "enforce.auth.enabled=true\nenforce.auth.schemes=sasl\n"
        )
        ensemble.start(timeout_s=30)
        d = member(daemon_factory, "d", ensemble, "/modeltui")
        got = wait_for(functools.partial(refused, d), "refused", 30)
        assert "requires SASL" in got["problem"], got
        assert "zk_auth" in got["problem"], got
        # the server closes every new session too: the reconnects in between are its answer, not an outage
        seen = set()
        for _ in range(15):
            seen.add(state(d))
            time.sleep(0.1)
        assert seen == {"refused"}, seen


def test_an_unreadable_or_relative_zk_ca_file_is_refused_at_start(tmp_path: Path) -> None:
    tls = ON.model_copy(update={"zk_tls": True, "zk_auth": "none"})
    with pytest.raises(ConfigError, match=r"zk_ca_file .*cannot read"):
        zk_credentials(tls.model_copy(update={"zk_ca_file": str(tmp_path / "missing.pem")}), {}, tmp_path)
    with pytest.raises(ConfigError, match=r"zk_ca_file .*absolute"):
        zk_credentials(tls.model_copy(update={"zk_ca_file": "ca.pem"}), {}, tmp_path)
    (tmp_path / "ca.pem").write_text("x")
    assert zk_credentials(tls.model_copy(update={"zk_ca_file": str(tmp_path / "ca.pem")}), {}, tmp_path) is None


async def test_the_fleet_view_says_why_zookeeper_refuses_the_daemon(
    daemon_factory: Callable[[str], DaemonProcess], zk: ZkEnsemble, owner: KazooClient
) -> None:
    chroot = f"/modeltui-auth-{uuid.uuid4().hex[:8]}"
    owner.ensure_path(chroot)  # the cluster's tree, locked to its credential
    d = member(daemon_factory, "wrong", zk, chroot, WRONG)
    await asyncio.to_thread(wait_for, functools.partial(refused, d), "refused")
    app = make_app(d)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected", "connected")
        await pilot.press("F")
        await until(pilot, lambda: isinstance(app.screen, FleetScreen), "fleet screen")
        screen = app.screen

        def shown() -> str:
            return str(screen.query_one("#fleet-title", Static).render())

        await until(pilot, lambda: "refuses access" in shown(), "the reason in the title", 15)
        assert "refused" in shown()
        assert "zk_credentials_file" in shown()
