"""The CLI's human output, rendered from result objects built here: every table at 80 columns keeps the
columns an operator needs whole (names, refs, endpoints, states) and drops or shortens the rest; at 160
columns nothing is lost; and no control character from the registry reaches the terminal raw."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console, RenderableType

from daemon.protocol import results as r
from daemon.protocol.deploy import ContainerOptions, DeploymentInfo
from modeltui import format as fmt
from modeltui.cli import alerts as alerts_cli
from modeltui.cli import cluster as cluster_cli
from modeltui.cli import deploy as deploy_cli
from modeltui.cli import monitor as monitor_cli
from modeltui.cli import ops as ops_cli
from modeltui.cli import render

NOW = datetime(2026, 11, 27, 14, 30, tzinfo=UTC)
MODEL = "breast-cancer-wisconsin-diagnostic"  # 34 characters: long, as real model names get
NAME = f"{MODEL}-production"
REF = f"{MODEL}@production"
ENDPOINT = "http://127.0.0.1:40123"
DESCRIPTION = (
    "Logistic regression on the Wisconsin diagnostic breast cancer data set, 30 features computed from a "
    "digitized image of a fine needle aspirate of a breast mass, scaled, then C tuned by cross-validation.\n"
    "Second paragraph the table never shows."
)
HOSTILE = "col\x1b[2J\x1b]0;pwned\x07\rforged line\x9b31m\x00\x7f\u202egnp.exe"


def console(width: int) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=width, highlight=False, soft_wrap=True), buffer


def printed(width: int, *renderables: RenderableType) -> str:
    con, buffer = console(width)
    for item in renderables:
        con.print(item)
    return buffer.getvalue()


def printed_by(monkeypatch: pytest.MonkeyPatch, module: object, width: int, show: Callable[[], None]) -> str:
    """The output of a ``show_*`` function of a CLI module that prints on its module's ``out``."""
    con, buffer = console(width)
    monkeypatch.setattr(module, "out", con)
    show()
    return buffer.getvalue()


def lines_of(text: str) -> Iterator[str]:
    return (line.rstrip() for line in text.splitlines())


def assert_fits(text: str, width: int, *whole: str) -> None:
    for line in lines_of(text):
        assert len(line) <= width, f"{len(line)} > {width}: {line!r}\n{text}"
    for value in whole:
        assert value in text, f"{value!r} is not shown whole:\n{text}"
    assert "…" not in "".join(whole)


def deployment(name: str = NAME, ref: str = REF, state: str = "running", version: int = 3) -> DeploymentInfo:
    return DeploymentInfo(
        name=name, ref=ref, model=MODEL, version=version, backend="process", desired="running", state=state,
        health="healthy", endpoint=ENDPOINT, port=40123, restarts=2, message="", env={}, options=ContainerOptions(),
        instance=None, created_at=NOW, updated_at=NOW, started_at=NOW - timedelta(hours=3),
    )  # fmt: skip


def summary(number: int = 3, message: str = "retrained on November's labels", tags: dict[str, str] | None = None,
            aliases: tuple[str, ...] = ("production", "staging")) -> r.VersionSummary:
    return r.VersionSummary(
        model=MODEL, number=number, digest="sha256:" + "ab" * 32, parent=number - 1 or None, flavor="sklearn",
        message=message, tags=tags or {"dataset": "wdbc-2026-11", "owner": "ml-platform-team"},
        created_by="alice", created_at=NOW, size=123_456, file_count=4, aliases=list(aliases),
    )  # fmt: skip


# -- tables at 80 columns ----------------------------------------------------------------------------------------
def test_ls_keeps_names_and_cuts_the_description_to_one_line() -> None:
    model = r.ModelSummary(name=MODEL, description=DESCRIPTION, created_at=NOW, updated_at=NOW, versions=12,
                           latest=12, aliases={"production": 11})  # fmt: skip
    result = r.ModelList(items=[model], total=1)
    text = printed(80, render.models_table(result))
    assert_fits(text, 80, MODEL, "production→11")
    rows = [line for line in lines_of(text) if MODEL in line]
    assert len(rows) == 1
    assert rows[0].endswith("…")
    assert "Logistic regression" in rows[0]
    assert len(text.splitlines()) == 3  # header, the row, the caption: no description wrapped over 13 lines

    wide = printed(1000, render.models_table(result))
    assert "cross-validation. …" in wide
    assert "2026-11-27 14:30:00" in wide
    assert "Second paragraph" not in wide


def test_ps_keeps_name_ref_version_state_and_endpoint_whole() -> None:
    readme = deployment(name="breast-cancer-production", ref="breast-cancer@production")
    pinned = deployment(name="breast-cancer", ref="breast-cancer:3", state="crashloop")
    result = r.DeploymentList(items=[readme, pinned])
    text = printed(80, render.deployments_table(result))
    assert_fits(text, 80, "breast-cancer-production ", ENDPOINT, "running", "crashloop")
    assert text.splitlines()[0].split() == ["name", "ref", "ver", "state", "endpoint"]  # one row each
    assert "breast-cancer-production  @production" in text  # the default name says the model already
    assert "breast-cancer             :3 " in text

    wide = printed(160, render.deployments_table(result))
    assert_fits(wide, 160, "breast-cancer@production", "breast-cancer:3", "process", "healthy", "restarts")


def test_ps_with_names_too_long_for_one_line_shows_each_deployment_as_a_block() -> None:
    result = r.DeploymentList(items=[deployment(), deployment(name="bc", ref=f"{MODEL}:3", state="crashloop")])
    text = printed(80, render.deployments_table(result))
    assert_fits(text, 80, NAME, REF, ENDPOINT, "running", "crashloop", f"{MODEL}:3")
    assert_fits(printed(200, render.deployments_table(result)), 200, NAME, REF, "healthy", "restarts")


def test_ps_all_hosts_and_cluster_status_keep_hosts_names_and_endpoints() -> None:
    remote = r.RemoteDeployment(name=NAME, host_id="worker-02", host="worker-02.example", model=MODEL, version=3,
                                ref=REF, backend="docker", state="running", health="healthy", endpoint=ENDPOINT)
    listing = r.DeploymentList(items=[deployment()], remote=[remote])
    text = printed(100, deploy_cli.all_hosts_table(listing, "worker-01.example"))
    assert_fits(text, 100, "worker-01.example", "worker-02.example", NAME, ENDPOINT, "running")

    status = r.ClusterStatus(
        enabled=True, zookeeper="zk1:2181,zk2:2181,zk3:2181", state="connected", host_id="worker-01", host="worker-01",
        hosts=[r.ClusterHost(id="worker-01", host="worker-01.example", pid=4242, socket="/run/m.sock",
                             capabilities=["process", "docker", "gpu"], started_at=NOW, this=True)],
        deployments=[remote],
    )  # fmt: skip
    out = printed(80, cluster_cli.hosts_table(status), cluster_cli.deployments_table(status))
    assert_fits(out, 80, "worker-01.example", NAME, ENDPOINT, "running", "this")
    wide = printed(200, cluster_cli.hosts_table(status), cluster_cli.deployments_table(status))
    assert_fits(wide, 200, "process, docker, gpu", "4242", REF, "docker", "healthy")


def test_log_and_alias_history_keep_versions_and_aliases() -> None:
    versions = r.VersionList.of([summary(3), summary(2, message="first line\nsecond line", aliases=())], total=2)
    text = printed(80, render.versions_table(versions))
    assert_fits(text, 80, "production, staging", "retrained on")
    assert "second line" not in text
    assert "first line …" in text
    wide = printed(200, render.versions_table(versions))
    assert_fits(wide, 200, "sha256:abab", "dataset=wdbc-2026-11, owner=ml-platform-team", "alice", "120.6 KiB")

    move = r.AliasEventInfo(model=MODEL, alias="production", from_version=10, to_version=11, by="alice", at=NOW,
                            reason="rolled back: the f1 alert fired twice in an hour after the retrain on Monday")
    con, buffer = console(80)
    render.print_history(con, r.AliasHistory(model=MODEL, events=[move]))
    assert_fits(buffer.getvalue(), 80, "production", "10", "11", "2026-11-27 14:30:00")
    con, buffer = console(200)
    render.print_history(con, r.AliasHistory(model=MODEL, events=[move]))
    assert_fits(buffer.getvalue(), 200, move.reason, "alice")


def test_alerts_and_rules_keep_deployment_rule_and_state(monkeypatch: pytest.MonkeyPatch) -> None:
    firing = r.AlertStateInfo(deployment=NAME, rule="f1_below_threshold", severity="critical", state="firing",
                              value=0.8123, since=NOW, active_since=NOW, expr="f1 < 0.85 for 10m")
    moved = r.AlertTransitionInfo(deployment=NAME, rule="f1_below_threshold", severity="critical", state="firing",
                                  value=0.81, at=NOW, message="f1 0.8123 < 0.85 for 10m over the last 5m window")
    alerts = r.AlertList(items=[firing], history=[moved])
    text = printed_by(monkeypatch, alerts_cli, 80, lambda: alerts_cli.show_alerts(alerts))
    assert_fits(text, 80, NAME, "f1_below_threshold", "FIRING", "firing")
    wide = printed_by(monkeypatch, alerts_cli, 200, lambda: alerts_cli.show_alerts(alerts))
    assert_fits(wide, 200, "f1 < 0.85 for 10m", "0.8123", "2026-11-27 14:30:00 UTC", moved.message, "critical")

    rule = r.AlertRuleInfo(deployment=NAME, name="f1_below_threshold", expr="f1 < 0.85 for 10m", metric="f1", op="<",
                           threshold=0.85, for_seconds=600, severity="warning", window_seconds=300, source="manifest")
    rules = r.AlertRuleList(items=[rule])
    text = printed_by(monkeypatch, alerts_cli, 80, lambda: alerts_cli.show_rules(rules))
    assert_fits(text, 80, NAME, "f1_below_threshold", "f1 < 0.85 for 10m")
    wide = printed_by(monkeypatch, alerts_cli, 200, lambda: alerts_cli.show_rules(rules))
    assert_fits(wide, 200, "5m", "manifest", "warning")


def test_metrics_lines_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    m = r.DeploymentMetrics(
        deployment=NAME, window_seconds=3600, step_seconds=60, start=NOW, end=NOW, up=True, last_scrape=NOW,
        requests=12_345,
        request_rate=3.43, error_rate=0.001, client_error_rate=0.02, latency_p50_seconds=0.0012,
        latency_p95_seconds=0.0051, latency_p99_seconds=0.0123, labelled=1234, accuracy=0.951, precision=0.948,
        recall=0.944, f1=0.946,
    )  # fmt: skip
    text = printed_by(monkeypatch, monitor_cli, 80, lambda: monitor_cli.show_metrics(m))
    assert_fits(text, 80, NAME, "recall 0.944", "f1 0.946", "p99 12.3 ms", "2026-11-27 14:30:00 UTC")


def test_audit_keeps_who_what_and_result(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = r.AuditEntry(at=NOW, uid=1001, user="alice", pid=77, op="deployments.deploy", target=REF,
                         result="FORBIDDEN", message="deployments.deploy needs the operator role; alice is a viewer")
    text = printed(80, ops_cli.audit_table([entry]))
    assert_fits(text, 80, "alice", "deployments.deploy", REF, "FORBIDDEN", "11-27 14:30:00")
    wide = printed(200, ops_cli.audit_table([entry]))
    assert_fits(wide, 200, "alice (1001)", "2026-11-27 14:30:00", entry.message)


def test_kept_columns_stay_whole_even_on_a_very_narrow_terminal() -> None:
    text = printed(30, render.deployments_table(r.DeploymentList(items=[deployment()])))
    assert NAME in text
    assert REF in text
    assert ENDPOINT in text
    assert "…" not in text


# -- control characters --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("a\x1b[2Jb", "a\\x1b[2Jb"),  # clear the screen
        ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),  # retitle the window
        ("ok\rforged", "ok\\rforged"),  # overwrite the line
        ("one\ntwo", "one\\ntwo"),  # forge a line
        ("\x9b2J\x00\x7f", "\\x9b2J\\x00\\x7f"),  # C1 CSI, NUL, DEL
        ("\u202egnp.exe", "\\u202egnp.exe"),  # bidi override
        ("\u2028", "\\u2028"),
        ("café → ünïcode ✓ 日本", "café → ünïcode ✓ 日本"),  # printable text is untouched
    ],
)
def test_printable_spells_out_control_characters(raw: str, shown: str) -> None:
    assert fmt.printable(raw) == shown


def test_rich_alone_would_pass_escape_sequences_through() -> None:
    """Why ``printable`` exists: Rich's Text (markup off) writes ESC, C1, NUL and DEL as they are."""
    from rich.text import Text

    assert "\x1b[2J" in printed(80, Text("a\x1b[2Jb"))
    assert "\x1b" not in printed(80, render.plain("a\x1b[2Jb"))


RAW = ("\x1b", "\x9b", "\x07", "\r", "\x00", "\x7f", "\u202e")


def assert_no_raw_controls(text: str) -> None:
    for ch in RAW:
        assert ch not in text, f"{ch!r} written raw:\n{text!r}"
    assert "forged line" not in text.splitlines()


def test_diff_spells_out_hostile_signature_params_and_requirements() -> None:
    diff = r.VersionDiff(
        a=summary(1), b=summary(2), unchanged_files=0,
        files=[r.FileChange(path=f"data/{HOSTILE}.csv", status="added", size_a=None, size_b=10, sha256_a=None,
                            sha256_b="cd" * 32)],
        params=[r.ValueChange(key=HOSTILE, a=HOSTILE, b=1.0)],
        metrics=[r.MetricChange(key=HOSTILE, a=0.9, b=0.93, delta=0.03)],
        signature=[r.ValueChange(key=f"inputs.{HOSTILE}", a=f"{HOSTILE}:double", b=None)],
        requirements_added=[f"scikit-learn{HOSTILE}"], requirements_removed=[HOSTILE],
        flavor=r.ValueChange(key="flavor", a="sklearn", b=HOSTILE),
    )  # fmt: skip
    con, buffer = console(80)
    render.print_diff(con, diff)
    text = buffer.getvalue()
    assert_no_raw_controls(text)
    assert "col\\x1b[2J\\x1b]0;pwned\\x07\\rforged line\\x9b31m\\x00\\x7f\\u202egnp.exe" in text


def test_show_ls_log_ps_alerts_audit_spell_out_control_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    version = summary(1, message=f"msg {HOSTILE}", tags={"k": HOSTILE})
    detail = r.VersionDetail(
        version=version, description=HOSTILE, model_file="model.skops", manifest="", params={HOSTILE: HOSTILE},
        metrics={HOSTILE: 1.0}, signature={}, requirements=[HOSTILE], source=r.SourceInfo(git_commit=HOSTILE),
        files=[r.FileInfo(path=HOSTILE, size=1, sha256="ab" * 32)], children=[], lineage=[],
    )  # fmt: skip
    model = r.ModelSummary(name=MODEL, description=f"first {HOSTILE}\nsecond {HOSTILE}", created_at=NOW,
                           updated_at=NOW, versions=1, latest=1, aliases={})  # fmt: skip
    dep = deployment().model_copy(update={"message": HOSTILE, "health": HOSTILE})
    con, buffer = console(80)
    render.print_version(con, detail)
    render.print_model(con, model)
    render.print_deployment(con, r.DeploymentDetail(deployment=dep))
    render.print_history(con, r.AliasHistory(model=MODEL, events=[r.AliasEventInfo(
        model=MODEL, alias="production", from_version=1, to_version=2, by=HOSTILE, at=NOW, reason=HOSTILE)]))
    con.print(render.models_table(r.ModelList(items=[model], total=1)))
    con.print(render.versions_table(r.VersionList.of([version], total=1)))
    con.print(render.deployments_table(r.DeploymentList(items=[dep])))
    con.print(ops_cli.audit_table([r.AuditEntry(at=NOW, uid=1, user=HOSTILE, pid=1, op="x", target=HOSTILE,
                                                result="ok", message=HOSTILE)]))
    text = buffer.getvalue()
    alerts = r.AlertList(items=[], history=[r.AlertTransitionInfo(deployment=NAME, rule="r", severity="info",
                                                                  state="firing", value=None, at=NOW, message=HOSTILE)])
    text += printed_by(monkeypatch, alerts_cli, 200, lambda: alerts_cli.show_alerts(alerts))
    assert_no_raw_controls(text)
    assert text.count("\\x1b[2J") >= 15


def test_error_messages_spell_out_control_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    from modeltui.cli import common as cli

    con, buffer = console(80)
    monkeypatch.setattr(cli, "err", con)
    with pytest.raises(SystemExit) as exited:
        cli.fail(f"model {HOSTILE!s} not found [bold]", 3)
    assert exited.value.code == 3
    assert_no_raw_controls(buffer.getvalue())
    assert "\\x1b[2J" in buffer.getvalue()
    assert "[bold]" in buffer.getvalue()  # text, not markup


def test_state_words_are_coloured_from_the_one_palette(monkeypatch: pytest.MonkeyPatch) -> None:
    """ps, cluster status and alerts colour a state as the TUI does: its tone in modeltui.format.PALETTE."""
    firing = r.AlertStateInfo(deployment=NAME, rule="r", severity="warning", state="firing", value=1.0, since=NOW,
                              active_since=NOW, expr="up == 0")
    buffer = io.StringIO()
    monkeypatch.setattr(alerts_cli, "out", Console(file=buffer, width=200, force_terminal=True,
                                                   color_system="standard"))
    alerts_cli.show_alerts(r.AlertList(items=[firing], history=[]))
    assert "\x1b[1;31mFIRING" in buffer.getvalue()  # bad: bold red
    assert "\x1b[33mwarning" in buffer.getvalue()  # warn: yellow
    assert render.state_text("crashloop").style == fmt.PALETTE["bad"].style == "bold red"
    assert render.state_text("starting").style == fmt.PALETTE["busy"].style
