"""Commands shown to the user, spelled so they work where the user is (``.venv/bin/modeltui`` when the
command is not on PATH, the example's real path when the current directory is elsewhere)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "breast_cancer"


def program() -> str:
    """``modeltui`` when that is on PATH, else the path this program was started by (as typed)."""
    if shutil.which("modeltui") or Path(sys.argv[0]).name != "modeltui":
        return "modeltui"
    return sys.argv[0]


def example_dir() -> str:
    here = Path("examples/breast_cancer")
    if here.is_dir() or not EXAMPLE.is_dir():
        return str(here)
    return str(EXAMPLE)


def push_example() -> str:
    return f"{program()} push {example_dir()} --alias production"
