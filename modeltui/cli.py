"""``modeltui``: the headless CLI. With no subcommand it opens the TUI (in a terminal; without one it prints
the help and exits 2).

Every query takes ``--json`` (one JSON document on stdout; messages go to stderr). Exit codes: 0 success,
2 usage error, 3 not found, 4 invalid input, 5 conflict, 6 forbidden, 7 daemon unavailable, 8 protocol error,
9 integrity error, 10/11 a maintenance run that failed / promoted nothing (``maintain run-now --wait``), 1 anything
else (see docs/cli.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from daemon.protocol import requests as q
from daemon.protocol import results as r
from daemon.protocol.errors import EXIT_CODES, ErrorCode, ProtocolError
from daemon.protocol.names import check_alias, check_tag_key, check_tag_value, parse_ref

from . import __version__, render
from .client import DaemonClient, DaemonUnavailable, connect_or_start
from .init import build_manifest, write_manifest
from .transfer import checkout, push_directory

T = TypeVar("T")


def stdout_width() -> int | None:
    """The terminal's width (``None``: Rich asks it, or ``$COLUMNS``). A pipe gets whole lines: a script that
    greps a table must not see names cut to fit 80 columns."""
    return None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 10_000


out = Console(highlight=False, soft_wrap=True, width=stdout_width())
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Globals(BaseModel):
    socket: str | None
    config: str | None
    start: bool
    readonly: bool


def fail(message: str, code: int) -> None:
    shown = escape(render.printable(message, keep="\n"))  # the message is text: no markup, no escape sequences
    err.print(f"[bold red]modeltui: error:[/] {shown}", markup=True)
    sys.exit(code)


def run(ctx: click.Context, body: Callable[[DaemonClient], Awaitable[T]]) -> T:
    """Connect (starting an embedded daemon if needed), run ``body``, map errors to exit codes."""
    g: Globals = ctx.obj

    async def main() -> T:
        client = await connect_or_start(g.socket, config=g.config, start=g.start, client_name="modeltui-cli")
        client.readonly = g.readonly
        async with client:
            return await body(client)

    try:
        return asyncio.run(main())
    except ProtocolError as exc:
        fail(exc.message, EXIT_CODES.get(exc.code, 1))
    except OSError as exc:  # local files: unreadable model directory, unwritable checkout target, …
        where = f"{exc.filename}: " if exc.filename else ""
        fail(f"{where}{exc.strerror or exc}", 1)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    raise AssertionError("unreachable")


def emit(value: BaseModel | list[Any] | dict[str, Any], as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        if isinstance(value, BaseModel):
            click.echo(value.model_dump_json(indent=2))
        else:
            click.echo(json.dumps(value, indent=2, default=str))
    else:
        human()


def validated(kind: Callable[[str], str], value: str) -> str:
    try:
        return kind(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def parse_pairs(
    values: tuple[str, ...], check_key: Callable[[str], str], check_value: Callable[[str], str], shape: str
) -> dict[str, str]:
    """``KEY=VALUE`` options (tags, environment) into a dict, each side checked like the daemon checks it."""
    pairs: dict[str, str] = {}
    for item in values:
        key, sep, val = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} must look like {shape}")
        pairs[validated(check_key, key)] = validated(check_value, val)
    return pairs


def parse_tags(values: tuple[str, ...]) -> dict[str, str]:
    return parse_pairs(values, check_tag_key, check_tag_value, "key=value")


def parse_time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time (e.g. 2026-11-27T14:30:00Z)") from None
    try:
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.astimezone().astimezone(UTC)
    except (OverflowError, OSError):
        raise click.BadParameter(f"{value!r} is outside the years 1-9999 once converted to UTC") from None


def check_ref_arg(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        parse_ref(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


json_option = click.option("--json", "as_json", is_flag=True, help="print one JSON document on stdout")


EXAMPLES = """\b
Examples:
  modeltui                         the TUI (over SSH: ssh -t HOST modeltui)
  modeltui push examples/breast_cancer --alias production
  modeltui ls                      models, their versions and aliases
  modeltui deploy breast-cancer@production
  modeltui ps                      deployments: state, version, endpoint
  modeltui predict breast-cancer@production --input request.json
  modeltui COMMAND --help          one command's arguments and options
"""


def has_terminal() -> bool:
    """The TUI reads keys from stdin and draws on stdout: both must be a terminal."""
    return sys.stdin.isatty() and sys.stdout.isatty()


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=EXAMPLES)
@click.option("--socket", envvar=None, help="daemon socket (default: $MODELTUI_SOCKET, the config, or the default)")
@click.option("--config", help="daemon config file used to find the socket")
@click.option("--no-start", is_flag=True, help="do not start an embedded daemon when none answers")
@click.option("--readonly", is_flag=True, help="send nothing that changes state (TUI: hide those actions)")
@click.version_option(__version__, prog_name="modeltui")
@click.pass_context
def main(ctx: click.Context, socket: str | None, config: str | None, no_start: bool, readonly: bool) -> None:
    """Model management over SSH: a TUI and a CLI for the modeltuid daemon.

    With no command, modeltui opens the TUI, which needs a terminal: over SSH use `ssh -t HOST modeltui`;
    without one it prints this help and exits 2. Every command runs without a terminal, and the queries
    take --json.
    """
    ctx.obj = Globals(socket=socket, config=config, start=not no_start, readonly=readonly)
    if ctx.invoked_subcommand is None:
        if not has_terminal():  # a TUI on a pipe waits for keys that never come (`ssh host modeltui`)
            click.echo(ctx.get_help(), err=True)
            fail("no terminal for the TUI: give a command, or run it in a terminal (ssh -t)", 2)
        from .app import ModelTuiApp

        g: Globals = ctx.obj
        app = ModelTuiApp(lambda: connect_or_start(g.socket, config=g.config, start=g.start), readonly=readonly)
        app.run()
        if app.return_code:  # a hung-up terminal ends the TUI with 129 (128 + SIGHUP)
            sys.exit(app.return_code)


# -- init / push / checkout ----------------------------------------------------------------------------------
@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", help="model name (default: the directory's name)")
@click.option("--flavor", type=click.Choice(["sklearn", "onnx", "python"]))
@click.option("--model-file", help="the model file inside DIR (default: guessed)")
@click.option("--data", help="a CSV in DIR to take the input signature from")
@click.option("--target", help="the label column of --data (excluded from inputs)")
@click.option("--description", default="", help="one line about the model")
@click.option("--force", is_flag=True, help="overwrite an existing modeltui.toml")
def init(directory: Path, name: str | None, flavor: str | None, model_file: str | None, data: str | None,
         target: str | None, description: str, force: bool) -> None:
    """Write a modeltui.toml manifest for DIRECTORY."""
    try:
        manifest = build_manifest(directory, name=name, flavor=flavor, model_file=model_file, data=data,
                                  target=target, description=description)
        path = write_manifest(directory, manifest, force=force)
    except FileExistsError as exc:
        fail(str(exc), 5)
    except (OSError, ValueError, StopIteration) as exc:
        fail(f"cannot write the manifest: {exc}", 4)
    err.print(render.plain(f"wrote {path}; edit it, then: modeltui push {directory}"))


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", help="model name (default: from the manifest)")
@click.option("-m", "--message", default="", help="what changed")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="repeatable")
@click.option("--alias", help="also point this alias at the pushed version")
@json_option
@click.pass_context
def push(ctx: click.Context, directory: Path, name: str | None, message: str, tags: tuple[str, ...],
         alias: str | None, as_json: bool) -> None:
    """Push DIRECTORY as a new immutable version (identical content returns the existing one)."""
    tag_map = parse_tags(tags)
    if alias is not None:
        validated(check_alias, alias)
    show_bar = not as_json and sys.stderr.isatty()

    async def body(client: DaemonClient) -> tuple[r.PushResult, int]:
        if not show_bar:
            return await push_directory(client, directory, name=name, message=message, tags=tag_map, alias=alias)
        with Progress(TextColumn("pushing"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                      console=err, transient=True) as bar:
            task = bar.add_task("push", total=None)

            def progress(done: int, total: int, _path: str) -> None:
                bar.update(task, completed=done, total=total)

            return await push_directory(client, directory, name=name, message=message, tags=tag_map, alias=alias,
                                        progress=progress)

    result, copied = run(ctx, body)
    v = result.version

    def human() -> None:
        verb = "pushed" if result.created else "unchanged, already"
        out.print(render.plain(f"{verb} {v.model}:{v.number}  {v.digest[:12]}  {v.file_count} files, "
                               f"{render.size(v.size)} ({render.size(copied)} copied)"))
        if alias:
            out.print(f"{v.model}@{alias} -> {v.number}")

    emit({**result.model_dump(mode="json"), "bytes_copied": copied}, as_json, human)


@main.command("checkout")
@click.argument("ref", callback=check_ref_arg)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="write into a non-empty directory")
@json_option
@click.pass_context
def checkout_cmd(ctx: click.Context, ref: str, directory: Path, force: bool, as_json: bool) -> None:
    """Write the files of REF into DIRECTORY, byte-exact and sha256-verified."""
    result = run(ctx, lambda c: checkout(c, ref, directory, force=force))
    emit(result, as_json, lambda: out.print(render.plain(
        f"checked out {result.version.model}:{result.version.number} into {directory} "
        f"({len(result.files)} files, verified)")))


# -- queries ---------------------------------------------------------------------------------------------------
@main.command("ls")
@click.argument("query", required=False)
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1, 1000))
@click.option("--offset", default=0, type=click.IntRange(0))
@json_option
@click.pass_context
def ls(ctx: click.Context, query: str | None, limit: int, offset: int, as_json: bool) -> None:
    """List models (QUERY filters by name)."""
    result = run(ctx, lambda c: c.call(q.ListModels(query=query, limit=limit, offset=offset)))
    emit(result, as_json, lambda: out.print(render.models_table(result)))


@main.command()
@click.argument("name")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--offset", default=0, type=click.IntRange(0))
@json_option
@click.pass_context
def log(ctx: click.Context, name: str, limit: int, offset: int, as_json: bool) -> None:
    """The versions of model NAME, newest first."""
    result = run(ctx, lambda c: c.call(q.Log(name=name, limit=limit, offset=offset)))
    emit(result.json_items(), as_json, lambda: out.print(render.versions_table(result)))


@main.command()
@click.argument("ref", callback=check_ref_arg)
@json_option
@click.pass_context
def show(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Show a version: NAME (latest), NAME:3 or NAME@alias."""
    result = run(ctx, lambda c: c.call(q.Show(ref=ref)))
    emit(result, as_json, lambda: render.print_version(out, result))


@main.command()
@click.argument("a", callback=check_ref_arg)
@click.argument("b", callback=check_ref_arg)
@json_option
@click.pass_context
def diff(ctx: click.Context, a: str, b: str, as_json: bool) -> None:
    """Compare two versions: files, params, metrics, signature, requirements."""
    result = run(ctx, lambda c: c.call(q.Diff(a=a, b=b)))
    emit(result, as_json, lambda: render.print_diff(out, result))


@main.command()
@click.argument("ref", callback=check_ref_arg)
@click.argument("tags", nargs=-1, metavar="KEY=VALUE...")
@click.option("--rm", "unset", multiple=True, metavar="KEY", help="remove a tag (repeatable)")
@json_option
@click.pass_context
def tag(ctx: click.Context, ref: str, tags: tuple[str, ...], unset: tuple[str, ...], as_json: bool) -> None:
    """Set or remove tags on a version."""
    tag_map = parse_tags(tags)
    keys = [validated(check_tag_key, k) for k in unset]
    result = run(ctx, lambda c: c.call(q.Tag(ref=ref, set=tag_map, unset=keys)))
    shown = f"{result.model}:{result.number} tags: {render.tags(result.tags)}"
    emit(result, as_json, lambda: out.print(render.plain(shown)))


@main.command()
@click.argument("name")
@click.argument("text", required=False)
@json_option
@click.pass_context
def describe(ctx: click.Context, name: str, text: str | None, as_json: bool) -> None:
    """Show model NAME's summary; with TEXT, set its description."""
    request = q.GetModel(name=name) if text is None else q.DescribeModel(name=name, description=text)
    result = run(ctx, lambda c: c.call(request))
    emit(result, as_json, lambda: render.print_model(out, result.model))


# -- aliases ---------------------------------------------------------------------------------------------------
@main.group()
def alias() -> None:
    """Move, remove and inspect aliases (production, staging, ...)."""


@alias.command("set")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.argument("version", type=click.IntRange(1))
@click.option("--reason", default="", help="why (kept in the alias history)")
@json_option
@click.pass_context
def alias_set(ctx: click.Context, name: str, alias_name: str, version: int, reason: str, as_json: bool) -> None:
    """Point ALIAS of model NAME at VERSION."""
    result = run(ctx, lambda c: c.call(q.AliasSet(name=name, alias=alias_name, version=version, reason=reason)))
    emit(result, as_json, lambda: show_alias_set(result))


def show_alias_set(e: r.AliasEventInfo) -> None:
    """The move just made; or, when the alias was already there, that nothing changed and since when."""
    if e.changed:
        out.print(render.alias_move(e))
        return
    since = f"since {render.when(e.at)}, by {e.by}"
    out.print(render.plain(f"{e.model}@{e.alias} already points to {e.to_version} ({since}): nothing changed"))


@alias.command("rm")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.option("--reason", default="")
@json_option
@click.pass_context
def alias_rm(ctx: click.Context, name: str, alias_name: str, reason: str, as_json: bool) -> None:
    """Remove ALIAS from model NAME."""
    result = run(ctx, lambda c: c.call(q.AliasRemove(name=name, alias=alias_name, reason=reason)))
    emit(result, as_json, lambda: out.print(render.alias_move(result)))


@alias.command("history")
@click.argument("name")
@click.argument("alias_name", metavar="[ALIAS]", required=False)
@click.option("--at", "at", help="also say what each alias pointed to at this ISO 8601 time")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1, 10_000))
@json_option
@click.pass_context
def alias_history(ctx: click.Context, name: str, alias_name: str | None, at: str | None, limit: int,
                  as_json: bool) -> None:
    """Every move of the aliases of model NAME, newest first."""
    when = parse_time(at) if at else None
    result = run(ctx, lambda c: c.call(q.AliasHistoryRequest(name=name, alias=alias_name, at=when, limit=limit)))
    emit(result, as_json, lambda: render.print_history(out, result))


@main.command()
@click.argument("name")
@click.argument("alias_name", metavar="[ALIAS]", required=False)
@click.option("--reason", default="", help="why (kept in the alias history)")
@click.option("--timeout", default=300.0, show_default=True, type=click.FloatRange(1, 3600),
              help="with a DEPLOYMENT: seconds to wait for its rollout")
@json_option
@click.pass_context
def rollback(ctx: click.Context, name: str, alias_name: str | None, reason: str, timeout: float, as_json: bool) -> None:
    """Move ALIAS of model NAME back to its previous target. Given only a DEPLOYMENT that follows an alias,
    move that alias back and wait until the deployment has rolled out the previous version."""
    if alias_name is not None:
        result = run(ctx, lambda c: c.call(q.Rollback(name=name, alias=alias_name, reason=reason)))
        emit(result, as_json, lambda: out.print(render.alias_move(result)))
        return
    from .deploy_cli import rollout_waiter

    async def body(c: DaemonClient) -> tuple[r.AliasEventInfo, str]:
        dep = (await c.call(q.GetDeployment(name=name, events=0))).deployment
        if dep.ref.partition("@")[2] == "":
            raise ProtocolError(ErrorCode.INVALID, f"deployment {name} is pinned to {dep.ref}; deploy another version")
        await c.subscribe("deployments")
        waiter = rollout_waiter(c, name)
        move = await c.call(q.Rollback(name=dep.model, alias=dep.ref.partition("@")[2], reason=reason))
        try:
            return move, await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            raise ProtocolError(ErrorCode.UNAVAILABLE, f"{name} did not finish its rollout within {timeout:.0f} s; "
                                "see `modeltui ps {name}`") from None

    move, outcome = run(ctx, body)
    def human() -> None:
        out.print(render.alias_move(move))
        out.print(render.plain(f"{name}: {outcome}"))

    emit({"alias": move.model_dump(mode="json"), "rollout": outcome}, as_json, human)
    if "failed" in outcome:
        sys.exit(EXIT_CODES[ErrorCode.CONFLICT])


# -- removal ---------------------------------------------------------------------------------------------------
@main.command("rm")
@click.argument("ref", callback=check_ref_arg)
@click.option("--force", is_flag=True, help="also when an alias holds it (the alias is removed)")
@click.option("--model", "whole_model", is_flag=True, help="REF is a model name: remove the model and all versions")
@json_option
@click.pass_context
def rm(ctx: click.Context, ref: str, force: bool, whole_model: bool, as_json: bool) -> None:
    """Remove a version (NAME:3 or NAME@alias), or with --model a whole model. Files go at the next gc."""
    parsed = parse_ref(ref)
    if whole_model:
        if parsed.number is not None or parsed.alias is not None:
            raise click.BadParameter("with --model, give a model NAME")
        request: q.RemoveModel | q.RemoveVersion = q.RemoveModel(name=parsed.name, force=force)
    elif parsed.number is None and parsed.alias is None:
        raise click.BadParameter(f"give a version ({ref}:N or {ref}@ALIAS), or --model to remove the whole model")
    else:
        request = q.RemoveVersion(ref=ref, force=force)
    result = run(ctx, lambda c: c.call(request))
    emit(result, as_json, lambda: out.print(render.plain(
        f"removed {result.model} versions {', '.join(map(str, result.removed_versions)) or '(none)'}")))


@main.command()
@click.option("--dry-run", is_flag=True, help="only count what would be removed")
@click.option("--grace", type=click.IntRange(0), help="keep unreferenced files younger than this many seconds")
@json_option
@click.pass_context
def gc(ctx: click.Context, dry_run: bool, grace: int | None, as_json: bool) -> None:
    """Remove stored files no version references any more, and Docker images no deployment uses beyond the
    newest [docker] keep_images versions of each model."""
    result = run(ctx, lambda c: c.call(q.Gc(dry_run=dry_run, grace_seconds=grace)))
    images = "".join(f"\n  {tag}" for tag in result.images_removed)
    note = f"\n{result.images_note}" if result.images_note else ""
    emit(result, as_json, lambda: out.print(render.plain(
        f"{'would remove' if dry_run else 'removed'} {result.objects_removed} objects "
        f"({render.size(result.bytes_removed)}), {result.staging_removed} staging files and "
        f"{len(result.images_removed)} images ({render.size(result.image_bytes_removed)}){images}{note}",
        newlines=True)))


# -- daemon ----------------------------------------------------------------------------------------------------
@main.group()
def daemon() -> None:
    """The daemon this client talks to."""


@daemon.command("status")
@json_option
@click.pass_context
def daemon_status(ctx: click.Context, as_json: bool) -> None:
    """Is a daemon answering, and what does it hold. Never starts one: when none answers, say so (and when
    and why the last one stopped, when known) and exit 7."""
    from daemon.protocol.paths import find_socket

    from .daemon_status import last_run_lines, not_running_document

    g: Globals = ctx.obj

    async def ask() -> r.DaemonStatus:
        client = await connect_or_start(g.socket, config=g.config, start=False, client_name="modeltui-cli")
        async with client:
            return await client.call(q.DaemonStatusRequest())

    try:
        result = asyncio.run(ask())
    except DaemonUnavailable as exc:
        socket = find_socket(g.socket, g.config)
        if as_json:
            click.echo(json.dumps(not_running_document(socket, exc.message), indent=2))
        else:
            # "no daemon answers" when there is none; a hung daemon's own words ("does not answer: …") otherwise
            out.print(render.plain(f"no daemon is running on {socket}" if exc.startable else exc.message))
            for line in last_run_lines(socket):
                out.print(render.plain(line))
        sys.exit(EXIT_CODES[ErrorCode.UNAVAILABLE])
    except ProtocolError as exc:
        fail(exc.message, EXIT_CODES.get(exc.code, 1))
        return
    emit(result, as_json, lambda: render.print_status(out, result))


@daemon.command("stop")
@click.pass_context
def daemon_stop(ctx: click.Context) -> None:
    """Ask the daemon to shut down cleanly (it finishes the requests in flight first)."""
    g: Globals = ctx.obj

    async def stop() -> bool:
        try:
            client = await connect_or_start(g.socket, config=g.config, start=False, client_name="modeltui-cli")
        except DaemonUnavailable:
            return False
        async with client:
            await client.call(q.DaemonStop())
            await asyncio.wait_for(client.closed.wait(), 60)
        return True

    try:
        stopped = asyncio.run(stop())
    except ProtocolError as exc:
        fail(exc.message, EXIT_CODES.get(exc.code, 1))
    except TimeoutError:
        fail("the daemon did not stop within 60 s; see its log", 1)
    err.print("daemon stopped" if stopped else "no daemon was running")


def entry() -> None:
    """Console script: request models validate names client-side; show those errors like the daemon's."""
    try:
        main()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}"
                             for e in exc.errors(include_url=False))
        fail(f"invalid input: {problems}", EXIT_CODES[ErrorCode.INVALID])


from . import alerts_cli as _alerts_cli  # noqa: E402,F401  (registers `alerts` and `watch` on `main`)
from . import cluster_cli as _cluster_cli  # noqa: E402,F401  (registers `cluster` on `main`)
from . import deploy_cli as _deploy_cli  # noqa: E402,F401  (registers the deployment commands on `main`)
from . import doctor as _doctor  # noqa: E402,F401  (registers `doctor` on `main`)
from . import feedback_cli as _feedback_cli  # noqa: E402,F401  (registers `feedback` on `main`)
from . import maintain_cli as _maintain_cli  # noqa: E402,F401  (registers `maintain` on `main`)
from . import monitor_cli as _monitor_cli  # noqa: E402,F401  (registers the monitoring commands on `main`)
from . import ops_cli as _ops_cli  # noqa: E402,F401  (registers `audit` on `main`)
