"""Completion for the command line (pure): the lines the text typed so far may become.

Names come from a :data:`NameSource` (``kind`` → the names the App knows: ``deployments``, ``contexts``,
``hosts``), so this module never asks the daemon.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from textual.suggester import Suggester

from .parse import COMPLETE_WORDS, HOST_VIEWS, NAMED, STATES, WORDS

NameSource = Callable[[str], Sequence[str]]
#: The kind of name each named command completes.
NAME_KINDS = {"logs": "deployments", "ctx": "contexts"}
#: At most this many candidates are offered.
LIMIT = 12


def candidates(text: str, names: NameSource) -> list[str]:
    """The words the last token of ``text`` may become (whole tokens, not lines), best first."""
    head, _, last = text.removeprefix(":").rpartition(" ")
    tokens = head.split()
    if not tokens:
        return [w for w in COMPLETE_WORDS if w.startswith(last.lower()) and w != last.lower()][:LIMIT]
    view = WORDS.get(tokens[0].lower())
    if view is None:
        return []
    if view in NAMED and len(tokens) == 1 and not last.startswith(("/", "@")):
        pool: Sequence[str] = names(NAME_KINDS[view])
    elif last.startswith("@") and view in HOST_VIEWS:
        pool = ["@" + h for h in names("hosts")]
    elif view in STATES and last.lower().startswith("state="):
        pool = ["state=" + s for s in STATES[view]]
    elif view in STATES and last and "state=".startswith(last.lower()):
        pool = ["state="]
    else:
        return []
    return [word for word in pool if word.startswith(last) and word != last][:LIMIT]


def complete(text: str, names: NameSource) -> str | None:
    """``text`` with its last token completed to the first candidate (None when there is none)."""
    found = candidates(text, names)
    if not found:
        return None
    cut = len(text) - len(text.removeprefix(":").rpartition(" ")[2])
    return text[:cut] + found[0]


class CommandSuggester(Suggester):
    """Textual's inline suggestion (the grey rest of the line) from :func:`complete`."""

    def __init__(self, names: NameSource) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.names = names

    async def get_suggestion(self, value: str) -> str | None:
        return complete(value, self.names)
