"""The App's command mode: opens the command line, keeps its history and names, runs what it returns.

It talks to the App through the shell's API only (:class:`Shell`: ``show_view``, ``switch_context``,
``contexts``), as the App's attribute ``commands``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol, cast

from textual.app import App
from textual.screen import Screen
from textual.worker import Worker

from ..screens.base import RegistryScreen
from ..widgets import KeyedTable
from .line import CommandScreen
from .names import Asker, KnownNames
from .parse import Command


class Named(Protocol):
    @property
    def name(self) -> str: ...


class Shell(Protocol):
    """What command mode uses of the App (modeltui.app.ModelTuiApp; this layer cannot import it)."""

    contexts: Sequence[Named]
    context: Named

    def show_view(self, view: str, *, filter: str = "", state: str | None = None, host: str | None = None,
                  name: str | None = None) -> None: ...

    def switch_context(self, name: str) -> None: ...


def context_names(app: App[Any]) -> list[str]:
    """The contexts the App can switch to."""
    return [c.name for c in cast(Shell, app).contexts]


def _filters_itself(screen: Screen[Any]) -> bool:
    """Whether the view has its own ``apply_filter`` (the base one does nothing)."""
    own = getattr(type(screen), "apply_filter", None)
    return own is not None and own is not RegistryScreen.apply_filter


def apply_view_filter(screen: Screen[Any], text: str, *, state: str | None = None,
                      host: str | None = None) -> None:
    """The one way a view gets ``show_view``'s filter: its own ``apply_filter`` when it has one, else its first
    list takes the filter as ``/`` on it would; a state alone is the filter ``^STATE$`` (the state column shows
    the word). Such a list cannot keep both (the command line refuses that): the state is then not applied and
    a warning says so."""
    if _filters_itself(screen):
        cast(RegistryScreen, screen).apply_filter(text, state=state, host=host)
        return
    if text and state:
        screen.notify(f"this view filters on /{text} only, not also on state={state}", severity="warning")
    for table in screen.query(KeyedTable):
        if table.LOCAL_FILTER:
            try:
                table.set_filter(text or (f"^{state}$" if state else ""))
            except ValueError as exc:
                screen.notify(str(exc), title="filter", severity="error")
            return


class CommandMode:
    """One per App: ``open`` is the ``:`` key's action, ``run`` carries a command out (the palette's too)."""

    def __init__(self, app: App[Any], ask: Asker) -> None:
        self.app = app
        self.shell = cast(Shell, app)
        self.history: list[str] = []
        """This session's command lines, oldest first (up/down walk them)."""
        self.names = KnownNames(ask, lambda: context_names(app))

    def open(self) -> None:
        if isinstance(self.app.screen, CommandScreen):
            return
        _worker: Worker[None] = self.app.run_worker(self.names.refresh, group="command-names", exclusive=True,
                                                    exit_on_error=False)
        self.app.push_screen(CommandScreen(self.history, self.names.known, self.check), callback=self.run)

    def check(self, command: Command) -> str | None:
        """What the parser cannot know: whether the context (``:ctx``) or the host (``@HOST``) exists."""
        known = context_names(self.app)
        if command.view == "ctx" and command.name not in known:
            return f"no context {command.name!r}: " + ", ".join(known)
        if command.host is not None and command.host not in known:
            return f"no host {command.host!r}: the hosts are the contexts " + ", ".join(known)
        return None

    def run(self, command: Command | None) -> None:
        """Carry the command out (None: the line was cancelled)."""
        if command is None:
            return
        if command.view == "quit":
            self.app.exit()
        elif command.view == "help":
            self.app.call_later(self.app.run_action, "help")
        elif command.view == "ctx":
            self.shell.switch_context(command.name or "")
        else:
            if command.view == "deployments" and command.host is not None:
                command = replace(command, view="hosts")  # another host's deployments: the all-hosts view's tab
            self.shell.show_view(command.view, filter=command.filter, state=command.state, host=command.host,
                                 name=command.name)
