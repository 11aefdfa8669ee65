"""How values read on a terminal, for the CLI and the TUI alike: byte sizes, durations, uptimes, timestamps,
the drift summary, the state palette, and control characters spelt out. One function per kind of value, so
``modeltui ps`` and the Deployments screen show the same text for the same deployment. No Rich, no Textual:
the CLI styles a tone with :attr:`Tone.terminal`, the TUI with :attr:`Tone.variable`."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from daemon.protocol.results import CodeInfo, FeatureDrift, SignatureInfo

# -- text from the registry ------------------------------------------------------------------------------------
#: Invisible characters that reorder what follows them (a "Trojan Source" line can read as another).
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
SPELT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _spelt(ch: str) -> str:
    code = ord(ch)
    return SPELT.get(ch) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def _unsafe(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in BIDI_CONTROLS


def printable(value: object, *, keep: str = "") -> str:
    """``value`` with every control character spelt out (ESC as ``\\x1b``), except those in ``keep``.

    Strings from the registry reach terminals: a raw ESC can clear the screen or retitle the window, a CR or
    newline can forge an output line. Rich passes ESC, NUL, DEL and the C1 controls through, so everything
    shown from the daemon goes through here."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(_spelt(ch) if _unsafe(ch) and ch not in keep else ch for ch in text)


# -- short text --------------------------------------------------------------------------------------------------
def short(text: str, width: int = 40) -> str:
    """One line of at most ``width`` characters."""
    line = text.replace("\n", " ").strip()
    return line if len(line) <= width else line[: width - 1] + "…"


def aliases_of(aliases: Mapping[str, int]) -> str:
    """``{"production": 2}`` → ``production→2``; none → ``-``."""
    return ", ".join(f"{name}→{number}" for name, number in sorted(aliases.items())) or "-"


def tags_of(tags: Mapping[str, str]) -> str:
    """``{"owner": "ml"}`` → ``owner=ml``; none → ``-``."""
    return ", ".join(f"{k}={v}" for k, v in sorted(tags.items())) or "-"


def version_label(number: int | None) -> str:
    return "-" if number is None else f"v{number}"


def value(value: Any) -> str:
    """Any JSON value as one short line."""
    if value is None:
        return "-"
    return short(str(value), 60)


def digest(sha: str | None, width: int = 12) -> str:
    return "-" if sha is None else sha[:width]


# -- sizes, durations, times -----------------------------------------------------------------------------------
def signer(sig: SignatureInfo | None, *, long: bool = False) -> str:
    """Who signed a version: ``verified alice@example.com``, ``not allowed SHA256:…`` or ``unsigned``; ``long``
    adds the key and who sent the signature."""
    if sig is None:
        return "unsigned"
    if not long:
        return printable(f"{sig.status} {sig.principal or sig.fingerprint}")
    key = f"{sig.key_type.removeprefix('ssh-').upper()} {sig.fingerprint}"
    who = f"{sig.principal} " if sig.principal else ""
    return printable(f"{sig.status} {who}({key}, sent by {sig.signed_by})")


def code_rows(code: CodeInfo | None) -> list[tuple[str, str]]:
    """``pickle scan: ok (23 globals, all allowed)`` and what in the manifest runs code (docs/security.md), as
    ``modeltui show`` and the TUI's version detail both say them."""
    if code is None:
        return []
    rows = [("pickle scan", code.pickle_scan)] if code.pickle_scan else []
    if code.runs_code:
        approval = f"approved by {code.approved_by}" if code.approved_by else "not approved"
        rows.append(("runs code", f"{'; '.join(code.runs_code)} ({approval})"))
    return rows


def size(n: int | None) -> str:
    """``1536`` → ``1.5 KiB``, ``512`` → ``512 B``; ``None`` → ``-``."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def duration(seconds: float | None) -> str:
    """``45`` → ``45s``, ``65`` → ``1m05s``, ``3900`` → ``1h05m``, ``183600`` → ``2d03h``: two units at most,
    the largest first; ``None`` or negative → ``-``."""
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


def elapsed(start: datetime, end: datetime | None) -> str:
    """How long a step or run took: ``0.4s``, ``12.3s``, then as :func:`duration`; ``…`` while it runs."""
    if end is None:
        return "…"
    seconds = (end - start).total_seconds()
    return f"{seconds:.1f}s" if seconds < 60 else duration(seconds)


def uptime(started_at: datetime | None, now: datetime | None = None) -> str:
    """How long ago ``started_at`` was, to the minute: ``<1m``, ``5m``, ``1h05m``, ``2d03h``; ``-`` when not
    started. Coarse on purpose: a text that changes every second redraws the TUI's table every second, which
    an idle screen over SSH must not do (and ``ps`` says the same)."""
    if started_at is None:
        return "-"
    now = now or datetime.now(UTC)
    start = started_at if started_at.tzinfo else started_at.replace(tzinfo=UTC)
    seconds = (now - start).total_seconds()
    if seconds < 0:
        return "-"
    if seconds < 60:
        return "<1m"
    if seconds < 3600:
        return f"{int(seconds) // 60}m"
    return duration(seconds)


def when(moment: datetime | None) -> str:
    """A timestamp in UTC, to the second: ``2026-11-27 14:30:05`` (``-`` for none). UTC everywhere: the CLI,
    the TUI, the audit log and ``--at`` then name the same instant with the same text."""
    if moment is None:
        return "-"
    return _utc(moment).strftime("%Y-%m-%d %H:%M:%S")


def when_short(moment: datetime | None) -> str:
    """:func:`when` without the year, for narrow columns: ``11-27 14:30:05``."""
    return when(moment)[5:] if moment is not None else "-"


def clock(moment: datetime) -> str:
    """The time of day in UTC, to the minute (``14:30``): for a title that must not repaint every second."""
    return _utc(moment).strftime("%H:%M")


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def window(seconds: int) -> str:
    """A time window in the largest whole unit up to hours, as the metrics keys name them: ``300`` → ``5m``,
    ``3600`` → ``1h``, ``86400`` → ``24h``, ``90`` → ``90s``."""
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def seconds(value: float) -> str:
    """A few seconds: ``2.5`` under ten, ``12`` from ten on."""
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def staleness(value: float | None) -> str:
    """The cluster cache's age: ``cache live`` or ``cache may be 12 s stale``."""
    return "cache live" if not value else f"cache may be {seconds(value)} s stale"


def ms(value: float | None) -> str:
    """Seconds shown as milliseconds: ``0.0123`` → ``12.3 ms``."""
    return "-" if value is None else f"{value * 1000:.1f} ms"


def pct(value: float | None) -> str:
    """A ratio as a percentage: ``0.0123`` → ``1.23%``."""
    return "-" if value is None else f"{value * 100:.2f}%"


# -- drift -----------------------------------------------------------------------------------------------------
def drift_waiting(drift: Mapping[str, FeatureDrift]) -> str | None:
    """The features with too few observations for any verdict, in one line (``None`` when there are none)."""
    waiting = [d for d in drift.values() if d.state == "not_enough_data"]
    if not waiting:
        return None
    most = max(d.count for d in waiting)
    need = max(d.min_count for d in waiting)
    return f"not enough data for {len(waiting)} feature(s): at most {most:.0f} observations, {need} needed"


def worst_drift(drift: Mapping[str, FeatureDrift]) -> tuple[str, FeatureDrift] | None:
    """The judged feature with the highest PSI (``None`` when none is judged yet)."""
    judged = {f: d for f, d in drift.items() if d.state != "not_enough_data"}
    return max(judged.items(), key=lambda kv: kv[1].psi) if judged else None


def drift_summary(drift: Mapping[str, FeatureDrift]) -> str:
    """One line about every feature: the worst judged one (``SHIFTED`` flagged), or why none is judged yet."""
    worst = worst_drift(drift)
    if worst is None:
        return drift_waiting(drift) or "-"
    feature, d = worst
    waiting = sum(1 for x in drift.values() if x.state == "not_enough_data")
    more = f", {waiting} with not enough data" if waiting else ""
    flag = "  SHIFTED" if d.state == "shifted" else ""
    return f"{len(drift)} feature(s){more}, worst {feature[:20]} PSI {d.psi:.3f} KS {d.ks:.3f}{flag}"


# -- the palette -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tone:
    """A state's colour: ``terminal`` is the CLI's Rich colour, ``variable`` the TUI theme's."""

    terminal: str
    variable: str
    bold: bool = False

    @property
    def style(self) -> str:
        """The Rich style of the CLI."""
        return f"bold {self.terminal}" if self.bold else self.terminal

    @property
    def markup(self) -> str:
        """The style inside TUI content markup (``[b $error]…[/]``)."""
        return f"b {self.variable}" if self.bold else self.variable


PALETTE: dict[str, Tone] = {
    "ok": Tone("green", "$success"),
    "busy": Tone("cyan", "$accent"),
    "warn": Tone("yellow", "$warning"),
    "bad": Tone("red", "$error", bold=True),
    "off": Tone("dim", "$text-muted"),
}
TONES = tuple(PALETTE)

#: The tone of each deployment state and health word.
DEPLOYMENT_TONE: dict[str, str] = {
    "running": "ok", "healthy": "ok",
    "pending": "busy", "building": "busy", "starting": "busy",
    "degraded": "warn",
    "crashloop": "bad", "failed": "bad", "unhealthy": "bad",
    "stopped": "off", "unknown": "off",
}
#: The tone of each maintenance run state, and of each step's.
RUN_TONE: dict[str, str] = {
    "running": "busy", "awaiting_approval": "warn", "promoted": "ok", "rejected": "off", "failed": "bad",
    "interrupted": "bad", "cancelled": "off",
}
STEP_TONE: dict[str, str] = {"running": "busy", "done": "ok", "failed": "bad", "skipped": "off"}
#: The tone of each alert state and severity.
ALERT_TONE: dict[str, str] = {
    "firing": "bad", "pending": "warn", "resolved": "ok", "critical": "bad", "warning": "warn", "info": "busy",
}
#: The tone of the cluster connection's state.
CLUSTER_TONE: dict[str, str] = {"connected": "ok", "connecting": "warn", "suspended": "warn", "lost": "bad",
                                 "refused": "bad"}
