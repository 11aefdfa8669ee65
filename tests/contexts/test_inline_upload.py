"""objects.put's staging (daemon side): chunks in order, a probe says how far an upload is, content that does not
match its digest is refused and leaves nothing behind."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from daemon.protocol.errors import ErrorCode, ProtocolError
from daemon.registry.inline import InlineUploads
from daemon.registry.objects import Ingested
from tests.helpers.waiting import wait_for


class Store:
    """Stands in for the object store: what ingest read, by digest."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def ingest(self, fd: int, size: int) -> Ingested:
        data = os.pread(fd, size + 1, 0)
        sha = hashlib.sha256(data).hexdigest()
        copied = sha not in self.objects
        self.objects[sha] = data
        return Ingested(sha, len(data), copied)

    def has(self, sha: str, size: int) -> bool:
        return len(self.objects.get(sha, b"")) == size and sha in self.objects


def test_chunks_in_order_resume_and_dedup(tmp_path: Path) -> None:
    store = Store()
    uploads = InlineUploads(tmp_path, store.ingest, store.has)
    data = b"x" * 10 + b"y" * 5
    sha = hashlib.sha256(data).hexdigest()
    assert uploads.put(0, sha, 15, 0, b"").received == 0
    assert uploads.put(0, sha, 15, 0, data[:10]).received == 10
    assert uploads.put(0, sha, 15, 0, b"").received == 10  # a probe after a lost connection: go on from 10
    with pytest.raises(ProtocolError) as caught:
        uploads.put(0, sha, 15, 4, b"zz")
    assert caught.value.code is ErrorCode.CONFLICT
    assert caught.value.data == {"received": 10}
    done = uploads.put(0, sha, 15, 10, data[10:])
    assert done.stored
    assert done.copied
    assert store.objects[sha] == data
    assert list(tmp_path.iterdir()) == []  # the staging file is gone
    again = uploads.put(0, sha, 15, 0, b"")  # the store has it: nothing to send
    assert again.stored
    assert not again.copied
    assert again.received == 15


def test_content_that_does_not_match_its_digest_is_refused(tmp_path: Path) -> None:
    store = Store()
    uploads = InlineUploads(tmp_path, store.ingest, store.has)
    sha = hashlib.sha256(b"right").hexdigest()
    with pytest.raises(ProtocolError) as caught:
        uploads.put(0, sha, 5, 0, b"wrong")
    assert caught.value.code is ErrorCode.INTEGRITY
    with pytest.raises(ProtocolError) as caught:
        uploads.put(0, sha, 5, 0, b"toolong")
    assert caught.value.code is ErrorCode.INVALID
    assert store.objects == {}
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ProtocolError, match="no upload"):
        uploads.put(0, sha, 5, 3, b"ht")  # nothing in progress: start at 0


def test_another_user_cannot_append_to_an_upload(tmp_path: Path) -> None:
    store = Store()
    uploads = InlineUploads(tmp_path, store.ingest, store.has)
    sha = hashlib.sha256(b"abcdef").hexdigest()
    uploads.put(1000, sha, 6, 0, b"abc")
    with pytest.raises(ProtocolError, match="no upload"):
        uploads.put(1001, sha, 6, 3, b"def")
    assert uploads.put(1000, sha, 6, 3, b"def").stored


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_idle_upload_is_dropped_by_the_sweep_and_its_writer_sees_it(tmp_path: Path) -> None:
    store, clock = Store(), Clock()
    uploads = InlineUploads(tmp_path, store.ingest, store.has, idle_seconds=60, clock=clock, sweep_seconds=None)
    sha = hashlib.sha256(b"abcdef").hexdigest()
    uploads.put(0, sha, 6, 0, b"abc")
    partial = uploads._partials[(0, sha, 6)]  # a put that fetched it just before the sweep dropped it
    clock.now += 30
    uploads.expire()
    assert len(list(tmp_path.iterdir())) == 1  # not idle long enough
    clock.now += 61
    uploads.expire()  # no other put needed: the timer calls this
    assert list(tmp_path.iterdir()) == []
    assert partial.fd == -1  # its descriptor is closed and marked so: nothing writes to a reused number
    with pytest.raises(ProtocolError, match="no upload"):
        uploads.put(0, sha, 6, 3, b"def")


def test_close_drops_every_upload_and_the_timer_sweeps_by_itself(tmp_path: Path) -> None:
    store = Store()
    uploads = InlineUploads(tmp_path, store.ingest, store.has, idle_seconds=0.01, sweep_seconds=0.01)
    uploads.put(0, hashlib.sha256(b"abcdef").hexdigest(), 6, 0, b"abc")
    wait_for(lambda: list(tmp_path.iterdir()) == [], "the timer to drop the idle upload")
    uploads = InlineUploads(tmp_path, store.ingest, store.has)  # the daemon's defaults: 15 minutes idle
    uploads.put(0, hashlib.sha256(b"ghijkl").hexdigest(), 6, 0, b"ghi")
    partial = next(iter(uploads._partials.values()))
    uploads.close()  # at shutdown
    assert list(tmp_path.iterdir()) == []
    assert partial.fd == -1
