"""The models list's rows on the client, by index, for each (filter, sort) the user looked at: the k9s
pattern, where the screen draws from what is here and asks the daemon only for the windows it lacks.

Pure data, no I/O: the models screen asks :meth:`ModelCache.wanted` which windows of the visible rows to
fetch, posts the ``models.list`` calls (the App sends them) and hands each answer to :meth:`ModelCache.store`.
A registry event makes every row stale (:meth:`ModelCache.invalidate`): stale rows are still drawn, and
re-asked when they are visible, so a change never blanks the screen.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import NamedTuple

from daemon.protocol import requests
from daemon.protocol.requests import ModelSort
from daemon.protocol.results import ModelList, ModelSummary

#: Rows per models.list request: a screenful or two (the first paint asks one window).
WINDOW = 50
#: How many (filter, sort) lists are kept: going back to one shows it at once.
KEEP_VIEWS = 4


class ListKey(NamedTuple):
    """One list of models: the `/` filter, the sort column and its direction."""

    pattern: str = ""
    sort: ModelSort = "name"
    descending: bool = False


@dataclass
class ModelView:
    """The rows of one list known so far."""

    key: ListKey
    total: int | None = None
    """How many models the list has (None until the first answer)."""
    rows: dict[int, ModelSummary] = field(default_factory=dict)
    fresh: set[int] = field(default_factory=set)
    """Windows answered since the last change."""
    asked: set[int] = field(default_factory=set)
    """Windows asked and not answered yet."""

    def item(self, index: int) -> ModelSummary | None:
        """Row ``index``, or None when it was not fetched."""
        return self.rows.get(index)

    @property
    def count(self) -> int:
        """The rows to draw: the total when known, else none."""
        return self.total or 0


class ModelCache:
    """:class:`ModelView` s by list, the last used kept (up to KEEP_VIEWS)."""

    def __init__(self, window: int = WINDOW) -> None:
        self.window = window
        self._views: OrderedDict[ListKey, ModelView] = OrderedDict()
        self.generation = 0
        self.everything: int | None = None
        """How many models there are, unfiltered (the last answer without a filter said so)."""
        """Bumped by every change: answers to requests asked before it do not make a window fresh."""

    def view(self, key: ListKey) -> ModelView:
        """The rows of list ``key`` (empty the first time), now the most recently used."""
        view = self._views.get(key)
        if view is None:
            view = self._views[key] = ModelView(key)
            while len(self._views) > KEEP_VIEWS:
                self._views.popitem(last=False)
        self._views.move_to_end(key)
        return view

    def wanted(self, key: ListKey, first: int, last: int) -> list[requests.ListModels]:
        """The requests for the windows holding rows ``first``..``last`` that are neither fresh nor asked
        (each is then marked asked). Before the total is known only the first window is asked. The window
        of ``first`` is always one of them: a list known to be empty (or shorter than the screen) may have
        grown since, and only an answer says so (unless that window is fresh: then the total is too)."""
        view = self.view(key)
        if view.total is None:
            last = min(last, self.window - 1) if not view.asked else -1
        else:
            last = max(first, min(last, view.total - 1))
        out: list[requests.ListModels] = []
        for window in range(max(first, 0) // self.window, last // self.window + 1 if last >= 0 else 0):
            if window in view.fresh or window in view.asked:
                continue
            view.asked.add(window)
            out.append(requests.ListModels(pattern=key.pattern or None, sort=key.sort, descending=key.descending,
                                           offset=window * self.window, limit=self.window))
        return out

    def store(self, request: requests.ListModels, answer: ModelList, generation: int) -> ModelView:
        """Keep an answer to a request from :meth:`wanted`, asked at ``generation``."""
        key = ListKey(request.pattern or "", request.sort, request.descending)
        view = self.view(key)
        window = request.offset // self.window
        view.asked.discard(window)
        view.total = answer.total
        if not request.pattern:
            self.everything = answer.total
        for i, item in enumerate(answer.items):
            view.rows[request.offset + i] = item
        if len(answer.items) < request.limit:  # the end of the list: drop rows past it (models removed)
            end = request.offset + len(answer.items)
            for index in [i for i in view.rows if i >= end]:
                del view.rows[index]
        if generation == self.generation:
            view.fresh.add(window)
        return view

    def failed(self, request: requests.ListModels) -> None:
        """A request got no answer: its window may be asked again."""
        key = ListKey(request.pattern or "", request.sort, request.descending)
        self.view(key).asked.discard(request.offset // self.window)

    def retry(self, key: ListKey) -> None:
        """The asks of list ``key`` may never be answered (cancelled by a newer ask of the same window, for
        another list): its windows not fresh may be asked again."""
        self.view(key).asked.clear()

    def invalidate(self) -> None:
        """The registry changed: every row is stale (still drawn, asked again when visible)."""
        self.generation += 1
        for view in self._views.values():
            view.fresh.clear()
            view.asked.clear()
