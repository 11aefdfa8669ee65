"""The App's command mode: opens the command line, keeps its history and names, runs what it returns.

It talks to the App through the names the shell gives every slice (``show_view``, ``switch_context``,
``contexts``); an App without them (an older shell) still opens the views it has, by pushing them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol, cast

from textual.app import App
from textual.screen import Screen
from textual.worker import Worker

from ..screens import AlertsScreen, DeploymentScreen, DeploymentsScreen, FleetScreen, MaintenanceScreen
from ..screens.base import RegistryScreen
from ..widgets import KeyedTable
from .line import CommandScreen
from .names import Asker, KnownNames
from .parse import Command


class Shell(Protocol):
    """The App's view switching and contexts (see the shell's docs)."""

    def show_view(self, view: str, *, filter: str = "", state: str | None = None, host: str | None = None,
                  name: str | None = None) -> None: ...

    def switch_context(self, name: str) -> None: ...


#: Views an App without ``show_view`` can still open, by pushing them.
_PUSHED: dict[str, Callable[[Command], Screen[Any]]] = {
    "deployments": lambda c: DeploymentsScreen(),
    "alerts": lambda c: AlertsScreen(),
    "maint": lambda c: MaintenanceScreen(),
    "fleet": lambda c: FleetScreen(),
    "logs": lambda c: DeploymentScreen(c.name or "", tab="logs"),
}


def _filters_itself(screen: Screen[Any]) -> bool:
    """Whether the view has its own ``apply_filter`` (the base one does nothing)."""
    own = getattr(type(screen), "apply_filter", None)
    return own is not None and own is not getattr(RegistryScreen, "apply_filter", None)


def _filter_list(screen: Screen[Any], command: Command) -> None:
    """A view without its own ``apply_filter``: its first list takes the filter, as ``/`` on it would; a
    state alone is the filter ``^STATE$`` (the state column shows the word), with a filter it is not applied."""
    text = command.filter or f"^{command.state}$"
    if command.filter and command.state:
        screen.notify(f"this view filters on /{command.filter} only, not also on state={command.state}",
                      severity="warning")
    for table in screen.query(KeyedTable):
        if table.LOCAL_FILTER:
            table.set_filter(text)
            return


def context_names(app: App[Any]) -> list[str]:
    """The contexts the App can switch to (none before the shell has contexts)."""
    return [str(getattr(c, "name", c)) for c in getattr(app, "contexts", None) or ()]


class CommandMode:
    """One per App: ``open`` is the ``:`` key's action."""

    def __init__(self, app: App[Any], ask: Asker) -> None:
        self.app = app
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
        """What the parser cannot know: whether the context exists."""
        if command.view == "ctx" and command.name not in (known := context_names(self.app)):
            return f"no context {command.name!r}: " + (", ".join(known) or "this modeltui has no contexts")
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
            self._shell().switch_context(command.name or "")
        elif hasattr(self.app, "show_view"):
            if command.view == "deployments" and command.host is not None:
                command = replace(command, view="hosts")  # another host's deployments: the all-hosts view's tab
            self._shell().show_view(command.view, filter=command.filter, state=command.state, host=command.host,
                                    name=command.name)
            screen = self.app.screen
            if (command.filter or command.state) and not _filters_itself(screen):
                screen.call_after_refresh(_filter_list, screen, command)
        else:
            self._push(command)

    def _shell(self) -> Shell:
        return cast(Shell, self.app)

    def _push(self, command: Command) -> None:
        """Without the shell's view switching: the models view is the bottom screen, the others are pushed."""
        if command.view == "models":
            while len(self.app.screen_stack) > 2:
                self.app.pop_screen()
        elif command.view in _PUSHED:
            self.app.push_screen(_PUSHED[command.view](command))
        else:
            self.app.notify(f"this modeltui has no {command.view} view", severity="warning")
