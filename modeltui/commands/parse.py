"""What the user types after ``:``, parsed into a :class:`Command` (pure: no App, no daemon).

A line is a command word (or an alias) and, for the views, options in any order, one token each:
``/REGEX`` (the list's filter, ``/!REGEX`` inverts; ``\\s`` for a space), ``state=STATE`` and ``@HOST``.
``logs`` and ``ctx`` take a name. Anything else is a :class:`CommandError` whose message says what to type.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from dataclasses import dataclass
from typing import get_args

from daemon.protocol.alerts import AlertStateName
from daemon.protocol.deploy import DeploymentState
from daemon.protocol.results import MaintainRunInfo

from ..widgets.list_filter import compile_filter

#: The top-level views a command opens (the names of the App's ``show_view``).
VIEWS = ("home", "models", "deployments", "alerts", "maint", "fleet", "hosts", "logs")
#: The commands that are not views.
ACTIONS = ("ctx", "help", "quit")

#: Every word the command line accepts, to its command. The first word of each command is what completion
#: offers; the others are aliases.
WORDS: dict[str, str] = {
    "home": "home", "models": "models", "model": "models", "mo": "models",
    "deploy": "deployments", "deployments": "deployments", "dp": "deployments", "deployment": "deployments",
    "alerts": "alerts", "alert": "alerts",
    "maint": "maint", "maintenance": "maint", "runs": "maint",
    "fleet": "fleet", "hosts": "hosts", "host": "hosts",
    "logs": "logs", "log": "logs",
    "ctx": "ctx", "context": "ctx", "contexts": "ctx",
    "help": "help", "q": "quit", "quit": "quit", "q!": "quit",
}
#: What completion offers for the first word, in this order.
COMPLETE_WORDS = ("models", "deploy", "alerts", "maint", "fleet", "hosts", "home", "logs", "ctx", "help", "quit")

_RUN_STATES: tuple[str, ...] = get_args(MaintainRunInfo.model_fields["state"].annotation)
#: The states each view's ``state=`` accepts (a view not listed takes no ``state=``).
STATES: dict[str, tuple[str, ...]] = {
    "deployments": get_args(DeploymentState),
    "hosts": get_args(DeploymentState),
    "home": get_args(DeploymentState),
    "alerts": get_args(AlertStateName),
    "maint": _RUN_STATES,
}
#: The views an ``@HOST`` applies to (``:deploy @HOST`` is that host's tab of the hosts view).
HOST_VIEWS = frozenset({"deployments", "hosts"})
#: The views a name is required for.
NAMED = {"logs": "a deployment name", "ctx": "a context name"}
OPTIONS_HINT = "options are /REGEX, state=STATE and @HOST"


class CommandError(ValueError):
    """The line cannot run; the message says why and what to type instead."""


@dataclass(frozen=True)
class Command:
    """A parsed command line: a view with its filter, or one of :data:`ACTIONS`."""

    view: str
    """One of :data:`VIEWS` or :data:`ACTIONS`."""
    filter: str = ""
    """The list's filter (a regex, ``!`` first inverts); empty for none."""
    state: str | None = None
    host: str | None = None
    name: str | None = None
    """The deployment of ``logs`` or the context of ``ctx``."""


def command_word(word: str) -> str:
    """The command ``word`` names, or a CommandError naming the closest ones."""
    word = word.lower()
    if word in WORDS:
        return WORDS[word]
    close = difflib.get_close_matches(word, list(WORDS), n=2, cutoff=0.6)
    hint = f"did you mean :{' or :'.join(close)}?" if close else "commands: " + " ".join(COMPLETE_WORDS)
    raise CommandError(f"unknown command {word!r}: {hint}")


def parse_command(text: str) -> Command:
    """Parse one command line (with or without its leading ``:``)."""
    tokens = text.strip().removeprefix(":").split()
    if not tokens:
        raise CommandError("type a command: " + " ".join(COMPLETE_WORDS))
    view = command_word(tokens[0])
    fields: dict[str, str] = {}
    for token in tokens[1:]:
        key, value = _option(view, token, fields)
        if key in fields:
            raise CommandError(f"{_LABELS[key]} given twice ({fields[key]!r} and {value!r})")
        fields[key] = value
    if view in NAMED and "name" not in fields:
        raise CommandError(f":{view} needs {NAMED[view]} (:{view} NAME)")
    if "filter" in fields and "state" in fields and view != "hosts" and "host" not in fields:
        # Only the hosts view (where @HOST leads) keeps a state beside the list's filter; elsewhere one would
        # be dropped.
        with_host = " only with @HOST" if view in HOST_VIEWS else " only on :hosts"
        raise CommandError(f":{_word(view)} applies /REGEX and state= together{with_host}: give one of them, "
                           f"or :hosts /{fields['filter']} state={fields['state']}")
    return Command(view, filter=fields.get("filter", ""), state=fields.get("state"), host=fields.get("host"),
                   name=fields.get("name"))


_LABELS = {"filter": "the filter", "state": "state=", "host": "@host", "name": "the name"}


def _option(view: str, token: str, seen: dict[str, str]) -> tuple[str, str]:
    """One option token as (field, value)."""
    if view in NAMED and not token.startswith(("/", "@")) and "=" not in token and "name" not in seen:
        return "name", token
    if view in ("help", "quit") or (view == "ctx" and "name" in seen):
        raise CommandError(f":{view} takes no {'more ' if view == 'ctx' else ''}arguments (got {token!r})")
    if token.startswith("/"):
        try:
            compile_filter(token[1:])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        return "filter", token[1:]
    if token.startswith("@"):
        if view not in HOST_VIEWS:
            raise CommandError(f"@HOST applies to :deploy and :hosts (not :{_word(view)})")
        if len(token) == 1:
            raise CommandError("@ needs a host name (@HOST)")
        return "host", token[1:]
    key, eq, value = token.partition("=")
    if eq and key.lower() == "state":
        return "state", _state(view, value)
    hint = f"did you mean /{token}? " if not eq else ""
    raise CommandError(f"unexpected {token!r}: {hint}{OPTIONS_HINT}")


def _state(view: str, value: str) -> str:
    states = STATES.get(view)
    if states is None:
        raise CommandError(f":{view} takes no state= (the views with states: {_names(STATES)})")
    if value.lower() not in states:
        raise CommandError(f"no state {value!r} in {view}: {', '.join(states)}")
    return value.lower()


def _word(view: str) -> str:
    """What the user types for ``view`` (``deploy`` for the deployments)."""
    return next((w for w in COMPLETE_WORDS if WORDS[w] == view), view)


def _names(views: Collection[str]) -> str:
    return ", ".join(v for v in VIEWS if v in views)
