"""Serialised results of read requests, kept until the models they read change.

Versions are immutable and every change to a model ends in ``RegistryChanges.changed``
(daemon/handlers/changes.py), which drops the model's entries as it publishes the event, so the cache is
exact. A read snapshots the generations of what it reads *before* it starts; if a write lands meanwhile, the
entry it stores is already stale and is never served. Bounded by total bytes, least recently used first.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence

#: How many changed model names the cache remembers, for readers that catch up by name (the model index).
CHANGE_LOG = 4096


class ReadCache:
    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[bytes, tuple[tuple[int, ...], bytes]] = OrderedDict()
        self._size = 0
        self._generation: dict[str, int] = {}
        self._all = 0  # bumped by every change: for reads that span models (listing them)
        self._log: deque[str] = deque(maxlen=CHANGE_LOG)  # the models of the last changes, oldest first
        self.hits = 0
        self.misses = 0

    def snapshot(self, models: Sequence[str] | None) -> tuple[int, ...]:
        """The generations a read depends on: the named models, or everything when ``models`` is None."""
        if models is None:
            return (self._all,)
        return tuple(self._generation.get(m, 0) for m in models)

    def invalidate(self, model: str) -> None:
        self._generation[model] = self._generation.get(model, 0) + 1
        self._all += 1
        self._log.append(model)

    @property
    def changes(self) -> int:
        """How many changes there were so far (a mark for :meth:`changed_since`)."""
        return self._all

    def changed_since(self, mark: int) -> set[str] | None:
        """The models changed after change number ``mark``; None when the log no longer reaches back."""
        count = self._all - mark
        if count > len(self._log):
            return None
        return set(list(self._log)[len(self._log) - count :]) if count > 0 else set()

    def get(self, key: bytes, models: Sequence[str] | None) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] != self.snapshot(models):
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[1]

    def put(self, key: bytes, snapshot: tuple[int, ...], data: bytes) -> None:
        if len(data) > self.max_bytes // 4:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._size -= len(old[1])
        self._entries[key] = (snapshot, data)
        self._size += len(data)
        while self._size > self.max_bytes:
            _, (_, evicted) = self._entries.popitem(last=False)
            self._size -= len(evicted)
