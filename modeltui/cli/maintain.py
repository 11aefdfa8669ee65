"""Maintenance commands: ``modeltui maintain policy|set|run-now|runs|show|approve|reject|pause|resume``
(docs/maintenance.md)."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from daemon.protocol import requests as q
from daemon.protocol import results as r

from .. import format as fmt
from . import render
from .common import emit, fail, json_option, main, out, parse_pairs, run

FINAL = ("promoted", "rejected", "failed", "interrupted", "cancelled", "awaiting_approval")
#: Exit status of ``run-now --wait`` for a run that ended without the challenger it was for (docs/cli.md):
#: it failed (a worker failed, timed out, ran out of memory or wrote garbage) or the daemon stopped during it;
#: or it ended with nothing promoted (the gate or an operator rejected the challenger, or it was cancelled).
RUN_EXIT = {"failed": 10, "interrupted": 10, "rejected": 11, "cancelled": 11}


def _key(key: str) -> str:
    if not key.replace("_", "").isalpha() or not key.islower():
        raise ValueError(f"invalid policy key {key!r}: lowercase letters and '_' (see maintain policy NAME)")
    return key


def _value(value: str) -> str:
    if len(value) > 4096:
        raise ValueError("a policy value is at most 4096 characters")
    return value


@main.group()
def maintain() -> None:
    """Evaluate, retrain, gate, promote and roll out models (docs/maintenance.md)."""


def _score(v: float | None) -> str:
    return "-" if v is None else f"{v:.6f}"


NOT_SET = "(not set)"


def policy_value(value: Any) -> str:
    """A policy value as one writes it (``maintain set KEY=VALUE`` or the manifest's TOML): text unquoted,
    true/false, 3600 not 3600.0, lists comma-separated, a search table as JSON; nothing set says so."""
    if value is None or value == [] or value == {}:
        return NOT_SET
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, list):
        return ", ".join(policy_value(v) for v in value)
    if isinstance(value, dict):
        return json.dumps({k: v for k, v in value.items() if v is not None}, separators=(", ", ": "))
    return str(value)


def show_policy(p: r.MaintainPolicyInfo) -> None:
    out.print(render.plain(f"{p.model}: champion {p.champion if p.champion is not None else '-'}"))
    for key, value in p.policy.items():
        mark = "  (set)" if key in p.overrides else ""
        out.print(render.plain(f"  {key:<26} {policy_value(value)}{mark}"))
    for problem in p.problems:
        out.print(render.plain(f"  problem: {problem}"), style=fmt.PALETTE["warn"].style)


def show_run(run: r.MaintainRunInfo) -> None:
    head = f"run {run.id}  {run.model}  {run.state.upper()}  trigger {run.trigger}"
    out.print(render.plain(head))
    challenger = f"v{run.challenger}" if run.challenger else "-"
    out.print(render.plain(
        f"  champion v{run.champion}  {run.metric} {_score(run.champion_score)}   "
        f"challenger {challenger}  {run.metric} {_score(run.challenger_score)}"
    ))  # fmt: skip
    if run.reason:
        out.print(render.plain(f"  {run.reason}"))
    for step in run.steps:
        took = fmt.elapsed(step.started_at, step.finished_at)
        first = step.message.splitlines()[0] if step.message else ""
        out.print(render.plain(f"  {step.state:<8} {step.name:<20} {took:>9}  {first}"))
    if run.log:
        out.print(render.plain(f"  log: {run.log}"))


@maintain.command("policy")
@click.argument("name")
@json_option
@click.pass_context
def policy(ctx: click.Context, name: str, as_json: bool) -> None:
    """The effective maintenance policy of model NAME, and what would stop a run."""
    result = run(ctx, lambda c: c.call(q.MaintainPolicyRequest(name=name)))
    emit(result, as_json, lambda: show_policy(result))


@maintain.command("set")
@click.argument("name")
@click.argument("pairs", nargs=-1, metavar="KEY=VALUE...")
@click.option("--unset", "unset", multiple=True, help="back to the manifest's value (repeatable)")
@json_option
@click.pass_context
def set_policy(ctx: click.Context, name: str, pairs: tuple[str, ...], unset: tuple[str, ...], as_json: bool) -> None:
    """Override policy keys of model NAME (e.g. promote=auto metric=f1 min_improvement=0.01 paused=true)."""
    values = parse_pairs(pairs, _key, _value, "KEY=VALUE")
    req = q.MaintainSet(name=name, set=values, unset=list(unset))
    result = run(ctx, lambda c: c.call(req))
    emit(result, as_json, lambda: show_policy(result))


@maintain.command("run-now")
@click.argument("name")
@click.option("--wait", is_flag=True, help="wait until the run ends (or awaits approval)")
@json_option
@click.pass_context
def run_now(ctx: click.Context, name: str, wait: bool, as_json: bool) -> None:
    """Start a maintenance run of model NAME now."""
    result = run(ctx, lambda c: c.call(q.MaintainRunNow(name=name)))
    ask = q.MaintainShow(run=result.id)
    while wait and result.state not in FINAL:
        time.sleep(0.5)
        result = run(ctx, lambda c: c.call(ask))
    emit(result, as_json, lambda: show_run(result))
    code = RUN_EXIT.get(result.state)
    if code is not None:
        fail(f"run {result.id} of {result.model} ended {result.state}: {result.reason}", code)


@maintain.command("runs")
@click.argument("name", required=False)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@json_option
@click.pass_context
def runs(ctx: click.Context, name: str | None, limit: int, as_json: bool) -> None:
    """Maintenance runs, newest first (of model NAME, or all)."""
    result = run(ctx, lambda c: c.call(q.MaintainRuns(name=name, limit=limit)))

    def show() -> None:
        if not result.items:
            out.print("no maintenance runs")
        for x in result.items:
            out.print(render.plain(
                f"{x.id:>5}  {x.model}  {x.state:<18} {x.metric} {_score(x.champion_score)} → "
                f"{_score(x.challenger_score)}  {fmt.when(x.started_at)}  {x.reason[:60]}"
            ))  # fmt: skip

    emit(result, as_json, show)


@maintain.command("show")
@click.argument("run_id", metavar="RUN", type=click.IntRange(1))
@json_option
@click.pass_context
def show(ctx: click.Context, run_id: int, as_json: bool) -> None:
    """One run, step by step."""
    result = run(ctx, lambda c: c.call(q.MaintainShow(run=run_id)))
    emit(result, as_json, lambda: show_run(result))


def _decide(ctx: click.Context, run_id: int, approve: bool, reason: str, as_json: bool) -> None:
    req = q.MaintainDecide(run=run_id, approve=approve, reason=reason)
    result = run(ctx, lambda c: c.call(req))
    emit(result, as_json, lambda: show_run(result))


@maintain.command("approve")
@click.argument("run_id", metavar="RUN", type=click.IntRange(1))
@click.option("--reason", default="")
@json_option
@click.pass_context
def approve(ctx: click.Context, run_id: int, reason: str, as_json: bool) -> None:
    """Promote and roll out the challenger of a run awaiting approval."""
    _decide(ctx, run_id, True, reason, as_json)


@maintain.command("reject")
@click.argument("run_id", metavar="RUN", type=click.IntRange(1))
@click.option("--reason", default="")
@json_option
@click.pass_context
def reject(ctx: click.Context, run_id: int, reason: str, as_json: bool) -> None:
    """Reject the challenger of a run awaiting approval (nothing changes)."""
    _decide(ctx, run_id, False, reason, as_json)


@maintain.command("cancel")
@click.argument("run_id", metavar="RUN", type=click.IntRange(1))
@click.option("--reason", default="")
@json_option
@click.pass_context
def cancel(ctx: click.Context, run_id: int, reason: str, as_json: bool) -> None:
    """Stop a run: a running one (its training or evaluation is killed) or one awaiting approval."""
    req = q.MaintainCancel(run=run_id, reason=reason)
    result = run(ctx, lambda c: c.call(req))
    emit(result, as_json, lambda: show_run(result))


def _pause(ctx: click.Context, name: str | None, paused: bool, as_json: bool) -> None:
    result = run(ctx, lambda c: c.call(q.MaintainPause(name=name, paused=paused)))

    def show() -> None:
        if name is not None:
            out.print(render.plain(f"{name}: maintenance {'paused' if result.model_paused else 'running'}"))
        out.print(render.plain(f"all models: maintenance {'paused' if result.all_paused else 'running'}"))

    emit(result, as_json, show)


@maintain.command("pause")
@click.argument("name", required=False)
@json_option
@click.pass_context
def pause(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """Start no run of model NAME (without NAME: of any model) until resumed."""
    _pause(ctx, name, True, as_json)


@maintain.command("resume")
@click.argument("name", required=False)
@json_option
@click.pass_context
def resume(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """Undo `maintain pause` for model NAME (without NAME: the switch for every model)."""
    _pause(ctx, name, False, as_json)
