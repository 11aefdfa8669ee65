"""The CLI as a user meets it: no terminal (``ssh host modeltui`` without ``-t``), an 80-column terminal with a
real daemon and a real deployment, a pipe, and registry strings carrying escape sequences."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import DaemonProcess
from tests.helpers.models import make_model_dir

pytestmark = pytest.mark.integration

MODEL = "breast-cancer"
DESCRIPTION = (
    "Logistic regression on the Wisconsin diagnostic breast cancer data, 30 features from a digitized image "
    "of a fine needle aspirate of a breast mass; scaled, C tuned by cross-validation, calibrated on holdout."
)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def python_model(path: Path) -> Path:
    """A python-flavor model (cheap to serve) under the README example's name."""
    path.mkdir(parents=True)
    (path / "modeltui.toml").write_text(
        f'name = "{MODEL}"\nflavor = "python"\nmodel_file = "predict.py:predict"\nrequirements = []\n'
        f'description = "{DESCRIPTION}"\n\n[signature]\ninputs = [{{name = "x", type = "double"}}]\n'
    )
    (path / "predict.py").write_text("def predict(X):\n    return [2 * row[0] for row in X]\n")
    return path


def cli_json(d: DaemonProcess, *args: str) -> Any:
    res = d.cli(*args, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def at_80(d: DaemonProcess, *args: str) -> str:
    """``modeltui ARGS`` with ``COLUMNS=80`` and stdout on a pipe."""
    res = subprocess.run([sys.executable, "-m", "modeltui", *args], env={**d.env, "COLUMNS": "80"},
                         capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr
    return res.stdout


def in_terminal(d: DaemonProcess, *args: str, columns: int = 80) -> str:
    """``modeltui ARGS`` on a real pseudo-terminal ``columns`` wide (colours stripped)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {k: v for k, v in d.env.items() if k not in ("COLUMNS", "LINES")} | {"TERM": "xterm-256color"}
    proc = subprocess.Popen([sys.executable, "-m", "modeltui", *args], env=env, stdin=terminal, stdout=terminal,
                            stderr=subprocess.PIPE)  # fmt: skip
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    _, errors = proc.communicate(timeout=60)
    assert proc.returncode == 0, errors
    return ANSI.sub("", b"".join(chunks).decode()).replace("\r\n", "\n")


def assert_fits(text: str, *whole: str, width: int = 80) -> None:
    for line in text.splitlines():
        assert len(line.rstrip()) <= width, f"{len(line.rstrip())} > {width}: {line!r}\n{text}"
    for value in whole:
        assert value in text, f"{value!r} is not shown whole:\n{text}"


def test_no_terminal_prints_the_help_and_exits_2(tmp_path: Path) -> None:
    """``ssh host modeltui`` without -t: stdin and stdout are pipes; the TUI would wait for keys forever."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELTUI_")} | {
        "MODELTUI_SOCKET": str(tmp_path / "none.sock"), "HOME": str(tmp_path)}  # fmt: skip
    started = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "modeltui"], env=env, stdin=subprocess.PIPE, capture_output=True,
                         text=True, timeout=60, check=False)  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert res.stdout == ""
    assert "Usage:" in res.stderr
    assert "Examples:" in res.stderr
    assert "ssh -t" in res.stderr
    assert not (tmp_path / "none.sock").exists()  # nothing was started for a TUI that cannot run
    assert time.monotonic() - started < 60


def test_help_says_no_command_opens_the_tui_with_examples() -> None:
    res = subprocess.run([sys.executable, "-m", "modeltui", "--help"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "COLUMNS": "80"}, check=False)  # fmt: skip
    assert res.returncode == 0
    text = " ".join(res.stdout.split())
    assert "With no command, modeltui opens the TUI" in text
    assert "Examples:" in res.stdout
    assert "modeltui deploy breast-cancer@production" in res.stdout
    assert_fits(res.stdout)


def test_every_table_at_80_columns_with_a_real_deployment(daemon: DaemonProcess, tmp_path: Path) -> None:
    model = python_model(tmp_path / "bc")
    assert daemon.cli("push", str(model), "--alias", "production", "-m", "first").returncode == 0
    pushed = daemon.cli("push", str(model), "--alias", "production", "-m", "second")
    assert pushed.returncode == 0, pushed.stderr
    (model / "predict.py").write_text("def predict(X):\n    return [3 * row[0] for row in X]\n")
    assert daemon.cli("push", str(model), "-m", "triple", "--tag", "owner=ml-platform").returncode == 0
    assert daemon.cli("alias", "set", MODEL, "production", "2", "--reason", "a long reason " * 8).returncode == 0
    deployed = daemon.cli("deploy", f"{MODEL}@production", "--timeout", "120")
    assert deployed.returncode == 0, deployed.stderr
    dep = cli_json(daemon, "ps")["items"][0]
    assert dep["name"] == "breast-cancer-production"
    assert dep["state"] == "running"
    endpoint = dep["endpoint"]

    ps = in_terminal(daemon, "ps")  # a real 80-column terminal: it printed `breast…` and `http:/…`
    assert_fits(ps, "breast-cancer-production", endpoint, "running", "@production")
    assert "…" not in ps
    assert len(ps.strip().splitlines()) == 2  # header and one row
    wide = in_terminal(daemon, "ps", columns=160)
    assert_fits(wide, "breast-cancer@production", endpoint, "process", "healthy", "restarts", width=160)

    ls = at_80(daemon, "ls")  # the description wrapped over many lines
    assert_fits(ls, MODEL, "production→2")
    assert len(ls.strip().splitlines()) == 3
    assert "Logistic" in ls
    assert "…" in ls
    assert_fits(at_80(daemon, "log", MODEL), "production", "triple", "owner=ml-platform")
    assert_fits(at_80(daemon, "alias", "history", MODEL), "production")
    assert_fits(at_80(daemon, "alerts", "rules"), "breast-cancer-production")
    assert_fits(at_80(daemon, "alerts", "--history"))
    assert_fits(at_80(daemon, "metrics", "breast-cancer-production"), "breast-cancer-production")
    assert_fits(at_80(daemon, "audit"), "versions.push")
    assert_fits(at_80(daemon, "ps", "--all-hosts"), "breast-cancer-production", endpoint)
    assert_fits(at_80(daemon, "cluster", "status"))

    piped = daemon.cli("ls")  # a pipe (no COLUMNS): whole lines for grep and awk
    assert DESCRIPTION in piped.stdout
    assert f"{MODEL}@production" in daemon.cli("ps").stdout


HOSTILE = "x\\u001b[2J\\u001b]0;pwned\\u0007\\rforged"  # TOML escapes: ESC, BEL, CR


def test_diff_over_a_pipe_writes_no_escape_byte(daemon: DaemonProcess, tmp_path: Path) -> None:
    """Signature names, [params] strings and requirements with control characters: the daemon may refuse
    them at push; whatever it stores, ``diff`` and ``show`` print spelt out, never raw."""
    base = make_model_dir(tmp_path / "v1", "hostile")
    assert daemon.cli("push", str(base)).returncode == 0
    variants = {
        "params": {"params": f'C = "{HOSTILE}"'},
        "signature": {"weights": b"w2"},
        "requirements": {"weights": b"w3"},
    }
    stored = []
    for i, (field, options) in enumerate(variants.items()):
        path = make_model_dir(tmp_path / f"v{i + 2}", "hostile", **options)  # type: ignore[arg-type]
        manifest = (path / "modeltui.toml").read_text()
        if field == "signature":
            manifest = manifest.replace('name = "x"', f'name = "{HOSTILE}"')
        if field == "requirements":
            manifest = manifest.replace('"scikit-learn"', f'"scikit-learn{HOSTILE}"')
        (path / "modeltui.toml").write_text(manifest)
        pushed = daemon.cli("push", str(path), "--json")
        assert "\x1b" not in pushed.stderr  # a refusal names the character, spelt out
        if pushed.returncode == 0:
            stored.append(json.loads(pushed.stdout)["version"]["number"])
    for number in stored:
        for args in (("diff", "hostile:1", f"hostile:{number}"), ("show", f"hostile:{number}")):
            res = subprocess.run([sys.executable, "-m", "modeltui", *args], env=daemon.env, capture_output=True,
                                 timeout=60, check=False)  # fmt: skip
            assert res.returncode == 0, res.stderr
            for raw in (b"\x1b", b"\x07", b"\r"):
                assert raw not in res.stdout, res.stdout
            assert b"\\x1b[2J" in res.stdout or b"\\u001b[2J" in res.stdout  # spelt out
