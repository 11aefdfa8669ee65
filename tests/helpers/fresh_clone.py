"""A fresh clone and a new user, for the tests that follow the README: the repository's files as a clone has
them, and an environment with its own home and state directory and no modeltui settings."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.helpers.paths import REPO


def repo_copy(dest: Path) -> Path:
    """The repository's files as a fresh clone has them (tracked and new, not ignored): no .venv, no caches."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def fresh_env(base: Path, venv_bin: Path) -> dict[str, str]:
    """A new user's environment: their own home, no modeltui settings nor Python path, a fresh state
    directory and socket under ``base``, and ``venv_bin`` first on PATH."""
    drop = ("MODELTUI_", "XDG_", "PYTHONPATH", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    # pip's wheel cache stays the real user's: it changes where wheels come from, never what is installed
    env.setdefault("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))
    (base / "home").mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(base / "home"), MODELTUI_STATE_DIR=str(base / "state"),
               MODELTUI_SOCKET=str(base / "run" / "modeltuid.sock"), PYTHONUNBUFFERED="1",
               PATH=f"{venv_bin}{os.pathsep}{env.get('PATH', '')}")
    return env
