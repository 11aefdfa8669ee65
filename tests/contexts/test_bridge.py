"""modeltui-bridge on its own: it starts light (it runs on every remote connection) and says why it cannot
relay."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers.sshd import BRIDGE


def test_the_bridge_loads_no_pydantic_and_exits_69_when_no_daemon_answers() -> None:
    probe = ("import sys\nfrom modeltui.bridge import find_socket\nfind_socket(None, None)\n"
             "print(sorted(m for m in ('pydantic', 'textual', 'daemon.protocol') if m in sys.modules))")  # fmt: skip
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
    res = subprocess.run([BRIDGE, "--socket", "/nonexistent/modeltuid.sock"], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    assert res.returncode == 69
    said = "modeltui-bridge: no daemon answers on /nonexistent/modeltuid.sock: No such file or directory"
    assert res.stderr.strip() == said
