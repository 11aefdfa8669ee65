"""models.list's sort and `/` pattern over every shown column, answered from the in-memory model index, and
the read cache's change log that keeps the index current."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta

import pytest

from daemon.protocol import requests as q
from daemon.protocol import results as r
from daemon.protocol.errors import ErrorCode, ProtocolError
from daemon.readcache import CHANGE_LOG, ReadCache
from daemon.registry.model_index import ModelIndex

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def summary(name: str, versions: int, aliases: dict[str, int], *, age: int, description: str = "") -> r.ModelSummary:
    return r.ModelSummary(name=name, description=description, created_at=T0, updated_at=T0 - timedelta(hours=age),
                          versions=versions, latest=versions or None, aliases=aliases)


class Store:
    """What the database holds, and which names the index asked for."""

    def __init__(self, *models: r.ModelSummary) -> None:
        self.models = {m.name: m for m in models}
        self.asked: list[Collection[str] | None] = []

    def read(self, names: Collection[str] | None) -> list[r.ModelSummary]:
        self.asked.append(names)
        return [m for n, m in self.models.items() if names is None or n in names]


def names(result: r.ModelList) -> list[str]:
    return [m.name for m in result.items]


@pytest.fixture
def index() -> ModelIndex:
    store = Store(
        summary("churn", 3, {"production": 2}, age=5, description="Customer churn"),
        summary("fraud", 12, {}, age=1, description="card fraud scores"),
        summary("iris", 1, {"staging": 1}, age=30),
        summary("Ranker", 7, {"production": 7, "canary": 6}, age=2),
    )
    built = ModelIndex(store.read)
    built.refresh(None)
    return built


def test_sorts_by_any_column_either_way(index: ModelIndex) -> None:
    assert names(index.query(q.ListModels())) == ["churn", "fraud", "iris", "Ranker"]  # case-insensitive
    assert names(index.query(q.ListModels(descending=True))) == ["Ranker", "iris", "fraud", "churn"]
    assert names(index.query(q.ListModels(sort="versions", descending=True))) == ["fraud", "Ranker", "churn", "iris"]
    assert names(index.query(q.ListModels(sort="latest"))) == ["iris", "churn", "Ranker", "fraud"]
    assert names(index.query(q.ListModels(sort="updated"))) == ["iris", "churn", "Ranker", "fraud"]
    assert names(index.query(q.ListModels(sort="aliases")))[0] == "fraud"  # "-" before any alias
    page = index.query(q.ListModels(sort="versions", offset=1, limit=2))
    assert (names(page), page.total) == (["churn", "Ranker"], 4)


def test_pattern_matches_any_shown_column(index: ModelIndex) -> None:
    assert names(index.query(q.ListModels(pattern="production"))) == ["churn", "Ranker"]  # aliases
    assert names(index.query(q.ListModels(pattern="^12$"))) == ["fraud"]  # the version count
    assert names(index.query(q.ListModels(pattern="^v7$"))) == ["Ranker"]  # latest, as shown
    assert names(index.query(q.ListModels(pattern="canary→6"))) == ["Ranker"]
    assert names(index.query(q.ListModels(pattern="11-30"))) == ["iris"]  # updated, UTC
    assert names(index.query(q.ListModels(pattern="fraud scores"))) == ["fraud"]  # description


def test_pattern_is_smart_case_and_bang_inverts(index: ModelIndex) -> None:
    assert names(index.query(q.ListModels(pattern="customer"))) == ["churn"]
    assert names(index.query(q.ListModels(pattern="customer|Ranker"))) == ["Ranker"]  # a capital: exact case
    inverse = index.query(q.ListModels(pattern="!production"))
    assert (names(inverse), inverse.total) == (["fraud", "iris"], 2)
    assert index.query(q.ListModels(pattern="!")).total == 4  # nothing to invert yet: everything


def test_query_keeps_its_name_substring_meaning(index: ModelIndex) -> None:
    assert names(index.query(q.ListModels(query="AN"))) == ["Ranker"]  # name only, any case
    assert names(index.query(q.ListModels(query="1"))) == []  # not the version count
    assert names(index.query(q.ListModels(query="n", pattern="production"))) == ["churn", "Ranker"]  # both


def test_a_bad_regex_is_invalid_with_a_message(index: ModelIndex) -> None:
    with pytest.raises(ProtocolError, match=r"bad regex '\(churn': missing \), unterminated subpattern") as exc:
        index.query(q.ListModels(pattern="(churn"))
    assert exc.value.code == ErrorCode.INVALID
    with pytest.raises(ValueError, match="at most 256 characters"):
        q.ListModels(pattern="x" * 257)


def test_refresh_rereads_only_the_changed_models() -> None:
    store = Store(summary("a", 1, {}, age=1), summary("b", 1, {}, age=1))
    index = ModelIndex(store.read)
    index.refresh(set(), upto=0)  # never built: reads everything once
    assert names(index.query(q.ListModels(sort="versions", descending=True))) == ["b", "a"]  # ties: by name
    store.models["c"] = summary("c", 2, {}, age=0)
    store.models["a"] = summary("a", 5, {}, age=0)
    del store.models["b"]
    index.refresh({"a", "b", "c"}, upto=3)
    assert store.asked == [None, {"a", "b", "c"}]
    listed = index.query(q.ListModels(sort="versions"))
    assert [(m.name, m.versions) for m in listed.items] == [("c", 2), ("a", 5)]  # the order patched
    assert names(index.query(q.ListModels(sort="versions", descending=True))) == ["a", "c"]
    assert names(index.query(q.ListModels(pattern="^5$"))) == ["a"]  # the filtered lists dropped
    assert index.mark == 3


def test_the_change_log_names_what_changed_since_a_mark() -> None:
    cache = ReadCache()
    mark = cache.changes
    cache.invalidate("a")
    cache.invalidate("b")
    cache.invalidate("a")
    assert cache.changed_since(mark) == {"a", "b"}
    assert cache.changed_since(cache.changes) == set()
    for i in range(CHANGE_LOG):
        cache.invalidate(f"m{i}")
    assert cache.changed_since(mark) is None  # the log no longer reaches back: read everything
