"""Uploads that are not stored yet: small objects held in memory until the push that references them.

A small upload written to disk right away would cost a file create, two fsyncs and a rename; held here, it
costs nothing until the push INSERTs it into ``blobs`` inside the push's own transaction, so one commit makes
the version and its new objects durable together. What a push never claims is dropped, like an unreferenced
object that GC removes: after ``ttl_ns`` (the GC grace period) or by GC itself.

Memory is bounded by ``budget_bytes``: above it the oldest entries are handed back to the caller to *spill*
to ordinary file objects, never dropped, because the client has been told they are uploaded (a version with
hundreds of MiB of small files must still be pushable).

This module also keeps *leases*: digests already stored as blobs that an upload reused. A blob has no mtime to
refresh, so the lease plays that role for GC's grace period (leases live in memory only, like uploads).

Not thread-safe: :class:`~daemon.registry.objects.ObjectStore` calls it under its store lock.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(slots=True)
class _Held:
    data: bytes
    at_ns: int  # time.monotonic_ns() of the latest upload of this content
    spilling: bool = False


class Pending:
    def __init__(self, *, budget_bytes: int, ttl_ns: int, max_leases: int = 100_000) -> None:
        self.budget_bytes = budget_bytes
        self.ttl_ns = ttl_ns
        self.max_leases = max_leases
        self._held: OrderedDict[str, _Held] = OrderedDict()  # least recently uploaded first
        self._leases: OrderedDict[str, int] = OrderedDict()
        self.total_bytes = 0
        self._spilling_bytes = 0

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, sha256: str) -> bool:
        return sha256 in self._held

    def get(self, sha256: str, now_ns: int) -> bytes | None:
        """The held content, or None (an expired entry is dropped now)."""
        held = self._held.get(sha256)
        if held is None:
            return None
        if held.at_ns < now_ns - self.ttl_ns and not held.spilling:
            self._drop(sha256)
            return None
        return held.data

    def refresh(self, sha256: str, now_ns: int) -> None:
        """Uploaded again: restart its time to live and make it the newest."""
        held = self._held[sha256]
        held.at_ns = now_ns
        self._held.move_to_end(sha256)

    def add(self, sha256: str, data: bytes, now_ns: int) -> list[tuple[str, bytes]]:
        """Hold ``data``; returns the oldest entries to spill to disk so the rest fits the budget."""
        if sha256 in self._held:
            self.refresh(sha256, now_ns)
            return []
        self._expire_before(now_ns - self.ttl_ns)
        self._held[sha256] = _Held(data, now_ns)
        self.total_bytes += len(data)
        spill: list[tuple[str, bytes]] = []
        over = self.total_bytes - self._spilling_bytes - self.budget_bytes
        for sha, held in self._held.items():
            if over <= 0:
                break
            if held.spilling:
                continue
            held.spilling = True
            self._spilling_bytes += len(held.data)
            over -= len(held.data)
            spill.append((sha, held.data))
        return spill

    def spilled(self, sha256: str, *, ok: bool) -> None:
        """A spill finished: the file object exists now (``ok``), or the entry stays held (it failed)."""
        held = self._held.get(sha256)
        if held is None or not held.spilling:
            return
        self._spilling_bytes -= len(held.data)
        held.spilling = False
        if ok:
            self._drop(sha256)

    def pop(self, sha256: str) -> None:
        """Stored elsewhere now (a push committed it as a blob): no longer needed here."""
        if sha256 in self._held:
            held = self._held[sha256]
            if held.spilling:  # the spill finishes on its own; its file object wins over the blob
                self._spilling_bytes -= len(held.data)
            self._drop(sha256)
        self._leases.pop(sha256, None)

    def expire(self, cutoff_ns: int) -> list[tuple[str, int]]:
        """Drop entries last uploaded before ``cutoff_ns`` (for GC); returns (digest, size) of each."""
        return self._expire_before(cutoff_ns)

    def older_than(self, cutoff_ns: int) -> list[tuple[str, int]]:
        """(digest, size) of the entries ``expire`` would drop, without dropping them (GC's dry run)."""
        found: list[tuple[str, int]] = []
        for sha, held in self._held.items():  # oldest first: stop at the first young entry
            if held.at_ns >= cutoff_ns:
                break
            if not held.spilling:
                found.append((sha, len(held.data)))
        return found

    def _expire_before(self, cutoff_ns: int) -> list[tuple[str, int]]:
        gone = self.older_than(cutoff_ns)
        for sha, _size in gone:
            self._drop(sha)
        return gone

    def _drop(self, sha256: str) -> None:
        self.total_bytes -= len(self._held.pop(sha256).data)

    # -- leases on stored blobs ------------------------------------------------------------------------------

    def lease(self, sha256: str, now_ns: int) -> None:
        """An upload reused the stored blob ``sha256``: GC spares it for a grace period from now."""
        self._leases[sha256] = now_ns
        self._leases.move_to_end(sha256)
        while len(self._leases) > self.max_leases:
            self._leases.popitem(last=False)
        while self._leases:
            oldest, at_ns = next(iter(self._leases.items()))
            if at_ns >= now_ns - self.ttl_ns:
                break
            del self._leases[oldest]

    def leased_since(self, sha256: str, cutoff_ns: int) -> bool:
        at_ns = self._leases.get(sha256)
        return at_ns is not None and at_ns >= cutoff_ns
