"""Fault injection for crash-consistency tests.

``MODELTUI_FAULT=<point>`` makes the process die with ``os._exit(70)`` when it reaches that point, without
flushing or cleaning anything up, like a power cut would (minus the page cache). The variable is read when a
store is constructed, never at import, so a test can set it for a subprocess only.
"""

from __future__ import annotations

import os

ENV_FAULT = "MODELTUI_FAULT"
FAULT_EXIT_CODE = 70

POINTS = frozenset({"object.written", "object.fsynced", "object.renamed", "db.before_commit", "db.committed"})


class Faults:
    """The fault point this process should die at, if any."""

    def __init__(self, point: str | None = None) -> None:
        if point is not None and point not in POINTS:
            raise ValueError(f"unknown fault point {point!r}; known: {', '.join(sorted(POINTS))}")
        self.point = point

    @classmethod
    def from_env(cls) -> Faults:
        return cls(os.environ.get(ENV_FAULT) or None)

    def hit(self, point: str) -> None:
        if point == self.point:
            os._exit(FAULT_EXIT_CODE)


NO_FAULTS = Faults()
