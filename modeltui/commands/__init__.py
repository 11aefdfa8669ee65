"""Command mode (``:``) and the command palette's providers (ctrl+p): the k9s way around the TUI.

:mod:`.parse` and :mod:`.complete` are pure; :mod:`.line` is the command line; :mod:`.mode` is what the App
holds; :mod:`.palette` holds the providers the App lists in ``COMMANDS``.
"""

from .line import CommandLine, CommandScreen
from .mode import CommandMode, apply_view_filter
from .names import KnownNames
from .palette import ActionsProvider, ObjectsProvider
from .parse import Command, CommandError, parse_command

#: The providers the App adds to Textual's own.
PROVIDERS = (ActionsProvider, ObjectsProvider)

__all__ = [
    "PROVIDERS",
    "ActionsProvider",
    "Command",
    "CommandError",
    "CommandLine",
    "CommandMode",
    "CommandScreen",
    "KnownNames",
    "ObjectsProvider",
    "apply_view_filter",
    "parse_command",
]
