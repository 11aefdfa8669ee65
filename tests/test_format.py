"""modeltui.format: the one spelling of each kind of value, shared by the CLI and the TUI. Each format is
pinned here: a change to one is a change a user sees in both."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from daemon.protocol.results import FeatureDrift
from modeltui import format as fmt

NOW = datetime(2026, 11, 27, 14, 30, 5, tzinfo=UTC)
PACKAGE = Path(fmt.__file__).parent


@pytest.mark.parametrize(("n", "shown"), [
    (None, "-"), (0, "0 B"), (512, "512 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (5 << 20, "5.0 MiB"),
    (3 << 30, "3.0 GiB"), (2 << 40, "2.0 TiB"), (2048 << 40, "2048.0 TiB"),
])
def test_size(n: int | None, shown: str) -> None:
    assert fmt.size(n) == shown


@pytest.mark.parametrize(("seconds", "shown"), [
    (None, "-"), (-1, "-"), (0, "0s"), (45.9, "45s"), (65, "1m05s"), (3599, "59m59s"), (3900, "1h05m"),
    (86399, "23h59m"), (183_600, "2d03h"),
])
def test_duration(seconds: float | None, shown: str) -> None:
    assert fmt.duration(seconds) == shown


@pytest.mark.parametrize(("ago", "shown"), [
    (0, "<1m"), (59, "<1m"), (65, "1m"), (3599, "59m"), (3900, "1h05m"), (183_600, "2d03h"), (-5, "-"),
])
def test_uptime_is_to_the_minute(ago: int, shown: str) -> None:
    assert fmt.uptime(NOW - timedelta(seconds=ago), NOW) == shown


def test_uptime_of_nothing_and_of_a_naive_time() -> None:
    assert fmt.uptime(None, NOW) == "-"
    assert fmt.uptime((NOW - timedelta(minutes=5)).replace(tzinfo=None), NOW) == "5m"  # naive is UTC


@pytest.mark.parametrize(("seconds", "shown"), [(90, "90s"), (300, "5m"), (3600, "1h"), (86400, "24h")])
def test_window(seconds: int, shown: str) -> None:
    assert fmt.window(seconds) == shown


def test_elapsed() -> None:
    assert fmt.elapsed(NOW, None) == "…"
    assert fmt.elapsed(NOW, NOW + timedelta(seconds=0.42)) == "0.4s"
    assert fmt.elapsed(NOW, NOW + timedelta(seconds=65)) == "1m05s"


def test_timestamps_are_utc_to_the_second() -> None:
    paris = NOW.astimezone(timezone(timedelta(hours=1)))
    assert fmt.when(paris) == fmt.when(NOW) == "2026-11-27 14:30:05"
    assert fmt.when(NOW.replace(tzinfo=None)) == "2026-11-27 14:30:05"
    assert fmt.when(None) == "-"
    assert fmt.when_short(paris) == "11-27 14:30:05"
    assert fmt.when_short(None) == "-"
    assert fmt.clock(paris) == "14:30"


@pytest.mark.parametrize(("seconds", "shown"), [
    (None, "cache live"), (0, "cache live"), (2.54, "cache may be 2.5 s stale"), (12.4, "cache may be 12 s stale"),
])
def test_staleness(seconds: float | None, shown: str) -> None:
    assert fmt.staleness(seconds) == shown


def test_milliseconds_percentages_and_short_text() -> None:
    assert (fmt.ms(0.01234), fmt.ms(None), fmt.pct(0.01234), fmt.pct(None)) == ("12.3 ms", "-", "1.23%", "-")
    assert fmt.short("a\nb " + "x" * 50, 10) == "a b xxxxx…"
    assert (fmt.tags_of({}), fmt.tags_of({"b": "2", "a": "1"})) == ("-", "a=1, b=2")
    assert (fmt.aliases_of({}), fmt.aliases_of({"production": 2})) == ("-", "production→2")


def drift(psi: float, state: str, count: float = 500) -> FeatureDrift:
    return FeatureDrift(psi=psi, ks=0.5, count=count, state=state, min_count=200)  # type: ignore[arg-type]


def test_drift_summary() -> None:
    assert fmt.drift_summary({}) == "-"
    waiting = {"a": drift(3.0, "not_enough_data", 10), "b": drift(1.0, "not_enough_data", 7)}
    line = "not enough data for 2 feature(s): at most 10 observations, 200 needed"
    assert fmt.drift_summary(waiting) == fmt.drift_waiting(waiting) == line
    mixed = {**waiting, "c": drift(0.31, "shifted"), "d": drift(0.05, "ok")}
    assert fmt.drift_summary(mixed) == "4 feature(s), 2 with not enough data, worst c PSI 0.310 KS 0.500  SHIFTED"
    assert fmt.drift_waiting({"d": drift(0.05, "ok")}) is None


def test_printable_spells_out_control_characters() -> None:
    assert fmt.printable("a\x1b[2Jb\u202e") == "a\\x1b[2Jb\\u202e"
    assert fmt.printable("a\tb\nc", keep="\n") == "a\\tb\nc"


def test_every_state_tone_is_in_the_palette() -> None:
    for tones in (fmt.DEPLOYMENT_TONE, fmt.RUN_TONE, fmt.STEP_TONE, fmt.ALERT_TONE, fmt.CLUSTER_TONE):
        assert set(tones.values()) <= set(fmt.PALETTE)
    assert fmt.PALETTE["bad"].style == "bold red"
    assert fmt.PALETTE["bad"].markup == "b $error"


def _literals(path: Path) -> list[str]:
    return [n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant)
            and isinstance(n.value, str)]


def test_no_other_module_defines_state_colours_or_time_formats() -> None:
    """The palette and the time formats live in modeltui/format.py only: no theme colour or strftime
    pattern in another module of the CLI or the TUI (app.tcss keeps layout, not state colours)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "format.py" and path.parent == PACKAGE:
            continue
        for literal in _literals(path):
            if any(word in literal for word in ("$success", "$warning", "$error", "%H:%M", "%Y-%m-%d")):
                found.append(f"{path.relative_to(PACKAGE)}: {literal!r}")
    tcss = (PACKAGE / "app.tcss").read_text()
    found += [f"app.tcss: {word}" for word in ("--ok", "--bad", "--warn", "--critical", "--shifted")
              if word in tcss]
    assert found == []
