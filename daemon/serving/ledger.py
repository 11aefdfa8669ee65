"""Prediction ids, and the predicted class and input row of the most recent ones (for feedback).

An id is 16 hex characters chosen at random when the process starts, then a 12-hex-digit counter: ids
of one batch are consecutive, ids from another process (or an older run) never match. The ledger is a
ring of the last ``capacity`` predictions' class labels, so recording a batch is one slice assignment.

The input rows are kept per request: :meth:`Ledger.record` appends the request's (already converted) rows
with the counter of its first id, and drops the requests whose ids have all left the ring. A lookup finds
the request by bisection on the first counters. Recording is O(1) Python operations per request besides
the label slice; the rows of the last ``capacity`` ids (plus the evicted part of the oldest request still
partly in the ring) are held.

They are held as tuples (``tuple(map(tuple, rows))``, one C-level copy of the row pointers, about 0.15 µs
per 30-value row), not as the request's lists: tuples of numbers and strings are untracked by the cyclic
garbage collector after a young collection or two, while 100,000 retained lists would stay tracked and make
every full collection traverse them (70-80 ms pauses every few seconds under load, measured).
"""

from __future__ import annotations

import secrets
from bisect import bisect_right
from typing import Any, Final

Row = tuple[Any, ...]

_UNSET: Final = object()
_DONE: Final = object()
PREFIX_LEN = 16
COUNTER_LEN = 12
_COMPACT_MIN = 1024  # dead request slots tolerated before the lists are compacted


class Ledger:
    def __init__(self, capacity: int = 100_000) -> None:
        self.prefix = secrets.token_hex(PREFIX_LEN // 2)
        self.capacity = capacity
        self.next = 0
        self._ring: list[object] = [_UNSET] * capacity
        # Requests' input rows, oldest first: _firsts[i] is the counter of _inputs[i][0]. Entries before
        # _head are evicted (their rows set to None) and removed in bulk once they are half the lists.
        self._firsts: list[int] = []
        self._inputs: list[tuple[Row, ...] | None] = []
        self._head = 0

    def make_id(self, n: int) -> str:
        return f"{self.prefix}{n:012x}"

    def ids(self, first: int, count: int) -> list[str]:
        p = self.prefix
        return [f"{p}{n:012x}" for n in range(first, first + count)]

    def record(self, labels: list[str | None], rows: list[list[Any]] | None = None) -> int:
        """Remember a batch's class labels (None: not a class) and its input rows (one per label, in order;
        kept as tuples); return the counter of its first id."""
        first = self.next
        n = len(labels)
        self.next = first + n
        cap = self.capacity
        tail = labels if n <= cap else labels[n - cap :]
        start = (self.next - len(tail)) % cap
        end = start + len(tail)
        ring = self._ring
        if end <= cap:
            ring[start:end] = tail
        else:
            split = cap - start
            ring[start:] = tail[:split]
            ring[: end - cap] = tail[split:]
        firsts = self._firsts
        inputs = self._inputs
        firsts.append(first)
        inputs.append(None if rows is None else tuple(map(tuple, rows)))
        # A request is gone once the next one starts at or before the oldest counter still in the ring.
        oldest = self.next - cap
        head = self._head
        last = len(firsts) - 1
        while head < last and firsts[head + 1] <= oldest:
            inputs[head] = None
            head += 1
        if head >= _COMPACT_MIN and head * 2 >= len(firsts):
            del firsts[:head]
            del inputs[:head]
            head = 0
        self._head = head
        return first

    def _row(self, n: int) -> Row | None:
        """The input row of counter ``n`` (which must be in the ring), if its request recorded rows."""
        i = bisect_right(self._firsts, n, self._head) - 1
        if i < self._head:
            return None
        rows = self._inputs[i]
        k = n - self._firsts[i]
        if rows is None or k >= len(rows):
            return None
        return rows[k]

    def claim(self, pid: object) -> tuple[bool, str | None, Row | None]:
        """Look up an id once: (matched, predicted class label, input row or None when not recorded).
        A second lookup does not match."""
        if type(pid) is not str or len(pid) != PREFIX_LEN + COUNTER_LEN or not pid.startswith(self.prefix):
            return False, None, None
        try:
            n = int(pid[PREFIX_LEN:], 16)
        except ValueError:
            return False, None, None
        if n >= self.next or n < self.next - self.capacity:
            return False, None, None
        slot = n % self.capacity
        value = self._ring[slot]
        if value is _UNSET or value is _DONE:
            return False, None, None
        self._ring[slot] = _DONE
        return True, value if isinstance(value, str) else None, self._row(n)

    def take(self, pid: object) -> tuple[bool, str | None]:
        """Look up an id once: (matched, predicted class label). A second lookup does not match."""
        hit, predicted, _ = self.claim(pid)
        return hit, predicted
