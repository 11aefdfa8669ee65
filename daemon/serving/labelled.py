"""Labelled rows: the input rows of predictions that got feedback, with their labels, for retraining.

A bounded buffer (oldest dropped) of ``(seq, time, row, label)``: ``seq`` increases by one from 1 per
process, ``time`` is the unix time the label arrived, ``row`` the input row as the schema converted it
(signature order, a tuple shared with the ledger) and ``label`` the label as sent.
:meth:`LabelledRows.page` reads them after a sequence number, oldest first.
"""

from __future__ import annotations

import math
import time
from collections import deque
from itertools import islice
from typing import Any

DEFAULT_CAPACITY = 50_000
MAX_PAGE = 10_000

Labelled = tuple[int, float, tuple[Any, ...], Any]


def json_safe(value: Any) -> Any:
    """NaN and ±infinity (a missing double, or a value the JSON parser let through) → None (JSON null)."""
    if type(value) is float and not math.isfinite(value):
        return None
    return value


class LabelledRows:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self.last = 0  # the last seq assigned; 0 before the first
        self._rows: deque[Labelled] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def first(self) -> int:
        """The oldest seq still held, or the next seq when none is."""
        return self._rows[0][0] if self._rows else self.last + 1

    def add(self, row: tuple[Any, ...], label: Any, now: float | None = None) -> int:
        self.last += 1
        when = round(time.time() if now is None else now, 3)
        self._rows.append((self.last, when, row, label))
        return self.last

    def page(self, after: int = 0, limit: int = MAX_PAGE) -> list[Labelled]:
        """Rows with seq > ``after``, oldest first, at most ``limit`` (seqs in the buffer are consecutive)."""
        rows = self._rows
        if not rows or limit <= 0:
            return []
        start = max(0, after + 1 - rows[0][0])
        if start >= len(rows):
            return []
        count = min(limit, len(rows) - start)
        if start > len(rows) // 2:  # walk from the newer end: islice cannot seek in a deque
            tail = list(islice(reversed(rows), len(rows) - start - count, len(rows) - start))
            tail.reverse()
            return tail
        return list(islice(rows, start, start + count))

    @staticmethod
    def as_json(rows: list[Labelled], *, clean: bool = False) -> list[list[Any]]:
        """``[[seq, time, [inputs...], label], ...]``; with ``clean``, NaN/infinite floats become None."""
        if not clean:
            return [[seq, when, row, label] for seq, when, row, label in rows]
        return [[seq, when, [json_safe(v) for v in row], json_safe(label)] for seq, when, row, label in rows]
