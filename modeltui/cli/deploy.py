"""Deployment commands of the CLI: deploy, undeploy, ps, logs, predict, restart (``rollback`` lives with the
alias commands and, given a deployment, waits for its rollout)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

import click
from rich.text import Text

from daemon.protocol import requests as q
from daemon.protocol import results as r
from daemon.protocol.deploy import ContainerOptions, check_env_name, check_env_value
from daemon.protocol.errors import EXIT_CODES, ErrorCode, ProtocolError
from daemon.protocol.events import Event

from .. import format as fmt
from ..client import DaemonClient
from . import render
from .common import check_ref_arg, emit, err, fail, json_option, main, out, parse_pairs, run
from .deployments import EndpointAccess, endpoint_access, find_deployment
from .predictions import print_prediction

MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def parse_env(values: tuple[str, ...]) -> dict[str, str]:
    return parse_pairs(values, check_env_name, check_env_value, "NAME=VALUE")


@click.command("token")
@click.argument("name")
@click.option("--rotate", is_flag=True, help="make a new token (printed once); the old one stops working at once")
@json_option
@click.pass_context
def token(ctx: click.Context, name: str, rotate: bool, as_json: bool) -> None:
    """Say whether deployment NAME has a clients' token and whether its endpoint asks for it (the token is
    never shown again); with --rotate make a new one and print it, once."""
    request: q.DeploymentTokenStatus | q.RotateDeploymentToken = (
        q.RotateDeploymentToken(name=name) if rotate else q.DeploymentTokenStatus(name=name)
    )
    result = run(ctx, lambda c: c.call(request))

    def show() -> None:
        if result.token:
            out.print(render.plain(f"new token for {result.name} (shown once; the old one no longer works):"))
            out.print(render.plain(result.token))
            return
        needed = "needs it" if result.required else "does not need it ([serving] auth)"
        if result.exists:
            when = fmt.when(result.rotated_at)
            out.print(render.plain(f"{result.name} has a clients' token (made {when}); its endpoint {needed}"))
        else:
            out.print(render.plain(f"{result.name} has no clients' token; its endpoint {needed}"))
            out.print(render.plain(f"make one with: modeltui deploy token {name} --rotate"))

    emit(result, as_json, show)


class DeployCommand(click.Command):
    """``deploy REF ...``, and ``deploy token NAME [--rotate]`` (a model named ``token`` is deployed as
    ``token:N`` or ``token@ALIAS``)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args[:1] == ["token"] and len(args) > 1:
            ctx.meta["deploy.token"] = args[1:]
            return []
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> object:
        rest = ctx.meta.pop("deploy.token", None)
        if rest is None:
            return super().invoke(ctx)
        with token.make_context("deploy token", list(rest), parent=ctx.parent) as sub:
            return token.invoke(sub)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_usage(ctx, formatter)
        formatter.write_usage(ctx.command_path, "token NAME [--rotate] [--json]")


@main.command(cls=DeployCommand)
@click.argument("ref", callback=check_ref_arg)
@click.option("--name", help="deployment name (default: MODEL-ALIAS for NAME@ALIAS, else MODEL)")
@click.option("--backend", type=click.Choice(["process", "docker"]), default="process", show_default=True)
@click.option("--port", type=click.IntRange(1024, 65535), help="public port on 127.0.0.1 (default: a free one)")
@click.option("--env", "env", multiple=True, metavar="NAME=VALUE", help="environment of the server; repeatable")
@click.option("--cpus", type=click.FloatRange(0, 256, min_open=True), help="docker: CPU limit")
@click.option("--memory", "memory_mb", type=click.IntRange(32), help="docker: memory limit in MiB")
@click.option("--no-wait", is_flag=True, help="return once the deployment is recorded, before it is healthy")
@click.option("--timeout", default=300.0, show_default=True, type=click.FloatRange(1, 3600), help="seconds to wait")
@json_option
@click.pass_context
def deploy(
    ctx: click.Context,
    ref: str,
    name: str | None,
    backend: str,
    port: int | None,
    env: tuple[str, ...],
    cpus: float | None,
    memory_mb: int | None,
    no_wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Deploy REF: NAME@ALIAS follows the alias (moving it rolls out), NAME:N is pinned. Prints the
    deployment's bearer token once (its endpoint asks for it per [serving] auth). `deploy token NAME
    [--rotate]` says whether a token exists, or makes a new one."""
    request = q.Deploy.model_validate(
        {
            "ref": ref,
            "name": name,
            "backend": backend,
            "port": port,
            "env": parse_env(env),
            "options": ContainerOptions(cpus=cpus, memory_mb=memory_mb),
            "wait": not no_wait,
            "timeout_seconds": timeout,
        }
    )

    def progress(_done: int, _total: int, line: str) -> None:
        if not as_json and line:
            err.print(render.plain(f"  {line}"))

    async def body(c: DaemonClient) -> r.DeploymentDetail:
        reply = await c.send(request, progress=progress)
        return r.DeploymentDetail.model_validate_json(reply.raw)

    result = run(ctx, body)
    d = result.deployment
    where = d.endpoint or f"port {d.port}"

    def show() -> None:
        out.print(render.plain(f"deployed {d.name}: {d.model}:{d.version} ({d.state}) on {where}"))
        if result.token:
            out.print(
                render.plain(f"bearer token (shown once; `modeltui deploy token {d.name} --rotate` makes a new one):")
            )
            out.print(render.plain(result.token))

    emit(result, as_json, show)


@main.command()
@click.argument("name")
@json_option
@click.pass_context
def undeploy(ctx: click.Context, name: str, as_json: bool) -> None:
    """Stop deployment NAME and forget it."""
    result = run(ctx, lambda c: c.call(q.Undeploy(name=name)))
    emit(result, as_json, lambda: out.print(render.plain(f"undeployed {name}")))


@main.command()
@click.argument("name")
@json_option
@click.pass_context
def restart(ctx: click.Context, name: str, as_json: bool) -> None:
    """Start deployment NAME again (a new instance replaces the old once healthy)."""
    result = run(ctx, lambda c: c.call(q.RestartDeployment(name=name)))
    emit(result, as_json, lambda: out.print(render.plain(f"restarting {name}")))


ALL_HOSTS_COLS = (render.Col("host"), *render.DEPLOYMENT_COLS)


def all_hosts_table(result: r.DeploymentList, this_host: str) -> render.FitTable | Text:
    """``ps --all-hosts``: this host's deployments (as ``ps`` shows them), then the other hosts'."""
    if not result.items and not result.remote:
        return Text("no deployments on any host: deploy one with `modeltui deploy NAME@production`")
    rows = [[Text(fmt.printable(this_host), style="bold"), *render.deployment_row(d)] for d in result.items]
    for rd in sorted(result.remote, key=lambda rd: (rd.host, rd.host_id, rd.name)):
        rows.append(
            [
                rd.host,
                rd.name,
                render.ref_cell(rd.name, rd.ref),
                str(rd.version or "-"),
                rd.backend,
                render.state_text(rd.state),
                rd.health,
                rd.endpoint or "-",
                "-",
                "-",
            ]
        )
    return render.FitTable(ALL_HOSTS_COLS, rows)


def cluster_warning(result: r.DeploymentList) -> str | None:
    """One line for stderr when the other hosts' part of ``ps --all-hosts`` may be missing or out of date."""
    state = result.cluster_state
    if state == "connected":
        return None
    if state in (None, "disabled"):
        return "no cluster configured: only this host's deployments are shown"
    return (
        f"ZooKeeper is {state} ({fmt.staleness(result.staleness_seconds)}): "
        "other hosts' deployments may be missing or out of date"
    )


@main.command()
@click.argument("name", required=False)
@click.option("--events", default=0, type=click.IntRange(0, 1000), help="with NAME: also its last N events")
@click.option("--all-hosts", is_flag=True, help="also the deployments of the cluster's other daemons (HOST column)")
@json_option
@click.pass_context
def ps(ctx: click.Context, name: str | None, events: int, all_hosts: bool, as_json: bool) -> None:
    """Deployments: state, health, version, endpoint, uptime, restarts. With NAME, one in detail; with
    --all-hosts, every daemon's in the cluster."""
    if name:
        if all_hosts:
            raise click.UsageError("--all-hosts lists every host's deployments: give no NAME")
        detail = run(ctx, lambda c: c.call(q.GetDeployment(name=name, events=events or 10)))
        emit(detail, as_json, lambda: render.print_deployment(out, detail))
        return
    if not all_hosts:
        result = run(ctx, lambda c: c.call(q.ListDeployments()))
        emit(result, as_json, lambda: out.print(render.deployments_table(result)))
        return

    async def body(c: DaemonClient) -> tuple[r.DeploymentList, str]:
        found = await c.call(q.ListDeployments(all_hosts=True))
        this_host = socket.gethostname()
        if not as_json and found.cluster_state not in (None, "disabled"):  # the name the cluster knows us by
            with contextlib.suppress(ProtocolError):  # only a label: the list stands without it
                this_host = (await c.call(q.ClusterStatusRequest())).host or this_host
        return found, this_host

    everywhere, this_host = run(ctx, body)
    warning = cluster_warning(everywhere)
    if warning:
        err.print(Text.assemble(("modeltui: warning: ", "yellow"), render.plain(warning)))
    emit(everywhere, as_json, lambda: out.print(all_hosts_table(everywhere, this_host)))


@main.command()
@click.argument("name")
@click.option("-n", "--tail", default=100, show_default=True, type=click.IntRange(0, 100_000))
@click.option("-f", "--follow", is_flag=True, help="keep printing new lines (Ctrl-C stops)")
@click.pass_context
def logs(ctx: click.Context, name: str, tail: int, follow: bool) -> None:
    """The log of deployment NAME (the serving process's output, or the container's)."""

    async def body(c: DaemonClient) -> None:
        lines: asyncio.Queue[list[str]] = asyncio.Queue()

        def on_event(event: Event) -> None:
            if event.topic == "logs" and event.deployment == name:
                lines.put_nowait(event.lines)

        c.add_listener(on_event)
        result = await c.call(q.Logs(name=name, tail=tail, follow=follow))
        write(result.lines)
        while follow:
            getter = asyncio.ensure_future(lines.get())
            closed = asyncio.ensure_future(c.closed.wait())
            await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
            closed.cancel()
            if not getter.done():
                getter.cancel()
                raise ProtocolError(ErrorCode.UNAVAILABLE, "the daemon closed the connection")
            write(getter.result())

    def write(batch: list[str]) -> None:  # the model's own output: its control characters are spelt out
        if batch:
            sys.stdout.write("\n".join(fmt.printable(line, keep="\t") for line in batch) + "\n")
            sys.stdout.flush()

    run(ctx, body)


def _request_body(path: Path) -> tuple[str, bytes, str]:
    """(URL path, body, content type) for an input file: CSV → /invocations; JSON with an MLflow key →
    /invocations; other JSON → /predict."""
    data = path.read_bytes()
    if path.suffix.lower() == ".csv":
        return "/invocations", data, "text/csv"
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise click.BadParameter(f"{path} is neither CSV nor JSON: {exc}") from None
    if isinstance(doc, dict) and "inputs" not in doc and any(k in doc for k in MLFLOW_KEYS):
        return "/invocations", data, "application/json"
    if not isinstance(doc, dict):
        data = json.dumps({"inputs": doc}).encode()
    return "/predict", data, "application/json"


@main.command()
@click.argument("target", metavar="DEPLOYMENT|REF")
@click.option(
    "--input",
    "input_file",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="JSON ({'inputs': rows} or an MLflow payload) or CSV with a header row",
)
@json_option
@click.pass_context
def predict(ctx: click.Context, target: str, input_file: Path, as_json: bool) -> None:
    """Send INPUT to the deployment serving TARGET; print each row's prediction id (for `modeltui feedback`)
    and prediction, or with --json the answer with its "ids"."""

    async def find(c: DaemonClient) -> tuple[r.DeploymentDetail, EndpointAccess]:
        found = await find_deployment(c, target)
        return found, await endpoint_access(c, found.deployment.name)

    detail, access = run(ctx, find)
    d = detail.deployment
    endpoint = d.endpoint
    if not endpoint:
        fail(f"deployment {d.name} is {d.state}, not serving: {d.message}", EXIT_CODES[ErrorCode.UNAVAILABLE])
    path, body, ctype = _request_body(input_file)
    headers = {"Content-Type": ctype} | ({"Authorization": f"Bearer {access.token}"} if access.token else {})
    req = urllib.request.Request(endpoint + path, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60, context=access.tls) as resp:
            answer = resp.read()
            headers = dict(resp.headers.items())
    except urllib.error.HTTPError as exc:
        detail_text = exc.read().decode(errors="replace")
        with contextlib.suppress(ValueError, AttributeError):
            detail_text = json.loads(detail_text).get("message", detail_text)
        fail(
            f"{d.name} answered {exc.code}: {detail_text}",
            EXIT_CODES[ErrorCode.INVALID if exc.code < 500 else ErrorCode.UNAVAILABLE],
        )
    except OSError as exc:
        fail(f"{d.name} at {d.endpoint} did not answer: {exc}", EXIT_CODES[ErrorCode.UNAVAILABLE])
    print_prediction(json.loads(answer), headers, as_json)
