"""Small, pure formatting helpers shared by the widgets (no Textual, no daemon)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any


def human_size(size: int | None) -> str:
    """``1536`` → ``1.5 KiB``; ``None`` → ``-``."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover - the loop always returns


def when(moment: datetime | None) -> str:
    """A timestamp in the local zone, to the minute."""
    if moment is None:
        return "-"
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def short(text: str, width: int = 40) -> str:
    """One line of at most ``width`` characters."""
    line = text.replace("\n", " ").strip()
    return line if len(line) <= width else line[: width - 1] + "…"


def aliases_of(aliases: Mapping[str, int]) -> str:
    """``{"production": 2}`` → ``production→2``."""
    return ", ".join(f"{name}→{number}" for name, number in sorted(aliases.items()))


def tags_of(tags: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(tags.items()))


def version_label(number: int | None) -> str:
    return "-" if number is None else f"v{number}"


def value(value: Any) -> str:
    """Any JSON value as one short line."""
    if value is None:
        return "-"
    return short(str(value), 60)


def digest(sha: str | None, width: int = 12) -> str:
    return "-" if sha is None else sha[:width]


def duration(seconds: float | None) -> str:
    """``75`` → ``1m15s``; ``None`` or negative → ``-``. Two units at most, the largest first."""
    if seconds is None or seconds < 0:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def uptime(started_at: datetime | None, now: datetime) -> str:
    """How long ago ``started_at`` was (``now`` is timezone-aware), to the minute: ``<1m``, ``5m``,
    ``1h05m``, ``2d03h``. Coarse on purpose: a text that changes every second redraws its table every
    second, which an idle screen over SSH must not do."""
    if started_at is None:
        return "-"
    start = started_at if started_at.tzinfo else started_at.replace(tzinfo=now.tzinfo)
    seconds = (now - start).total_seconds()
    if seconds < 0:
        return "-"
    if seconds < 60:
        return "<1m"
    if seconds < 3600:
        return f"{int(seconds) // 60}m"
    return duration(seconds)
