"""The production cue, one rule for the client config and the header: a context named ``prod*`` is red unless
its config sets a colour, and a context is labelled PROD when its name says so or its colour is a red one."""

from __future__ import annotations

import re

PRODUCTION_PREFIX = "prod"
PRODUCTION_COLOR = "red"

_RED_NAMES = frozenset({"red", "darkred", "crimson", "firebrick", "maroon", "indianred", "orangered", "tomato"})
_HEX = re.compile(r"#([0-9a-f]{3}|[0-9a-f]{6})")


def default_color(name: str) -> str | None:
    """The colour of a context whose config sets none: red for ``prod*``."""
    return PRODUCTION_COLOR if name.lower().startswith(PRODUCTION_PREFIX) else None


def is_red(color: str | None) -> bool:
    """A red-ish colour: a red name (``red``, ``dark_red``, ``ansi_bright_red``, ``crimson``…) or a hex colour
    whose red clearly dominates."""
    if not color:
        return False
    text = color.strip().lower().replace("_", "").replace("-", "")
    if text in _RED_NAMES or (text.startswith("ansi") and text.endswith("red")):
        return True
    match = _HEX.fullmatch(text)
    if match is None:
        return False
    digits = match.group(1)
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    red, green, blue = (int(digits[i:i + 2], 16) for i in (0, 2, 4))
    return red >= 0x80 and max(green, blue) * 2 <= red


def is_production(name: str, color: str | None) -> bool:
    """Whether the header says PROD: the name says so (``prod*``) or the context's colour is red."""
    return default_color(name) is not None or is_red(color)
