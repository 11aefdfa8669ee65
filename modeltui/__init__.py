"""modeltui: the Textual TUI and the headless CLI; both reach the daemon only through ``daemon.protocol``."""

from daemon import __version__

__all__ = ["__version__"]
