"""Cluster commands of the CLI: ``cluster status [--json]`` (the ZooKeeper connection, the daemons, the
elections' leaders and every host's deployments as this daemon sees them). ``ps --all-hosts`` lives with the
deployment commands and borrows the wording here."""

from __future__ import annotations

from datetime import datetime

import click
from rich.text import Text

from daemon.protocol import requests as q
from daemon.protocol import results as r

from .. import format as fmt
from . import render
from .common import emit, json_option, main, out, run

NOT_CONFIGURED = "cluster: not configured (set [cluster] zookeeper in the daemon's config)"


def _when(t: datetime | None) -> str:
    return "-" if t is None else f"{fmt.when(t)} UTC"


def _row(key: str, value: str | Text) -> Text:
    return Text.assemble((f"{key:>10}  ", "dim"), value)


HOST_COLS = (render.Col("id"), render.Col("host"), render.Col("pid", drop=2, justify="right"),
             render.Col("capabilities", drop=3, shorten=12), render.Col(""), render.Col("started", drop=1))
DEPLOYMENT_COLS = (render.Col("host"), *(c for c in render.DEPLOYMENT_COLS if c.header not in ("uptime", "restarts")))


def hosts_table(s: r.ClusterStatus) -> render.FitTable:
    rows = [(h.id, h.host, str(h.pid), ", ".join(h.capabilities) or "-", Text("this", style="bold") if h.this else "",
             _when(h.started_at)) for h in s.hosts]
    return render.FitTable(HOST_COLS, rows, title="hosts")


def deployments_table(s: r.ClusterStatus) -> render.FitTable:
    rows = []
    previous = None
    for d in sorted(s.deployments, key=lambda d: (d.host_id != s.host_id, d.host_id, d.name)):
        host = "" if d.host_id == previous else d.host_id + (" (this)" if d.host_id == s.host_id else "")
        previous = d.host_id
        rows.append((host, d.name, render.ref_cell(d.name, d.ref), str(d.version or "-"), d.backend,
                     render.state_text(d.state), d.health, d.endpoint or "-"))
    return render.FitTable(DEPLOYMENT_COLS, rows, title="deployments")


def show_status(s: r.ClusterStatus) -> None:
    if not s.enabled:
        out.print(render.plain(NOT_CONFIGURED))  # literally: [cluster] is not markup
        return
    since = f" since {_when(s.since)}" if s.since else ""
    out.print(
        Text.assemble(
            "cluster: ", render.toned(s.state, fmt.CLUSTER_TONE),
            f"{since} ({fmt.staleness(s.staleness_seconds)})",
        )
    )
    if s.problem:
        out.print(render.plain(s.problem))
    session = f"  session {s.session}" if s.session else ""
    out.print(_row("zookeeper", render.plain(f"{s.zookeeper}  chroot {s.chroot or '/'}{session}")))
    out.print(_row("member", render.plain(f"{s.host_id} on {s.host}")))
    out.print(_row("registry", render.plain(s.registry or "- (none configured)")))
    if s.hosts:
        out.print(hosts_table(s))
    else:
        why = "" if s.state == "connected" else f" (ZooKeeper is {s.state})"
        out.print(render.plain(f"hosts: none visible{why}"))
    out.print(Text("leaders", style="bold"))
    for job, leader in sorted(s.leaders.items()):
        who = "-" if leader is None else leader + (" (this)" if leader == s.host_id else "")
        out.print(render.plain(f"  {job:<16} {who}"))
    if not s.leaders:
        out.print("  -")
    if s.deployments:
        out.print(deployments_table(s))
    else:
        out.print("deployments: none registered")
    out.print(f"last full sync {_when(s.last_sync)}")
    if s.ignored_nodes:
        out.print(f"ignored {s.ignored_nodes} invalid nodes (see the daemon's log)")


@main.group()
def cluster() -> None:
    """The cluster this daemon belongs to (several daemons sharing one registry through ZooKeeper)."""


@cluster.command("status")
@json_option
@click.pass_context
def cluster_status(ctx: click.Context, as_json: bool) -> None:
    """The cluster as this daemon sees it. The ZooKeeper connection and the cache's age, the daemons, the
    elections' leaders, every host's deployments; without a cluster configured, says so (exit 0)."""
    result = run(ctx, lambda c: c.call(q.ClusterStatusRequest()))
    emit(result, as_json, lambda: show_status(result))


__all__ = ["NOT_CONFIGURED", "cluster", "cluster_status", "show_status"]
