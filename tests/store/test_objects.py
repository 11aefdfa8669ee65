"""The content-addressed object store: ingest, stat cache, limits, permissions, verification."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import time
from pathlib import Path

import psutil
import pytest

from daemon.protocol.errors import ErrorCode, ProtocolError
from daemon.registry.objects import ObjectStore
from daemon.registry.service import Registry


def ingest(reg: Registry, path: Path, size: int | None = None) -> tuple[str, int, bool]:
    fd = os.open(path, os.O_RDONLY)
    try:
        got = reg.ingest(fd, path.stat().st_size if size is None else size)
    finally:
        os.close(fd)
    return got.sha256, got.size, got.copied


def test_ingest_stores_by_sha256(reg: Registry, model_dir: Path) -> None:
    path = model_dir / "model.bin"
    data = path.read_bytes()
    seen: list[int] = []
    fd = os.open(path, os.O_RDONLY)
    try:
        got = reg.ingest(fd, len(data), seen.append)
    finally:
        os.close(fd)
    assert got.sha256 == hashlib.sha256(data).hexdigest()
    assert got.copied
    assert seen[-1] == len(data)
    assert seen == sorted(seen)
    obj = reg.objects.path_of(got.sha256)
    assert obj == reg.state_dir / "objects" / got.sha256[:2] / got.sha256[2:]
    assert obj.read_bytes() == data
    assert stat.S_IMODE(obj.stat().st_mode) == 0o400
    assert stat.S_IMODE(obj.parent.stat().st_mode) == 0o700
    assert list((reg.state_dir / "staging").iterdir()) == []
    assert reg.objects.verify(got.sha256)


def test_same_content_in_another_file_is_not_copied_again(reg: Registry, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"same")
    b.write_bytes(b"same")
    assert ingest(reg, a)[2] is True
    assert ingest(reg, b)[2] is False


def test_empty_file(reg: Registry, tmp_path: Path) -> None:
    p = tmp_path / "empty"
    p.write_bytes(b"")
    sha, size, copied = ingest(reg, p)
    assert (sha, size, copied) == (hashlib.sha256(b"").hexdigest(), 0, True)


def test_size_mismatch_is_invalid_and_leaves_no_staging(reg: Registry, tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"12345")
    for wrong in (4, 6):
        with pytest.raises(ProtocolError) as exc:
            ingest(reg, p, size=wrong)
        assert exc.value.code == ErrorCode.INVALID
    assert list((reg.state_dir / "staging").iterdir()) == []
    assert reg.objects.iter_objects() == []


def test_size_mismatch_found_while_reading(reg: Registry, tmp_path: Path) -> None:
    """fstat said N, but the read found fewer bytes (e.g. truncated meanwhile): INVALID."""
    p = tmp_path / "f"
    p.write_bytes(b"x" * 100)
    store = reg.objects
    fd = os.open(p, os.O_RDONLY)
    try:
        out = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT, 0o600)
        with pytest.raises(ProtocolError, match="read 100 bytes, but 101"):
            store._stream(fd, out, 101, None)
        os.close(out)
    finally:
        os.close(fd)


def test_only_regular_files(reg: Registry) -> None:
    r, w = os.pipe()
    try:
        with pytest.raises(ProtocolError, match="regular files") as exc:
            reg.ingest(r, 0)
        assert exc.value.code == ErrorCode.INVALID
    finally:
        os.close(r)
        os.close(w)


def test_bad_descriptor_is_invalid(reg: Registry, tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY)
    os.close(fd)
    with pytest.raises(ProtocolError) as exc:
        reg.ingest(fd, 0)
    assert exc.value.code == ErrorCode.INVALID


def test_unchanged_file_is_not_read_again(reg: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ObjectStore, "racy_window_ns", 0)
    p = tmp_path / "weights"
    p.write_bytes(os.urandom(1 << 16))
    time.sleep(0.02)  # let the coarse file clock move past the file's ctime
    first = ingest(reg, p)
    assert first[2] is True

    def no_read(*args: object) -> int:
        raise AssertionError("an unchanged file must not be read")

    with monkeypatch.context() as m:
        m.setattr(os, "preadv", no_read)
        assert ingest(reg, p) == (first[0], first[1], False)

    # Modified in place, same size: ctime changes, so it is read again.
    with open(p, "r+b") as f:
        f.write(b"CHANGED!")
    second = ingest(reg, p)
    assert second[0] != first[0]
    assert second[0] == hashlib.sha256(p.read_bytes()).hexdigest()
    assert second[2] is True


def test_recently_changed_file_is_not_cached(reg: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file changed within the racy window is hashed but not remembered: its next ingest reads it again."""
    p = tmp_path / "fresh"
    p.write_bytes(b"fresh content")
    ingest(reg, p)
    calls: list[int] = []
    real = os.preadv

    def counting(*args: object) -> int:
        calls.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "preadv", counting)
    assert ingest(reg, p)[2] is False  # content exists already, but it was read
    assert calls


def test_verify_detects_corruption(reg: Registry, tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"good" * 50_000)
    sha = ingest(reg, p)[0]
    obj = reg.objects.path_of(sha)
    obj.chmod(0o600)
    obj.write_bytes(b"evil")
    assert not reg.objects.verify(sha)


def test_verify_detects_corrupt_blob(reg: Registry, tmp_path: Path) -> None:
    sha = hashlib.sha256(b"good").hexdigest()
    with sqlite3.connect(reg.state_dir / "registry.db", isolation_level=None) as db:
        db.execute("INSERT INTO blobs (sha256, size, created_at, data) VALUES (?, 4, 'x', ?)", (sha, b"good"))
        assert reg.objects.verify(sha)
        db.execute("UPDATE blobs SET data = ? WHERE sha256 = ?", (b"evil", sha))
        assert not reg.objects.verify(sha)


def test_open_missing_object_is_integrity_error(reg: Registry) -> None:
    with pytest.raises(ProtocolError) as exc:
        reg.objects.open_object("ab" * 32)
    assert exc.value.code == ErrorCode.INTEGRITY
    with pytest.raises(ProtocolError):
        reg.objects.path_of("../../etc/passwd")


@pytest.mark.slow
def test_large_ingest_keeps_memory_bounded(reg: Registry, tmp_path: Path) -> None:
    size = 256 << 20
    p = tmp_path / "big"
    block = os.urandom(1 << 20)
    with open(p, "wb") as f:
        for i in range(size >> 20):
            f.write(block[:-8] + i.to_bytes(8, "big"))
    proc = psutil.Process()
    before = proc.memory_info().rss
    samples = [before]

    def sample(done: int) -> None:
        if done % (16 << 20) == 0:
            samples.append(proc.memory_info().rss)

    fd = os.open(p, os.O_RDONLY)
    try:
        got = reg.ingest(fd, size, sample)
        samples.append(proc.memory_info().rss)
    finally:
        os.close(fd)
    assert got.copied
    assert got.size == size
    assert len(samples) > 10
    assert max(samples) - before < 32 << 20, f"RSS grew by {(max(samples) - before) >> 20} MiB"
