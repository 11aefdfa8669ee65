"""What every command of ``modeltui`` shares: the click group :func:`main` the command modules register on
(with no subcommand it opens the TUI in a terminal; without one it prints the help and exits 2), the
consoles, :func:`run` (connect, call, map errors to exit codes), :func:`emit` and the argument checks.

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
from typing import Any, NoReturn, TypeVar

import click
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape

from daemon.protocol.errors import EXIT_CODES, ErrorCode, ProtocolError
from daemon.protocol.names import check_tag_key, check_tag_value, parse_ref

from .. import __version__
from ..client import DaemonClient
from ..contexts import Context, ContextError, current_context_name, find_context, load_contexts, open_client
from ..format import printable

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
    context: str | None = None


def chosen_context(g: Globals) -> tuple[list[Context], Context]:
    """Every context and the one to use (--context > $MODELTUI_CONTEXT > the config's current > local); a bad
    client config or an unknown name ends the command with exit code 2."""
    try:
        contexts = load_contexts()
        return contexts, find_context(contexts, current_context_name(g.context))
    except ContextError as exc:
        fail(str(exc), 2)


async def connect_chosen(g: Globals, client_name: str = "modeltui-cli") -> DaemonClient:
    """Connect to the chosen context (``local``: the socket found as always, started when none answers)."""
    _, chosen = chosen_context(g)
    client = await open_client(chosen, client_name=client_name, start=g.start, config=g.config, socket=g.socket)
    client.readonly = g.readonly or chosen.readonly
    return client


def fail(message: str, code: int) -> NoReturn:
    """Print ``message`` as the CLI's error and exit with ``code``."""
    shown = escape(printable(message, keep="\n"))  # the message is text: no markup, no escape sequences
    err.print(f"[bold red]modeltui: error:[/] {shown}", markup=True)
    sys.exit(code)


def run(ctx: click.Context, body: Callable[[DaemonClient], Awaitable[T]]) -> T:
    """Connect (starting an embedded daemon if needed), run ``body``, map errors to exit codes."""
    g: Globals = ctx.obj

    async def main() -> T:
        client = await connect_chosen(g)
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
@click.option("--context", "context", metavar="NAME",
              help="the daemon to use, from the client config (default: $MODELTUI_CONTEXT, its current, local)")
@click.version_option(__version__, prog_name="modeltui")
@click.pass_context
def main(ctx: click.Context, socket: str | None, config: str | None, no_start: bool, readonly: bool,
         context: str | None) -> None:  # fmt: skip
    """Model management over SSH: a TUI and a CLI for the modeltuid daemon.

    With no command, modeltui opens the TUI, which needs a terminal: over SSH use `ssh -t HOST modeltui`;
    without one it prints this help and exits 2. Every command runs without a terminal, and the queries
    take --json.
    """
    ctx.obj = Globals(socket=socket, config=config, start=not no_start, readonly=readonly, context=context)
    if ctx.invoked_subcommand is None:
        if not has_terminal():  # a TUI on a pipe waits for keys that never come (`ssh host modeltui`)
            click.echo(ctx.get_help(), err=True)
            fail("no terminal for the TUI: give a command, or run it in a terminal (ssh -t)", 2)
        from ..app import ModelTuiApp  # the TUI (textual) loads only here

        g: Globals = ctx.obj
        contexts, chosen = chosen_context(g)

        def connect_to(c: Context) -> Awaitable[DaemonClient]:
            return open_client(c, start=g.start, config=g.config, socket=g.socket)

        # The factory follows the App's current context (reconnects after a switch go to the new one).
        app = ModelTuiApp(lambda: connect_to(app.context), readonly=readonly, contexts=contexts,
                          context=chosen.name, connect_context=connect_to)  # fmt: skip
        app.run()
        if app.return_code:  # a hung-up terminal ends the TUI with 129 (128 + SIGHUP)
            sys.exit(app.return_code)


def entry() -> None:
    """Console script: request models validate names client-side; show those errors like the daemon's."""
    try:
        main()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}"
                             for e in exc.errors(include_url=False))
        fail(f"invalid input: {problems}", EXIT_CODES[ErrorCode.INVALID])
