"""The models list's client-side cache (no daemon, no App): which windows it asks for, what it keeps, and how
a registry change makes rows stale without losing them."""

from __future__ import annotations

from datetime import UTC, datetime

from daemon.protocol import requests
from daemon.protocol import results as r
from modeltui.model_cache import KEEP_VIEWS, ListKey, ModelCache

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def page(request: requests.ListModels, total: int) -> r.ModelList:
    """What the daemon answers for a list of ``total`` models named m0, m1…"""
    end = min(total, request.offset + request.limit)
    items = [r.ModelSummary(name=f"m{i}", description="", created_at=NOW, updated_at=NOW, versions=1, latest=1,
                            aliases={}) for i in range(request.offset, end)]
    return r.ModelList(items=items, total=total)


def windows(asked: list[requests.ListModels]) -> list[int]:
    return [req.offset for req in asked]


def test_asks_the_first_window_then_only_the_missing_visible_ones() -> None:
    cache = ModelCache(window=10)
    key = ListKey(pattern="prod", sort="versions", descending=True)
    (first,) = cache.wanted(key, 0, 30)  # the total is unknown: one window only
    assert (first.pattern, first.sort, first.descending, first.offset, first.limit) == ("prod", "versions", True,
                                                                                         0, 10)
    assert cache.wanted(key, 0, 30) == []  # asked already
    view = cache.store(first, page(first, 1000), cache.generation)
    ninth = view.item(9)
    assert (view.total, ninth.name if ninth else None, view.item(10)) == (1000, "m9", None)
    assert windows(cache.wanted(key, 5, 25)) == [10, 20]
    assert windows(cache.wanted(key, 990, 2000)) == [990]  # never past the end
    assert cache.everything is None  # a filtered list does not say how many models there are
    everything = cache.wanted(ListKey(), 0, 5)[0]
    cache.store(everything, page(everything, 4000), cache.generation)
    assert cache.everything == 4000


def test_a_change_makes_rows_stale_but_keeps_drawing_them() -> None:
    cache = ModelCache(window=10)
    key = ListKey()
    (req,) = cache.wanted(key, 0, 5)
    cache.store(req, page(req, 25), cache.generation)
    (second,) = cache.wanted(key, 10, 15)
    cache.invalidate()  # a push lands while the second window is asked
    assert cache.view(key).item(3) is not None  # still drawn
    cache.store(second, page(second, 25), cache.generation - 1)  # the answer asked before the change
    assert windows(cache.wanted(key, 0, 15)) == [0, 10]  # both asked again: neither is fresh

    shorter = cache.wanted(key, 20, 24)[0]
    view = cache.store(shorter, page(shorter, 21), cache.generation)  # models were removed meanwhile
    assert (view.total, view.item(20) is not None, view.item(21)) == (21, True, None)


def test_an_empty_list_is_asked_again_after_a_change() -> None:
    cache = ModelCache(window=10)
    key = ListKey()
    (req,) = cache.wanted(key, 0, 20)
    cache.store(req, page(req, 0), cache.generation)
    assert cache.wanted(key, 0, 20) == []  # known empty, and fresh
    cache.invalidate()  # the first model pushed: only an answer says the list is no longer empty
    (again,) = cache.wanted(key, 0, 20)
    view = cache.store(again, page(again, 1), cache.generation)
    first = view.item(0)
    assert (view.total, first.name if first else None) == (1, "m0")


def test_keeps_the_last_lists_looked_at() -> None:
    cache = ModelCache(window=10)
    for n in range(KEEP_VIEWS + 1):
        (req,) = cache.wanted(ListKey(pattern=f"p{n}"), 0, 5)
        cache.store(req, page(req, 3), cache.generation)
    assert cache.view(ListKey(pattern=f"p{KEEP_VIEWS}")).total == 3  # the newest: kept
    assert cache.view(ListKey(pattern="p0")).total is None  # the oldest: dropped
