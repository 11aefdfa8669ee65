"""Alert commands of the CLI: ``alerts [--json] [--history]``, ``alerts rules|add|rm``, and ``watch``.

Rules are validated here with the daemon's own parser (daemon.protocol.alerts), so a bad rule is refused
with the same message, exit code 4, before anything is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from datetime import datetime
from typing import NoReturn

import click

from daemon.protocol import requests as q
from daemon.protocol import results as r
from daemon.protocol.alerts import parse_duration, parse_rule
from daemon.protocol.errors import EXIT_CODES, ErrorCode
from daemon.protocol.events import Event

from .. import format as fmt
from ..client import DaemonClient
from . import render
from .common import emit, fail, json_option, main, out, run

TOPICS = ("registry", "deployments", "alerts")


def _invalid(message: str) -> NoReturn:
    fail(message, EXIT_CODES[ErrorCode.INVALID])


def _at(t: datetime) -> str:
    return f"{fmt.when(t)} UTC"


def _value(v: float | None) -> str:
    return "-" if v is None else f"{v:.6g}"


ALERT_COLS = (render.Col("state"), render.Col("severity", drop=3), render.Col("deployment"), render.Col("rule"),
              render.Col("expr", drop=2, shorten=16), render.Col("value", drop=4, justify="right"),
              render.Col("since", drop=1))
TRANSITION_COLS = (render.Col("when"), render.Col("state"), render.Col("severity", drop=2), render.Col("deployment"),
                   render.Col("rule"), render.Col("message", drop=1, shorten=16))
RULE_COLS = (render.Col("deployment"), render.Col("rule"), render.Col("severity", drop=3), render.Col("expr"),
             render.Col("window", drop=2), render.Col("source", drop=1))


def show_alerts(result: r.AlertList) -> None:
    if not result.items:
        out.print("no alerts pending or firing")
    else:
        holding: list[list[render.CellValue]] = [
            [render.toned(s.state, fmt.ALERT_TONE, s.state.upper()), render.toned(s.severity, fmt.ALERT_TONE),
             s.deployment, s.rule, s.expr, _value(s.value), _at(s.since)]
            for s in result.items
        ]
        out.print(render.FitTable(ALERT_COLS, holding))
    if result.history:
        rows = [(_at(t.at), render.toned(t.state, fmt.ALERT_TONE), render.toned(t.severity, fmt.ALERT_TONE),
                 t.deployment, t.rule, render.one_line(t.message)) for t in result.history]
        out.print(render.FitTable(TRANSITION_COLS, rows, title="history (newest first)"))


def show_rules(result: r.AlertRuleList) -> None:
    if not result.items:
        out.print("no deployments")
        return
    rows = [(rule.deployment, rule.name, rule.severity, rule.expr,
             fmt.window(rule.window_seconds) if rule.metric != "up" else "-", rule.source) for rule in result.items]
    out.print(render.FitTable(RULE_COLS, rows))


@main.group(invoke_without_command=True)
@click.option("--deployment", "-d", default=None, help="only this deployment's alerts")
@click.option("--history", "history", is_flag=True, help="also show the latest transitions")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000), help="transitions shown")
@json_option
@click.pass_context
def alerts(ctx: click.Context, deployment: str | None, history: bool, limit: int, as_json: bool) -> None:
    """Alerts pending or firing now (with --history, the transitions); subcommands edit the rules."""
    if ctx.invoked_subcommand is not None:
        return
    request = q.AlertsListRequest(deployment=deployment, history=limit if history else 0)
    result = run(ctx, lambda c: c.call(request))
    emit(result, as_json, lambda: show_alerts(result))


@alerts.command("rules")
@click.argument("deployment", required=False)
@json_option
@click.pass_context
def alerts_rules(ctx: click.Context, deployment: str | None, as_json: bool) -> None:
    """The rules that apply to each deployment (or DEPLOYMENT), and where they come from."""
    request = q.AlertRulesRequest(deployment=deployment)
    result = run(ctx, lambda c: c.call(request))
    emit(result, as_json, lambda: show_rules(result))


@alerts.command("add")
@click.argument("deployment")
@click.argument("rule")
@click.option("--severity", type=click.Choice(["info", "warning", "critical"]), default="warning", show_default=True)
@click.option("--name", default=None, help="rule name (default: derived from the rule, e.g. f1_lt_0.85)")
@click.option("--window", default="5m", show_default=True, help="evaluation window: 30s, 5m, 1h, …")
@json_option
@click.pass_context
def alerts_add(
    ctx: click.Context, deployment: str, rule: str, severity: str, name: str | None, window: str, as_json: bool
) -> None:
    """Add RULE ("METRIC OP THRESHOLD [for DURATION]", e.g. "f1 < 0.85 for 10m") to DEPLOYMENT, replacing a
    rule of the same name. The first edit copies the rules inherited from the manifest (or the built-ins)."""
    try:
        parse_rule(rule)
        window_seconds = parse_duration(window, what="window")
    except ValueError as exc:
        _invalid(str(exc))
    request = q.AlertAdd.model_validate(
        {"deployment": deployment, "rule": rule, "severity": severity, "name": name, "window_seconds": window_seconds}
    )
    result = run(ctx, lambda c: c.call(request))
    emit(result, as_json, lambda: show_rules(result))


@alerts.command("rm")
@click.argument("deployment")
@click.argument("name")
@json_option
@click.pass_context
def alerts_rm(ctx: click.Context, deployment: str, name: str, as_json: bool) -> None:
    """Remove rule NAME of DEPLOYMENT (removing the last one brings the inherited rules back)."""
    request = q.AlertRemove(deployment=deployment, name=name)
    result = run(ctx, lambda c: c.call(request))
    emit(result, as_json, lambda: show_rules(result))


def _topics(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
    topics = [t.strip() for t in value.split(",") if t.strip()]
    unknown = [t for t in topics if t not in TOPICS]
    if unknown or not topics:
        raise click.BadParameter(f"{', '.join(unknown) or 'nothing'}: choose from {', '.join(TOPICS)}")
    return topics


@main.command()
@click.option(
    "--topics",
    default=",".join(TOPICS),
    show_default=True,
    callback=_topics,
    help="comma-separated: registry, deployments, alerts",
)
@click.pass_context
def watch(ctx: click.Context, topics: list[str]) -> None:
    """Print events as JSON lines, one per event, until Ctrl-C."""

    async def body(c: DaemonClient) -> None:
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, done.set)

        def show(event: Event) -> None:
            sys.stdout.write(event.model_dump_json() + "\n")
            sys.stdout.flush()

        c.add_listener(show)
        await c.subscribe(*topics)
        waiters = [asyncio.ensure_future(done.wait()), asyncio.ensure_future(c.closed.wait())]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        if c.closed.is_set() and not done.is_set():
            fail("the daemon closed the connection", EXIT_CODES[ErrorCode.UNAVAILABLE])

    run(ctx, body)
