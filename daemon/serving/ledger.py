"""Prediction ids, and the predicted class of the most recent ones (for feedback).

An id is 16 hex characters chosen at random when the process starts, then a 12-hex-digit counter: ids
of one batch are consecutive, ids from another process (or an older run) never match. The ledger is a
ring of the last ``capacity`` predictions' class labels, so recording a batch is one slice assignment.
"""

from __future__ import annotations

import secrets
from typing import Final

_UNSET: Final = object()
_DONE: Final = object()
PREFIX_LEN = 16
COUNTER_LEN = 12


class Ledger:
    def __init__(self, capacity: int = 100_000) -> None:
        self.prefix = secrets.token_hex(PREFIX_LEN // 2)
        self.capacity = capacity
        self.next = 0
        self._ring: list[object] = [_UNSET] * capacity

    def make_id(self, n: int) -> str:
        return f"{self.prefix}{n:012x}"

    def ids(self, first: int, count: int) -> list[str]:
        p = self.prefix
        return [f"{p}{n:012x}" for n in range(first, first + count)]

    def record(self, labels: list[str | None]) -> int:
        """Remember a batch's class labels (None: not a class); return the counter of its first id."""
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
        return first

    def take(self, pid: object) -> tuple[bool, str | None]:
        """Look up an id once: (matched, predicted class label). A second lookup does not match."""
        if type(pid) is not str or len(pid) != PREFIX_LEN + COUNTER_LEN or not pid.startswith(self.prefix):
            return False, None
        try:
            n = int(pid[PREFIX_LEN:], 16)
        except ValueError:
            return False, None
        if n >= self.next or n < self.next - self.capacity:
            return False, None
        slot = n % self.capacity
        value = self._ring[slot]
        if value is _UNSET or value is _DONE:
            return False, None
        self._ring[slot] = _DONE
        return True, value if isinstance(value, str) else None
