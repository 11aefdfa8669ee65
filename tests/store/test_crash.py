"""Crash consistency: die at every fault point during ingest + push, then check the state dir.

After each crash the registry must show either the old state or the complete new version (never a version
whose objects are missing, never a partial file under objects/), and GC must clean up the leftovers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.protocol import requests as q
from daemon.store.faults import ENV_FAULT, FAULT_EXIT_CODE, POINTS
from daemon.versions import Registry

PUSH_SCRIPT = """
import os, sys
from pathlib import Path
from daemon.protocol import requests as q
from daemon.versions import Registry

state, model = Path(sys.argv[1]), Path(sys.argv[2])
reg = Registry(state)
files = []
for p in sorted(model.iterdir()):
    fd = os.open(p, os.O_RDONLY)
    got = reg.ingest(fd, p.stat().st_size)
    os.close(fd)
    files.append(q.PushFile(path=p.name, sha256=got.sha256, size=got.size))
reg.push(q.Push(files=files, alias="production"), "crasher")
print("pushed")
"""

Ingest = Callable[[Registry, Path], q.PushFile]


def run_push(state: Path, model: Path, fault: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != ENV_FAULT}
    if fault:
        env[ENV_FAULT] = fault
    return subprocess.run(
        [sys.executable, "-c", PUSH_SCRIPT, str(state), str(model)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_consistent(reg: Registry) -> set[int]:
    """Every version's objects exist and verify; every object file is whole. Returns version numbers."""
    numbers = {v.number for v in reg.log(q.Log(name="iris")).items}
    for n in numbers:
        detail = reg.show(q.Show(ref=f"iris:{n}"))
        assert len(detail.files) == detail.version.file_count
        for f in detail.files:
            assert reg.objects.size_of(f.sha256) == f.size, f"{f.path} of version {n} is missing"
            assert reg.objects.verify(f.sha256)
    for sha, _path in reg.objects.iter_objects():
        assert reg.objects.verify(sha), f"object {sha} is not whole"
    return numbers


@pytest.mark.parametrize("point", sorted(POINTS))
def test_crash_at_fault_point(point: str, tmp_path: Path, model_dir: Path, ingest_path: Ingest) -> None:
    state = tmp_path / "state"
    reg = Registry(state)
    v1 = reg.push(q.Push(files=[ingest_path(reg, p) for p in sorted(model_dir.iterdir())]), "alice")
    reg.close()

    (model_dir / "model.bin").write_bytes(os.urandom(2 * (1 << 20) + 5))
    proc = run_push(state, model_dir, point)
    assert proc.returncode == FAULT_EXIT_CODE, proc.stderr
    assert "pushed" not in proc.stdout

    reg = Registry(state)
    try:
        numbers = assert_consistent(reg)
        if point == "db.committed":
            assert numbers == {1, 2}
            assert reg.show(q.Show(ref="iris@production")).version.number == 2
        else:
            assert numbers == {v1.version.number}
        staging = list((state / "staging").iterdir())
        if point in ("object.written", "object.fsynced"):
            assert len(staging) == 1  # the interrupted copy, never under objects/
        else:
            assert staging == []

        res = reg.gc(q.Gc(grace_seconds=0))
        assert not list((state / "staging").iterdir())
        expected_orphans = 1 if point in ("object.renamed", "db.before_commit") else 0
        assert res.objects_removed == expected_orphans
        assert assert_consistent(reg) == numbers
        referenced = set()
        for n in numbers:
            referenced |= {f.sha256 for f in reg.show(q.Show(ref=f"iris:{n}")).files}
        assert {sha for sha, _ in reg.objects.iter_objects()} == referenced
    finally:
        reg.close()

    # The same push now succeeds (or finds the version the crash already committed).
    proc = run_push(state, model_dir, None)
    assert proc.returncode == 0, proc.stderr
    reg = Registry(state)
    try:
        assert assert_consistent(reg) == {1, 2}
    finally:
        reg.close()
