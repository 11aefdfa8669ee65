"""The read cache never serves what a write has changed, and stays within its byte budget."""

from __future__ import annotations

from daemon.readcache import ReadCache


def test_entry_is_dropped_when_its_model_changes() -> None:
    cache = ReadCache()
    cache.put(b"log churn", cache.snapshot(["churn"]), b"v1")
    cache.put(b"log fraud", cache.snapshot(["fraud"]), b"f1")
    assert cache.get(b"log churn", ["churn"]) == b"v1"
    cache.invalidate("churn")
    assert cache.get(b"log churn", ["churn"]) is None
    assert cache.get(b"log fraud", ["fraud"]) == b"f1"  # other models keep their entries


def test_listing_depends_on_every_model() -> None:
    cache = ReadCache()
    cache.put(b"ls", cache.snapshot(None), b"all")
    cache.invalidate("anything")
    assert cache.get(b"ls", None) is None


def test_a_read_that_raced_a_write_is_never_served() -> None:
    cache = ReadCache()
    before = cache.snapshot(["churn"])  # the read starts
    cache.invalidate("churn")  # a write lands while it runs
    cache.put(b"show churn@production", before, b"old target")
    assert cache.get(b"show churn@production", ["churn"]) is None


def test_byte_budget_evicts_least_recently_used() -> None:
    cache = ReadCache(max_bytes=100)
    for i in range(5):
        cache.put(b"k%d" % i, cache.snapshot(["m"]), b"x" * 20)
    assert cache.get(b"k0", ["m"]) == b"x" * 20  # touch k0
    cache.put(b"k5", cache.snapshot(["m"]), b"y" * 20)
    assert cache.get(b"k1", ["m"]) is None  # the oldest untouched entry went
    assert cache.get(b"k0", ["m"]) == b"x" * 20
    cache.put(b"huge", cache.snapshot(["m"]), b"z" * 60)  # more than a quarter of the budget: not kept
    assert cache.get(b"huge", ["m"]) is None
