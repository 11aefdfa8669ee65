"""Backups while a real daemon serves, their verification, and restores (``daemon/backup/``)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from daemon.backup.backup import backup, backup_main
from daemon.backup.common import MANIFEST, BackupError
from daemon.backup.restore import EXIT_DAEMON_RUNNING, DaemonRunning, restore, restore_main
from daemon.backup.verify import verify, verify_main
from daemon.registry.objects import INLINE_MAX
from daemon.settings import Settings, load_settings
from tests.helpers.daemon import DaemonProcess
from tests.helpers.models import make_model_dir

pytestmark = pytest.mark.integration

Factory = Callable[[str], DaemonProcess]


def big(i: int, name: str) -> bytes:
    """Content above INLINE_MAX: stored as a file object, not a blob."""
    return hashlib.sha256(f"{name} {i}".encode()).digest() * ((INLINE_MAX + 4096) // 32)


def model_files(i: int, name: str) -> dict[str, bytes]:
    return {"model.skops": f"weights {name} {i}".encode(), "data/big.bin": big(i, name), "small.txt": b"shared\n"}


def write_model(root: Path, i: int, name: str) -> Path:
    files = model_files(i, name)
    return make_model_dir(
        root / f"{name}-{i}",
        name,
        weights=files["model.skops"],
        extra={k: v for k, v in files.items() if k != "model.skops"},
        params=f"C = {i}.0",
    )


def push(d: DaemonProcess, directory: Path) -> int:
    res = d.cli("push", str(directory), "--json")
    assert res.returncode == 0, res.stderr
    return int(json.loads(res.stdout)["version"]["number"])


def settings_of(d: DaemonProcess) -> Settings:
    return load_settings(environ=d.env)


def tree(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``root`` (mode, sha256): to show that a directory was not touched."""
    found: dict[str, tuple[int, str]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            found[str(path.relative_to(root))] = (path.stat().st_mode, hashlib.sha256(path.read_bytes()).hexdigest())
    return found


@dataclass(frozen=True)
class Ack:
    model: str
    number: int
    i: int
    at: float


class Pusher(threading.Thread):
    """Pushes new versions of one model through the real CLI in a loop, recording each acknowledged one."""

    def __init__(self, d: DaemonProcess, root: Path, model: str) -> None:
        super().__init__(daemon=True)
        self.d, self.root, self.model = d, root, model
        self.acks: list[Ack] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            res = self.d.cli("push", str(write_model(self.root, i, self.model)), "--json")
            at = time.monotonic()  # after the acknowledgement arrived: conservative for "acked before the backup"
            if res.returncode != 0:
                self.errors.append(res.stderr)
                return
            self.acks.append(Ack(self.model, int(json.loads(res.stdout)["version"]["number"]), i, at))


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@contextlib.contextmanager
def pushing(d: DaemonProcess, root: Path, models: list[str]) -> Iterator[list[Pusher]]:
    pushers = [Pusher(d, root, m) for m in models]
    for p in pushers:
        p.start()
    try:
        yield pushers
    finally:
        for p in pushers:
            p.stop.set()
        for p in pushers:
            p.join(60)


def checkout_matches(d: DaemonProcess, ref: str, expected: dict[str, bytes], into: Path) -> None:
    res = d.cli("checkout", ref, str(into))
    assert res.returncode == 0, res.stderr
    got = {str(p.relative_to(into)): p.read_bytes() for p in into.rglob("*") if p.is_file()}
    assert {k: v for k, v in got.items() if k != "modeltui.toml"} == expected


def test_backup_under_pushes_restores_every_acknowledged_version(daemon_factory: Factory, tmp_path: Path) -> None:
    d = daemon_factory("live").start()
    with pushing(d, tmp_path / "dirs", ["alpha", "beta"]) as pushers:
        wait_for(lambda: all(len(p.acks) >= 3 for p in pushers), 60, "the first pushes")
        began = time.monotonic()
        result = backup(d.state_dir, tmp_path / "bk", link=False)  # copies: the slower path, more overlap
        ended = time.monotonic()
        counts = [len(p.acks) for p in pushers]
        # The daemon kept acknowledging pushes after the snapshot (it never waited for the backup).
        wait_for(lambda: all(len(p.acks) > n for p, n in zip(pushers, counts, strict=True)), 60, "more pushes")
    for p in pushers:
        assert not p.errors, p.errors
    for p in pushers:  # the live daemon lost nothing either (the snapshot must not disturb its WAL)
        res = d.cli("log", p.model, "--json", "--limit", "1000")
        assert res.returncode == 0, res.stderr
        assert {int(v["number"]) for v in json.loads(res.stdout)["items"]} == {a.number for a in p.acks}
    acked_before = [a for p in pushers for a in p.acks if a.at < began]
    assert len(acked_before) >= 6
    assert result.objects >= len(acked_before)  # one big file object per version
    assert result.linked == 0
    assert ended - began < 30

    report = verify(tmp_path / "bk")
    assert report.ok, report.problems
    assert report.kind == "backup"
    assert report.versions == result.versions >= len(acked_before)
    manifest = json.loads((tmp_path / "bk" / MANIFEST).read_text())
    assert manifest["counts"]["versions"] == result.versions
    assert not (tmp_path / "bk.partial").exists()

    r = daemon_factory("restored")
    restored = restore(tmp_path / "bk", r.state_dir)
    assert restored.report.ok, restored.report.problems
    assert restored.aside is None  # a new state directory: nothing to keep
    assert verify(r.state_dir).ok
    r.start()
    for model in ("alpha", "beta"):
        res = r.cli("log", model, "--json", "--limit", "1000")
        assert res.returncode == 0, res.stderr
        numbers = {int(v["number"]) for v in json.loads(res.stdout)["items"]}
        assert {a.number for a in acked_before if a.model == model} <= numbers
    first = min(acked_before, key=lambda a: a.at)
    shown = r.cli("show", f"{first.model}:{first.number}", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["params"] == {"C": float(first.i)}
    for a in (first, max(acked_before, key=lambda a: a.at)):
        checkout_matches(r, f"{a.model}:{a.number}", model_files(a.i, a.model), tmp_path / f"out-{a.model}-{a.number}")


def test_corrupt_backup_fails_verify_and_restore_leaves_target_untouched(daemon: DaemonProcess, tmp_path: Path) -> None:
    for i in (1, 2):
        push(daemon, write_model(tmp_path / "dirs", i, "demo"))
    good = tmp_path / "good"
    backup(daemon.state_dir, good, link=False)
    assert verify(good).ok
    target = tmp_path / "target"
    assert restore(good, target).report.ok
    before = tree(target)

    flipped = tmp_path / "flipped"
    shutil.copytree(good, flipped)
    victim = next(p for p in (flipped / "objects").rglob("*") if p.is_file())
    victim.chmod(0o600)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    report = verify(flipped)
    sha = victim.parent.name + victim.name
    assert any(sha in p and "does not match" in p for p in report.problems), report.problems

    truncated = tmp_path / "truncated"
    shutil.copytree(good, truncated)
    db = truncated / "registry.db"
    with open(db, "r+b") as f:
        f.truncate(db.stat().st_size // 2)
    report = verify(truncated)
    assert not report.ok
    assert any("registry.db" in p for p in report.problems), report.problems

    for bad in (flipped, truncated):
        with pytest.raises(BackupError, match="failed verification; nothing was changed"):
            restore(bad, target)
        assert tree(target) == before
        assert not target.with_name("target.restore-tmp").exists()
    assert verify_main(good, out=io.StringIO()) == 0
    err = io.StringIO()
    assert verify_main(truncated, out=io.StringIO(), err=err) == 1
    assert "registry.db" in err.getvalue()
    err = io.StringIO()
    assert restore_main(settings_of(daemon).model_copy(update={"state_dir": target}), flipped, err=err) == 1
    assert "does not match" in err.getvalue()
    assert tree(target) == before


def test_restore_refuses_while_daemon_runs_and_never_applies_the_old_wal(
    daemon_factory: Factory, tmp_path: Path
) -> None:
    d = daemon_factory("d").start()
    push(d, write_model(tmp_path / "dirs", 1, "keep"))
    bk = tmp_path / "bk"
    backup(d.state_dir, bk)
    push(d, write_model(tmp_path / "dirs", 2, "keep"))  # after the backup: must not survive the restore

    settings = settings_of(d)
    assert d.proc is not None
    with pytest.raises(DaemonRunning) as refused:
        restore(bk, d.state_dir)
    assert refused.value.pid == d.proc.pid
    out, err = io.StringIO(), io.StringIO()
    assert restore_main(settings, bk, out=out, err=err) == EXIT_DAEMON_RUNNING
    assert f"pid {d.proc.pid}" in err.getvalue()
    assert d.cli("show", "keep:2").returncode == 0  # untouched, still serving

    d.stop(signal.SIGKILL)  # leaves the WAL behind, with version 2 in it
    out, err = io.StringIO(), io.StringIO()
    assert restore_main(settings, bk, out=out, err=err) == 0, err.getvalue()
    assert "kept in" in out.getvalue()
    asides = list(d.state_dir.glob("pre-restore-*"))
    assert len(asides) == 1
    old = sqlite3.connect(f"file:{asides[0] / 'registry.db'}?mode=ro", uri=True)
    try:
        assert old.execute("SELECT count(*) FROM versions").fetchone()[0] == 2  # the old state, complete
    finally:
        old.close()
    assert not (d.state_dir / "registry.db-wal").exists()

    d.start()
    res = d.cli("log", "keep", "--json")
    assert res.returncode == 0, res.stderr
    assert [int(v["number"]) for v in json.loads(res.stdout)["items"]] == [1]
    checkout_matches(d, "keep:1", model_files(1, "keep"), tmp_path / "out")


def test_gc_during_backup_is_deferred_and_the_backup_keeps_removed_versions(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    for i in (1, 2):
        push(daemon, write_model(tmp_path / "dirs", i, "demo"))
    reached, release = threading.Event(), threading.Event()

    def hold(_sha: str) -> None:
        reached.set()
        release.wait(30)

    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(backup(daemon.state_dir, tmp_path / "bk", on_object=hold))
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    try:
        assert reached.wait(10)
        assert daemon.cli("rm", "demo:1").returncode == 0
        gc = daemon.cli("gc", "--grace", "0")
        assert gc.returncode == 7, gc.stdout + gc.stderr  # UNAVAILABLE
        assert "backup" in gc.stderr
    finally:
        release.set()
        worker.join(30)
    assert len(outcome) == 1
    assert not isinstance(outcome[0], BaseException), outcome
    report = verify(tmp_path / "bk")
    assert report.ok, report.problems
    assert report.versions == 2  # the snapshot was taken before the rm

    gone = hashlib.sha256(big(1, "demo")).hexdigest()
    gc = daemon.cli("gc", "--grace", "0", "--json")
    assert gc.returncode == 0, gc.stderr
    assert json.loads(gc.stdout)["objects_removed"] >= 1
    assert not (daemon.state_dir / "objects" / gone[:2] / gone[2:]).exists()
    assert (tmp_path / "bk" / "objects" / gone[:2] / gone[2:]).exists()  # a hard link outlives the store's name
    assert verify(tmp_path / "bk").ok

    # A GC that is running makes a backup wait; one that holds the lock too long fails it cleanly.
    fd = os.open(daemon.state_dir / "gc.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(BackupError, match="garbage collection"):
            backup(daemon.state_dir, tmp_path / "bk2", gc_wait_s=0.2)
    finally:
        os.close(fd)
    assert not (tmp_path / "bk2").exists()
    assert not (tmp_path / "bk2.partial").exists()


def test_dest_must_be_new_or_empty(daemon: DaemonProcess, tmp_path: Path) -> None:
    push(daemon, write_model(tmp_path / "dirs", 1, "demo"))
    settings = settings_of(daemon)
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    err = io.StringIO()
    assert backup_main(settings, full, out=io.StringIO(), err=err) == 1
    assert "not empty" in err.getvalue()
    assert [p.name for p in full.iterdir()] == ["keep.txt"]
    assert not (tmp_path / "full.partial").exists()

    (tmp_path / "afile").write_text("x")
    err = io.StringIO()
    assert backup_main(settings, tmp_path / "afile", out=io.StringIO(), err=err) == 1
    assert "not a directory" in err.getvalue()

    err = io.StringIO()
    assert backup_main(settings, daemon.state_dir / "bk", out=io.StringIO(), err=err) == 1
    assert "inside the state directory" in err.getvalue()

    (tmp_path / "next.partial").mkdir()
    err = io.StringIO()
    assert backup_main(settings, tmp_path / "next", out=io.StringIO(), err=err) == 1
    assert "interrupted" in err.getvalue()

    empty = tmp_path / "empty"
    empty.mkdir()
    out = io.StringIO()
    assert backup_main(settings, empty, out=out, err=io.StringIO()) == 0
    assert "1 versions" in out.getvalue()
    assert (empty / MANIFEST).is_file()
    assert verify(empty).ok


def test_the_modeltuid_commands(daemon: DaemonProcess, tmp_path: Path) -> None:
    """``modeltuid backup|verify|restore`` as an operator types them, with the daemon's own settings."""
    d = daemon
    assert d.cli("push", str(make_model_dir(tmp_path / "m", "cmd"))).returncode == 0

    def modeltuid(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "daemon", *args], env=d.env, capture_output=True, text=True,
                              timeout=120, check=False)  # fmt: skip

    made = modeltuid("backup", str(tmp_path / "bk"))
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "bk" / "MANIFEST.json").is_file()
    assert modeltuid("verify", str(tmp_path / "bk")).returncode == 0
    assert modeltuid("verify").returncode == 0  # the live state directory
    running = modeltuid("restore", str(tmp_path / "bk"))
    assert running.returncode == 75
    assert "running" in running.stderr.lower()
