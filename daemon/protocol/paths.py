"""Where things live: the default socket, config and state paths for user and system mode.

Both the daemon's settings and the client's socket discovery (flag > env > config > default) use these, so
they live in the protocol package and need nothing but the standard library.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

Mode = Literal["user", "system"]

SYSTEM_CONFIG = Path("/etc/modeltui/daemon.toml")
SYSTEM_STATE = Path("/var/lib/modeltui")
SYSTEM_RUNTIME = Path("/run/modeltui")
SOCKET_NAME = "modeltuid.sock"

ENV_SOCKET = "MODELTUI_SOCKET"
ENV_CONFIG = "MODELTUI_CONFIG"
ENV_MODE = "MODELTUI_MODE"
ENV_STATE_DIR = "MODELTUI_STATE_DIR"
ENV_RUNTIME_DIR = "MODELTUI_RUNTIME_DIR"


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / fallback


def default_mode() -> Mode:
    return "system" if os.environ.get(ENV_MODE) == "system" else "user"


def default_config_path(mode: Mode) -> Path:
    if mode == "system":
        return SYSTEM_CONFIG
    return _xdg("XDG_CONFIG_HOME", ".config") / "modeltui" / "daemon.toml"


def default_state_dir(mode: Mode) -> Path:
    if mode == "system":
        return SYSTEM_STATE
    return _xdg("XDG_STATE_HOME", ".local/state") / "modeltui"


def default_runtime_dir(mode: Mode) -> Path:
    if mode == "system":
        return SYSTEM_RUNTIME
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime) and os.path.isdir(runtime):
        return Path(runtime) / "modeltui"
    # No per-user runtime directory (common over plain SSH or in containers): keep it in the state dir.
    return default_state_dir(mode) / "run"


def read_config(path: Path) -> dict[str, object]:
    """The TOML config as a dict; a missing file is an empty config."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    return tomllib.loads(data.decode("utf-8"))


def _config_socket(config: dict[str, object], config_path: Path) -> Path | None:
    section = config.get("daemon")
    if isinstance(section, dict):
        value = section.get("socket")
        if isinstance(value, str) and value:
            return (config_path.parent / value).resolve() if not os.path.isabs(value) else Path(value)
    return None


def find_socket(flag: str | None = None, config_path: str | None = None) -> Path:
    """The socket a client should use: ``--socket`` flag, then $MODELTUI_SOCKET, then the config, then the
    default for the mode ($MODELTUI_MODE)."""
    if flag:
        return Path(flag)
    env = os.environ.get(ENV_SOCKET)
    if env:
        return Path(env)
    mode = default_mode()
    cfg_path = Path(config_path or os.environ.get(ENV_CONFIG) or default_config_path(mode))
    try:
        from_config = _config_socket(read_config(cfg_path), cfg_path)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        from_config = None
    if from_config is not None:
        return from_config
    runtime = os.environ.get(ENV_RUNTIME_DIR)
    return (Path(runtime) if runtime else default_runtime_dir(mode)) / SOCKET_NAME
