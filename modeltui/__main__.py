"""``python -m modeltui``: the same as the ``modeltui`` command."""

from modeltui.cli import entry

entry()
