"""``modeltui``: the headless CLI (and, with no subcommand, the TUI). :mod:`.common` holds the click group
every command module registers its commands on; importing this package imports them all."""

from . import (
    alerts,
    approve,
    cluster,
    contexts,
    daemon,
    deploy,
    doctor,
    feedback,
    maintain,
    monitor,
    ops,
    registry,
    signing,
)
from .common import entry, main

__all__ = [
    "alerts",
    "approve",
    "cluster",
    "contexts",
    "daemon",
    "deploy",
    "doctor",
    "entry",
    "feedback",
    "main",
    "maintain",
    "monitor",
    "ops",
    "registry",
    "signing",
]
