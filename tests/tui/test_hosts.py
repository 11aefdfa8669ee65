"""Every host in one TUI, driven with Textual's Pilot against two REAL daemons on two sockets (contexts ``a``
and ``b``, one process deployment each), ``b`` again through a real ssh to 127.0.0.1 and modeltui-bridge
(``b-ssh``), a context where nothing listens (``gone``), one whose daemon takes the connection and never
answers (``hang``) and an ssh one whose server takes the TCP connection and never answers (``ssh-hang``):
the hosts view lists every host's rows as they come (the hanging hosts hold back nobody), one filter applies
to all, the tabs switch the context, and the fleet view (no cluster) shows the contexts' hosts."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from textual.widgets import Static, Tab, Tabs

from modeltui import fanout
from modeltui.app import ModelTuiApp
from modeltui.client import DaemonClient, connect
from modeltui.contexts import Context, open_client
from modeltui.screens import DeploymentsScreen, FleetScreen
from modeltui.screens.hosts import CONNECTING, UNREACHABLE, HostsScreen, HostsTable
from modeltui.widgets import DeploymentsTable, KeyedTable
from tests.helpers.daemon import DaemonProcess, daemon_env
from tests.helpers.models import echo_model
from tests.helpers.snapshots import screen_text
from tests.helpers.sshd import BRIDGE, SshServer
from tests.helpers.tui import SIZE, push, rows, until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@dataclass
class Hosts:
    a: DaemonProcess
    b: DaemonProcess
    gone: Path
    """A socket path where nothing listens."""
    hang: socket.socket
    """Listening, never accepting: a connection is taken (queued) and hello is never answered."""
    hang_path: Path
    sshd: SshServer
    ssh_hang: socket.socket
    """A TCP port that takes connections and never answers (an ssh server that hangs)."""
    ssh_hang_port: int

    def contexts(self) -> list[Context]:
        return [
            Context("a", socket=self.a.socket),
            Context("b", socket=self.b.socket),
            Context("b-ssh", ssh=self.sshd.host, ssh_args=self.sshd.ssh_args, bridge=BRIDGE,
                    remote_socket=str(self.b.socket)),
            Context("gone", socket=self.gone),
            Context("hang", socket=self.hang_path),
            Context("ssh-hang", ssh=self.sshd.host, bridge=BRIDGE,
                    ssh_args=(*self.sshd.ssh_args, "-p", str(self.ssh_hang_port))),
        ]


def start_daemon(base: Path, model: str, deployment: str) -> DaemonProcess:
    """A real daemon with the echo model pushed as ``model`` (alias production) and deployed as ``deployment``."""
    (base / "home").mkdir(parents=True)
    env = daemon_env(base)
    d = DaemonProcess(Path(env["MODELTUI_STATE_DIR"]), Path(env["MODELTUI_SOCKET"]), env=env).start()
    push(d, echo_model(base / model, model), "--alias", "production")
    done = d.cli("deploy", f"{model}@production", "--name", deployment, "--timeout", "60")
    assert done.returncode == 0, done.stderr
    return d


@pytest.fixture(scope="module")
def hosts(sshd: SshServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    """Shared by the module's tests: starting two daemons and two deployments is the slow part."""
    base = tmp_path_factory.mktemp("hosts")
    made: list[DaemonProcess] = []
    hang = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ssh_hang = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        made.append(start_daemon(base / "a", "fraud", "fraud-a"))
        made.append(start_daemon(base / "b", "churn", "churn-b"))
        hang.bind(str(base / "hang.sock"))
        hang.listen(8)
        ssh_hang.bind(("127.0.0.1", 0))
        ssh_hang.listen(8)
        yield Hosts(made[0], made[1], base / "nothing-here.sock", hang, base / "hang.sock", sshd, ssh_hang,
                    ssh_hang.getsockname()[1])
    finally:
        hang.close()
        ssh_hang.close()
        for d in made:
            d.stop()
            d.kill_deployments()


def make_app(hosts: Hosts, current: str = "a") -> ModelTuiApp:
    ctx = {c.name: c for c in hosts.contexts()}[current]
    assert ctx.socket is not None
    path = ctx.socket
    return ModelTuiApp(lambda: connect(path), contexts=hosts.contexts(), context=current)


def by_host(table: KeyedTable) -> dict[str, list[str]]:
    """Each host's rows' second cell (the deployment's name, or what the host's one row says)."""
    shown: dict[str, list[str]] = {}
    for row in rows(table):
        shown.setdefault(row[0], []).append(row[1])
    return shown


def status(screen: HostsScreen) -> str:
    return str(screen.query_one("#hosts-status", Static).render())


def tab_labels(screen: HostsScreen) -> list[str]:
    return [str(tab.label) for tab in screen.query_one(Tabs).query(Tab)]


async def test_all_hosts_in_one_table_and_the_unreachable_ones_hold_back_nobody(
    hosts: Hosts, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The hanging host is given all the time the test needs: its row must wait for it whatever the load.
    monkeypatch.setattr(fanout, "HOST_TIMEOUT", 120.0)
    app = make_app(hosts)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected", "connected")
        app.show_view("hosts")
        await until(pilot, lambda: app.screen.query_one(HostsTable), "hosts view")
        screen = app.screen
        assert isinstance(screen, HostsScreen)
        table = screen.query_one(HostsTable)
        assert tab_labels(screen) == ["all hosts", "● a", "● b", "● b-ssh", "● gone", "● hang", "● ssh-hang"]

        # Every daemon's rows show (b's twice: over its socket and over ssh) while the hanging host has still
        # not answered.
        await until(pilot, lambda: by_host(table).get("a") == ["fraud-a"] and by_host(table).get("b") == ["churn-b"]
                    and by_host(table).get("b-ssh") == ["churn-b"], "every host's rows", 20)
        assert by_host(table)["hang"] == [CONNECTING]
        assert by_host(table)["ssh-hang"] == [CONNECTING]
        await until(pilot, lambda: by_host(table).get("gone") == [UNREACHABLE], "gone unreachable")
        assert table.row_of("gone/")["message"].startswith(f"no daemon answers on {hosts.gone}")
        assert status(screen).startswith(
            "3 deployment(s) on 3 of 6 host(s) · waiting for hang, ssh-hang · gone unreach"
        )
        print("\n".join(" | ".join(r) for r in rows(table)))
        print(status(screen))

        # One filter over every host's rows (any column: the ref here).
        screen.apply_filter("churn@")
        await pilot.pause()
        assert by_host(table) == {"b": ["churn-b"], "b-ssh": ["churn-b"]}
        await pilot.press("slash", *"fraud", "enter")
        await until(pilot, lambda: by_host(table) == {"a": ["fraud-a"]}, "typed filter")
        screen.apply_filter("")
        await pilot.pause()

        # The hanging host's daemon goes away: its row says so, the others are untouched.
        hosts.hang.close()
        hosts.ssh_hang.close()
        await until(pilot, lambda: by_host(table).get("hang") == [UNREACHABLE], "hang unreachable", 12)
        await until(pilot, lambda: by_host(table).get("ssh-hang") == [UNREACHABLE], "ssh-hang unreachable", 12)
        assert by_host(table)["a"] == ["fraud-a"]
        assert "did not answer hello" in table.row_of("hang/")["message"]
        shown_text = screen_text(app)
        print(shown_text)
        lines = shown_text.splitlines()
        assert lines[-1].lstrip().startswith("? Help"), lines[-1]  # ? help and the view's keys, at 80x24
        assert any(line.lstrip().startswith("hang") and UNREACHABLE in line for line in lines)

        # A host's tab lists its rows only and switches the App to it.
        await pilot.press("right_square_bracket", "right_square_bracket")
        await until(pilot, lambda: app.context.name == "b", "switched to b")
        await until(pilot, lambda: app.connection == "connected", "connected to b")
        await until(pilot, lambda: by_host(table) == {"b": ["churn-b"]}, "b's rows only")
        assert isinstance(app.screen, HostsScreen)

        # Back on all hosts; enter on the row b-ssh shows: the App switches to that context (over ssh) and
        # opens its deployments view on that deployment.
        await pilot.press("left_square_bracket", "left_square_bracket")
        await until(pilot, lambda: screen.tab is None and app.context.name == "a", "all hosts, context a")
        await until(pilot, lambda: by_host(table).get("b-ssh") == ["churn-b"], "b-ssh's row")
        table.move_cursor(row=table.get_row_index("b-ssh/churn-b"))
        await pilot.press("enter")
        await until(pilot, lambda: app.context.name == "b-ssh" and app.connection == "connected", "on b-ssh", 20)
        await until(pilot, lambda: [r[0] for r in rows(app.screen.query_one(DeploymentsTable))] == ["churn-b"],
                    "b-ssh's deployment")
        assert isinstance(app.screen, DeploymentsScreen)
        # The hosts view is gone: the connections it opened to the other hosts are closed.
        await until(pilot, lambda: not app.fanout.hosts, "the other hosts' connections closed")


async def test_fleet_without_a_cluster_shows_the_contexts(hosts: Hosts) -> None:
    app = make_app(hosts, current="b")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected", "connected")
        app.show_view("fleet")
        await until(pilot, lambda: app.screen.query_one("#fleet-deployments"), "fleet view")
        screen = app.screen
        assert isinstance(screen, FleetScreen)
        deployments = screen.query_one("#fleet-deployments", KeyedTable)
        hosts_table = screen.query_one("#fleet-hosts", KeyedTable)
        await until(pilot, lambda: {r[0] for r in rows(deployments)} == {"b*", "a", "b-ssh"}, "every host's rows", 20)
        assert sorted(r[1] for r in rows(deployments)) == ["churn-b", "churn-b", "fraud-a"]
        assert hosts_table.display
        await until(pilot, lambda: {r[1]: r[2] for r in rows(hosts_table)}.get("gone") == UNREACHABLE,
                    "gone unreachable in the hosts table")
        title = str(screen.query_one("#fleet-title", Static).render())
        assert "no cluster: the contexts are the fleet" in title
        print(screen_text(app))


async def test_leaving_the_view_while_a_host_hangs_leaves_no_connection_and_starts_no_daemon(
    hosts: Hosts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The contexts beside the current one are only ever connected to: ``local`` (the socket found as usual,
    here one where no daemon runs) stays unreachable even when the App's ``connect_context`` (the CLI's)
    would start a daemon. And a host that answers only after the user left the view (b, stopped, then
    continued) gets its connection closed at once: nobody would close it later."""
    monkeypatch.setattr(fanout, "HOST_TIMEOUT", 120.0)
    local_socket = tmp_path / "local.sock"
    monkeypatch.setenv("MODELTUI_SOCKET", str(local_socket))
    contexts = [Context("a", socket=hosts.a.socket), Context("b", socket=hosts.b.socket), Context("local")]
    path = hosts.a.socket
    app = ModelTuiApp(lambda: connect(path), contexts=contexts, context="a",
                      connect_context=lambda c: open_client(c, start=True))  # what the CLI passes
    opened: list[str] = []
    clients: list[DaemonClient] = []
    open_other = app.fanout.opener

    async def counting(ctx: Context) -> DaemonClient:
        opened.append(ctx.name)
        client = await open_other(ctx)
        clients.append(client)
        return client

    app.fanout.opener = counting
    assert hosts.b.proc is not None
    hosts.b.proc.send_signal(signal.SIGSTOP)  # takes connections, answers nothing
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.connection == "connected", "connected")
            app.show_view("hosts")
            await until(pilot, lambda: app.screen.query_one(HostsTable), "hosts view")
            table = app.screen.query_one(HostsTable)
            await until(pilot, lambda: by_host(table).get("a") == ["fraud-a"]
                        and by_host(table).get("local") == [UNREACHABLE], "a's rows, local unreachable", 20)
            assert not local_socket.exists()  # no daemon was started for local
            assert by_host(table)["b"] == [CONNECTING]
            assert "b" in opened

            app.show_view("models")  # leave while b still connects
            await until(pilot, lambda: not isinstance(app.screen, HostsScreen) and not app.fanout.hosts,
                        "the hosts view gone, its connections closed")
            hosts.b.proc.send_signal(signal.SIGCONT)
            await until(pilot, lambda: clients and all(c.closed.is_set() for c in clients),
                        "b's late connection closed", 20)
            assert not app.fanout.hosts
            assert not local_socket.exists()
    finally:
        hosts.b.proc.send_signal(signal.SIGCONT)
