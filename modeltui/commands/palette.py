"""The command palette's providers (ctrl+p): the App's own actions and the registry's objects, by fuzzy match.

:class:`ActionsProvider` lists every view, every context, reconnect, help, quit and the current screen's own
keys by their descriptions; :class:`ObjectsProvider` lists models, deployments and maintenance runs read
through the App's :class:`~modeltui.commands.names.KnownNames` (bounded, kept a few seconds). Choosing an
object opens it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, Protocol, cast

from textual.app import App
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import Screen

from ..screens import DeploymentScreen, ModelScreen
from .mode import CommandMode, context_names
from .parse import COMPLETE_WORDS, WORDS, Command

#: The views the palette opens, with what each shows.
VIEW_TITLES = {
    "home": "deployments by state, firing alerts, runs awaiting approval",
    "models": "every model",
    "deployments": "every deployment of this daemon",
    "alerts": "alert rules and what fires",
    "maint": "maintenance runs: approve or reject a challenger",
    "fleet": "every host of the cluster and what it runs",
    "hosts": "every context's deployments in one list",
}
#: Actions of the App (not views) the palette offers: (action, title, help). Textual's own commands add Quit.
APP_ACTIONS = (
    ("reconnect", "Reconnect", "connect to the daemon again now"),
    ("help", "Help", "every key of every view"),
)
#: Screen actions the palette does not repeat (itself, and what the list above has).
SKIPPED = frozenset({"command_palette", "command_line", "help", "quit", "reconnect", "back"})


def _open(app: App[Any], screen: Callable[[str], Screen[Any]], name: str) -> None:
    """Open an object's own screen over the current one (built only when chosen)."""
    app.push_screen(screen(name))


class _Host(Protocol):
    commands: CommandMode


def _mode(app: App[Any]) -> CommandMode:
    return cast(_Host, app).commands


Entry = tuple[str, Callable[[], Any], str]
"""A palette line: its text, what choosing it does, and its help."""


class ActionsProvider(Provider):
    """Views, the other contexts, reconnect, help, and the keys of the screen the palette was opened over."""

    def entries(self) -> Iterator[Entry]:
        mode = _mode(self.app)
        for view, what in VIEW_TITLES.items():
            word = next(w for w in COMPLETE_WORDS if WORDS[w] == view)
            yield f"{view} view", partial(mode.run, Command(view)), f"{what} (:{word})"
        current = mode.shell.context.name
        for name in (n for n in context_names(self.app) if n != current):
            yield f"context {name}", partial(mode.run, Command("ctx", name=name)), f"switch to {name} (:ctx {name})"
        for action, title, what in APP_ACTIONS:
            if self.app.check_action(action, ()) is not False:
                yield title, partial(self.app.call_later, self.app.run_action, action), what
        seen: set[str] = set()
        for key, active in self.screen.active_bindings.items():
            binding = active.binding
            if not active.enabled or not binding.description or binding.action in SKIPPED | seen:
                continue
            seen.add(binding.action)
            run = partial(self.app.call_later, self.app.run_action, binding.action, active.node)
            yield binding.description, run, f"key {binding.key_display or key} on this screen"

    async def discover(self) -> Hits:
        for text, command, what in self.entries():
            yield DiscoveryHit(text, command, help=what)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, command, what in self.entries():
            score = max(matcher.match(text), matcher.match(what) * 0.5)
            if score > 0:
                yield Hit(score, matcher.highlight(text), command, text=text, help=what)


class ObjectsProvider(Provider):
    """Models, deployments and maintenance runs whose text matches what is typed."""

    async def search(self, query: str) -> Hits:
        mode, matcher = _mode(self.app), self.matcher(query)
        for text, command, what in await self._entries(mode, query):
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), command, text=text, help=what)

    async def _entries(self, mode: CommandMode, query: str) -> list[Entry]:
        names = mode.names
        models = {m.name: m for m in [*await names.models(query.strip()), *await names.models()]}
        entries: list[Entry] = [
            (f"model {m.name}", partial(_open, self.app, ModelScreen, m.name),
             f"{m.versions} version(s)" + (f", latest v{m.latest}" if m.latest else ""))
            for m in models.values()
        ]
        entries += [
            (f"deployment {d.name} ({d.model})", partial(_open, self.app, DeploymentScreen, d.name),
             f"{d.state}, {d.ref}")
            for d in await names.deployments()
        ]
        entries += [
            (f"run {r.id} {r.model} {r.state}",
             partial(mode.run, Command("maint", filter=re.escape(r.model))), f"maintenance run, {r.trigger}")
            for r in await names.runs()
        ]
        return entries
