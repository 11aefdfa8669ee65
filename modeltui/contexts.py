"""Contexts: the daemons a user can reach, named in the client config, and how to connect to one.

A context is the local daemon (its socket found as ``modeltui`` always finds it), another local socket, or a
remote daemon reached over SSH (:mod:`modeltui.ssh_transport`: the client's transport runs through
``ssh HOST modeltui-bridge``, with the user's own SSH config and agent, so no port is opened anywhere).
The client config is TOML::

    current = "local"                   # optional; --context and $MODELTUI_CONTEXT win over it

    [contexts.prod-b]
    ssh = "ops@host-b"                  # an ssh destination or a Host alias of ~/.ssh/config
    remote_socket = "/run/modeltui/modeltuid.sock"   # optional: the bridge finds it as modeltui does
    bridge = "modeltui-bridge"          # optional: the command ssh runs there (a remote shell reads it)
    ssh_args = ["-F", "/home/me/.ssh/work_config"]   # optional: extra ssh options
    color = "red"                       # optional: the header's colour; names matching prod* are red
    readonly = true                     # optional: send nothing that changes state

    [contexts.staging]
    socket = "/srv/staging/modeltuid.sock"
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .client import DaemonClient, DaemonUnavailable, connect, connect_or_start
from .production import default_color
from .ssh_transport import connect_ssh

LOCAL = "local"
DEFAULT_BRIDGE = "modeltui-bridge"
ENV_CLIENT_CONFIG = "MODELTUI_CLIENT_CONFIG"
ENV_CONTEXT = "MODELTUI_CONTEXT"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
COLOR_RE = re.compile(r"^(#[0-9A-Fa-f]{3,8}|[a-z][a-z0-9_]{0,39})$")
_KEYS = frozenset({"socket", "ssh", "remote_socket", "bridge", "ssh_args", "color", "readonly"})
_SSH_ONLY = ("remote_socket", "bridge", "ssh_args")


class ContextError(ValueError):
    """The client config is invalid, or names a context that does not exist: the message names the file and
    the key."""


@dataclass(frozen=True)
class Context:
    """One daemon a user can reach: a local socket (``socket``; None = the usual discovery) or ``ssh``."""

    name: str
    socket: Path | None = None
    ssh: str | None = None
    remote_socket: str | None = None
    bridge: str = DEFAULT_BRIDGE
    ssh_args: tuple[str, ...] = ()
    color: str | None = None
    readonly: bool = False

    @property
    def remote(self) -> bool:
        return self.ssh is not None

    @property
    def where(self) -> str:
        """Where it is, as a user would write it: the ssh destination or the socket path."""
        if self.ssh is not None:
            return f"ssh {self.ssh}" + (f":{self.remote_socket}" if self.remote_socket else "")
        return str(self.socket) if self.socket is not None else "local socket"


def config_path() -> Path:
    """$MODELTUI_CLIENT_CONFIG, else $XDG_CONFIG_HOME/modeltui/config.toml, else ~/.config/modeltui/config.toml."""
    env = os.environ.get(ENV_CLIENT_CONFIG)
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".config"
    return base / "modeltui" / "config.toml"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ContextError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ContextError(f"{path}: not valid TOML: {exc}") from None


def _str(path: Path, key: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ContextError(f"{path}: {key} must be a non-empty string")
    return value


#: ssh's options that take a value (``-p 22`` or ``-p22``), and those that take none.
_SSH_VALUED = frozenset("BbcDEeFIiJLlmOopPQRSWw")
_SSH_FLAGS = frozenset("46AaCfGgKkMNnqsTtVvXxYy")
#: Options that would break the framing of the bridge's stdin/stdout (a tty, no command, a forward instead of
#: the command, background, an escape character) or make ssh do something else and exit.
_SSH_REFUSED = frozenset("tTfNWnsGVOQe")
_SSH_REFUSED_OPTIONS = frozenset({"requesttty", "remotecommand", "sessiontype", "stdinnull", "escapechar",
                                  "forkafterauthentication"})  # fmt: skip


def _check_ssh_args(path: Path, where: str, args: list[str]) -> None:
    """Options only: each element is an option (flags may be grouped: ``-vv``) or the value of the option
    before it; no command words, no ``--`` and nothing that changes how the bridge's bytes flow."""
    key = f"{path}: {where}.ssh_args"
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--" or not arg.startswith("-") or arg == "-":
            raise ContextError(f"{key}: {arg!r} is not an ssh option (only options, the destination is ssh)")
        for j, letter in enumerate(arg[1:], 1):
            if letter in _SSH_REFUSED:
                raise ContextError(f"{key}: -{letter} would break the link to the bridge: remove it")
            if letter in _SSH_VALUED:
                value = arg[j + 1 :]
                if not value:  # the value is the next element
                    i += 1
                    if i == len(args):
                        raise ContextError(f"{key}: -{letter} needs a value")
                    value = args[i]
                option = value.replace("=", " ").split(maxsplit=1)[0].lower() if letter == "o" and value.strip() else ""
                if option in _SSH_REFUSED_OPTIONS:
                    raise ContextError(f"{key}: -o {value} would break the link to the bridge: remove it")
                break
            if letter not in _SSH_FLAGS:
                raise ContextError(f"{key}: -{letter} is not an ssh option")
        i += 1


def _context(path: Path, name: str, table: object) -> Context:
    where = f"contexts.{name}"
    if not NAME_RE.match(name):
        raise ContextError(f"{path}: [{where}]: a context name is letters, digits, '.', '_' or '-' (at most 63)")
    if not isinstance(table, dict):
        raise ContextError(f"{path}: {where} must be a table")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise ContextError(f"{path}: {where}.{unknown[0]} is not a known key ({', '.join(sorted(_KEYS))})")
    if "socket" in table and "ssh" in table:
        raise ContextError(f"{path}: {where} has both socket and ssh: a context is one or the other")
    if "ssh" not in table:
        stray = [k for k in _SSH_ONLY if k in table]
        if stray:
            raise ContextError(f"{path}: {where}.{stray[0]} needs ssh")
    fields: dict[str, Any] = {"name": name}
    if "socket" in table:
        fields["socket"] = Path(_str(path, f"{where}.socket", table["socket"])).expanduser()
    if "ssh" in table:
        dest = _str(path, f"{where}.ssh", table["ssh"])
        if dest.startswith("-") or any(c.isspace() for c in dest):
            raise ContextError(f"{path}: {where}.ssh must be a destination (user@host or a Host alias)")
        fields["ssh"] = dest
    for key in ("remote_socket", "bridge"):
        if key in table:
            fields[key] = _str(path, f"{where}.{key}", table[key])
    if "ssh_args" in table:
        args = table["ssh_args"]
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ContextError(f"{path}: {where}.ssh_args must be a list of strings")
        _check_ssh_args(path, where, args)
        fields["ssh_args"] = tuple(args)
    if "color" in table:
        color = _str(path, f"{where}.color", table["color"])
        if not COLOR_RE.match(color):
            raise ContextError(f"{path}: {where}.color must be a colour name or #hex, not {color!r}")
        fields["color"] = color
    elif (default := default_color(name)) is not None:
        fields["color"] = default
    if "readonly" in table:
        if not isinstance(table["readonly"], bool):
            raise ContextError(f"{path}: {where}.readonly must be true or false")
        fields["readonly"] = table["readonly"]
    return Context(**fields)


def _load(path: Path) -> tuple[list[Context], str | None]:
    data = _read(path)
    unknown = sorted(set(data) - {"current", "contexts"})
    if unknown:
        raise ContextError(f"{path}: {unknown[0]} is not a known key (current, contexts)")
    tables = data.get("contexts", {})
    if not isinstance(tables, dict):
        raise ContextError(f"{path}: contexts must be a table of [contexts.NAME] tables")
    contexts = [_context(path, name, table) for name, table in tables.items()]
    if not any(c.name == LOCAL for c in contexts):
        contexts.insert(0, Context(name=LOCAL))
    current = data.get("current")
    if current is not None:
        current = _str(path, "current", current)
        if current not in {c.name for c in contexts}:
            raise ContextError(f"{path}: current = {current!r} names no context ({_names(contexts)})")
    return contexts, current


def _names(contexts: list[Context]) -> str:
    return ", ".join(c.name for c in contexts)


def load_contexts(path: Path | None = None) -> list[Context]:
    """The contexts of the client config (``local`` first unless the config defines it). Raises ContextError."""
    return _load(path or config_path())[0]


def current_context_name(flag: str | None = None, path: Path | None = None) -> str:
    """``--context`` flag > $MODELTUI_CONTEXT > the config's ``current`` > ``local``."""
    chosen = flag or os.environ.get(ENV_CONTEXT)
    if chosen:
        return chosen
    return _load(path or config_path())[1] or LOCAL


def find_context(contexts: list[Context], name: str, path: Path | None = None) -> Context:
    """The context called ``name``; ContextError names the config file and the contexts it has."""
    for ctx in contexts:
        if ctx.name == name:
            return ctx
    raise ContextError(f"{path or config_path()}: no context {name!r} ({_names(contexts)})")


async def open_client(
    ctx: Context,
    *,
    client_name: str = "modeltui",
    start: bool = True,
    config: str | None = None,
    timeout: float = 5.0,  # noqa: ASYNC109
    socket: str | None = None,
) -> DaemonClient:
    """Connect to the context's daemon. Only ``local`` (found by the usual discovery, or ``socket``) starts an
    embedded daemon when none answers. Raises DaemonUnavailable naming the context, within ``timeout``."""
    if ctx.ssh is not None:
        client = await connect_ssh(ctx.name, ctx.ssh, ctx.bridge, remote_socket=ctx.remote_socket,
                                   ssh_args=ctx.ssh_args, client_name=client_name, timeout=timeout)  # fmt: skip
    elif ctx.socket is None:
        client = await connect_or_start(socket, config=config, start=start and ctx.name == LOCAL,
                                        client_name=client_name)  # fmt: skip
    else:
        try:
            client = await connect(ctx.socket, client_name=client_name, timeout=timeout)
        except DaemonUnavailable as exc:
            raise DaemonUnavailable(f"context {ctx.name}: {exc.message}") from exc
    client.readonly = ctx.readonly
    return client
