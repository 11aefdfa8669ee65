"""A 1 GiB model file pushes through the real socket with bounded memory on both sides, and pushing it
again copies nothing."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.helpers.daemon import DaemonProcess
from tests.helpers.models import make_model_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GIB = 1 << 30
MIB = 1 << 20


def write_big_file(path: Path, size: int) -> None:
    """Incompressible-looking, non-sparse content without generating a GiB of randomness."""
    block = bytearray(os.urandom(MIB))
    with path.open("wb") as fh:
        for i in range(size // MIB):
            block[:8] = i.to_bytes(8, "little")
            fh.write(block)


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def run_cli_measured(daemon: DaemonProcess, *args: str) -> tuple[int, str, int, float]:
    """Exit code, stdout, the CLI's peak RSS in KiB and the wall time.

    The peak is VmHWM sampled from /proc while the CLI runs: it belongs to the program after exec, whereas
    the child's ru_maxrss also counts the test process's pages it carried between fork and exec.
    """
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out_file:
        proc = subprocess.Popen([sys.executable, "-m", "modeltui", *args], env=daemon.env, stdout=out_file,
                                stderr=subprocess.DEVNULL)
        peak = 0
        while proc.poll() is None:
            with contextlib.suppress(OSError, AssertionError):
                if b"-m\x00modeltui\x00" in Path(f"/proc/{proc.pid}/cmdline").read_bytes():  # exec'ed already
                    peak = max(peak, vm_hwm_kib(proc.pid))
            time.sleep(0.02)
        out_file.seek(0)
        out = out_file.read().decode()
    assert peak > 0, "the CLI exited before its memory could be read"
    return proc.returncode, out, peak, time.perf_counter() - t0


def test_one_gib_push_has_bounded_memory(daemon: DaemonProcess, tmp_path: Path) -> None:
    model = make_model_dir(tmp_path / "big", "big", weights=b"")
    write_big_file(model / "model.skops", GIB)
    assert daemon.proc is not None
    before = vm_hwm_kib(daemon.proc.pid)
    time.sleep(1.1)  # files changed within the last second are hashed but not trusted to the stat cache

    code, out, client_peak, seconds = run_cli_measured(daemon, "push", str(model), "--json")
    assert code == 0
    result = json.loads(out)
    assert result["version"]["size"] > GIB
    assert result["bytes_copied"] > GIB
    daemon_growth_mib = (vm_hwm_kib(daemon.proc.pid) - before) / 1024
    assert daemon_growth_mib < 100, f"daemon peak RSS grew {daemon_growth_mib:.0f} MiB"
    assert client_peak / 1024 < 200, f"client peak RSS {client_peak / 1024:.0f} MiB"
    print(f"\n1 GiB push: {seconds:.2f}s, daemon RSS growth {daemon_growth_mib:.1f} MiB, "
          f"client peak {client_peak / 1024:.0f} MiB")

    code, out, _, again = run_cli_measured(daemon, "push", str(model), "--json")
    assert code == 0
    second = json.loads(out)
    assert second["created"] is False
    assert second["bytes_copied"] == 0
    print(f"re-push: {again:.2f}s, 0 bytes copied")
