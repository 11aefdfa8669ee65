"""Text snapshots of the TUI: the screen as the user reads it (characters, no colours), compared with a
stored file under tests/tui/snapshots/. ``MODELTUI_UPDATE_SNAPSHOTS=1`` writes the files instead of comparing;
review the diff of the .txt files before committing them."""

from __future__ import annotations

import difflib
import io
import os
from pathlib import Path
from typing import Any

from rich.console import Console
from textual.app import App

SNAPSHOTS = Path(__file__).resolve().parents[1] / "tui" / "snapshots"
UPDATE = os.environ.get("MODELTUI_UPDATE_SNAPSHOTS") == "1"


def screen_text(app: App[Any]) -> str:
    """What the terminal shows now, one line per row, trailing spaces cut (as ``App.export_screenshot``
    renders it, into plain text instead of SVG)."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True, color_system=None,
                      record=True, legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return "\n".join(line.rstrip() for line in console.export_text(styles=False).splitlines()) + "\n"


def assert_snapshot(name: str, text: str) -> None:
    """``text`` equals the stored snapshot ``name`` (or becomes it, with MODELTUI_UPDATE_SNAPSHOTS=1)."""
    path = SNAPSHOTS / f"{name}.txt"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    if not path.exists():
        raise AssertionError(f"no snapshot {path}: run with MODELTUI_UPDATE_SNAPSHOTS=1 to write it")
    stored = path.read_text()
    if text != stored:
        diff = "".join(difflib.unified_diff(stored.splitlines(True), text.splitlines(True), str(path), "screen"))
        raise AssertionError(f"the screen differs from {path.name} (MODELTUI_UPDATE_SNAPSHOTS=1 rewrites it):\n{diff}")
