"""Crash consistency: die at every fault point during ingest + push, then check the state dir.

After each crash the registry must show either the old state or the complete new version (never a version
whose objects are missing, never a partial file under objects/), and GC must clean up the leftovers. Two
layouts: every file small (objects inline in SQLite: only the database commit matters) and a model file larger
than INLINE_MAX (a file object: staging → fsync → rename → fsync-dir, then the commit).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.protocol import requests as q
from daemon.registry.service import Registry
from daemon.store.faults import ENV_FAULT, FAULT_EXIT_CODE, POINTS

PUSH_SCRIPT = """
import os, sys
from pathlib import Path
from daemon.protocol import requests as q
from daemon.registry.service import Registry

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


def stored(reg: Registry) -> set[str]:
    return {sha for sha, _ in reg.objects.iter_objects()} | {sha for sha, _ in reg.objects.iter_blobs()}


def assert_consistent(reg: Registry) -> set[int]:
    """Every version's objects exist and verify; every stored object is whole. Returns version numbers."""
    numbers = {v.number for v in reg.log(q.Log(name="iris")).items}
    for n in numbers:
        detail = reg.show(q.Show(ref=f"iris:{n}"))
        assert len(detail.files) == detail.version.file_count
        for f in detail.files:
            assert reg.objects.size_of(f.sha256) == f.size, f"{f.path} of version {n} is missing"
            assert reg.objects.verify(f.sha256)
    for sha in stored(reg):
        assert reg.objects.verify(sha), f"object {sha} is not whole"
    return numbers


LAYOUTS = {"inline": (5_000, 7_000), "file": (3 * (1 << 20) + 17, 2 * (1 << 20) + 5)}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("point", sorted(POINTS))
def test_crash_at_fault_point(layout: str, point: str, tmp_path: Path, model_dir: Path, ingest_path: Ingest) -> None:
    v1_size, v2_size = LAYOUTS[layout]
    inline = layout == "inline"
    (model_dir / "model.bin").write_bytes(os.urandom(v1_size))
    state = tmp_path / "state"
    reg = Registry(state)
    v1 = reg.push(q.Push(files=[ingest_path(reg, p) for p in sorted(model_dir.iterdir())]), "alice")
    reg.close()

    (model_dir / "model.bin").write_bytes(os.urandom(v2_size))
    proc = run_push(state, model_dir, point)
    if inline and point.startswith("object."):
        # An inline push never writes an object file: it runs to completion.
        assert proc.returncode == 0, proc.stderr
        committed = True
    else:
        assert proc.returncode == FAULT_EXIT_CODE, proc.stderr
        assert "pushed" not in proc.stdout
        committed = point == "db.committed"

    reg = Registry(state)
    try:
        numbers = assert_consistent(reg)
        if committed:
            assert numbers == {1, 2}
            assert reg.show(q.Show(ref="iris@production")).version.number == 2
        else:
            assert numbers == {v1.version.number}
        staging = list((state / "staging").iterdir())
        if not inline and point in ("object.written", "object.fsynced"):
            assert len(staging) == 1  # the interrupted copy, never under objects/
        else:
            assert staging == []
        if inline:
            assert reg.objects.iter_objects() == []

        res = reg.gc(q.Gc(grace_seconds=0))
        assert not list((state / "staging").iterdir())
        # Only a file object written before the crash can be orphaned: pending uploads died with the process.
        expected_orphans = 1 if not inline and point in ("object.renamed", "db.before_commit") else 0
        assert res.objects_removed == expected_orphans
        assert assert_consistent(reg) == numbers
        referenced = set()
        for n in numbers:
            referenced |= {f.sha256 for f in reg.show(q.Show(ref=f"iris:{n}")).files}
        assert stored(reg) == referenced
    finally:
        reg.close()

    # The same push now succeeds (or finds the version the crash already committed).
    proc = run_push(state, model_dir, None)
    assert proc.returncode == 0, proc.stderr
    reg = Registry(state)
    try:
        assert assert_consistent(reg) == {1, 2}
        kinds = {f.path: reg.objects.kind_of(f.sha256) for f in reg.show(q.Show(ref="iris:2")).files}
        assert kinds == {"modeltui.toml": "blob", "model.bin": "blob" if inline else "file"}
    finally:
        reg.close()
