"""The monitoring block codec: exact round trips, compact counters, and damaged blocks refused."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from daemon.store import blocks


@pytest.mark.parametrize("seed", range(20))
def test_chunks_round_trip_exactly(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 3000))
    sid = np.sort(rng.integers(0, 60, n)).astype(np.int64)
    t = 1.8e9 + rng.random(n) * 600
    value = np.where(rng.random(n) < 0.7, rng.integers(0, 2**52, n).astype(float), rng.normal(0, 1e6, n))
    value[rng.random(n) < 0.05] = (np.nan, -0.5, 2.0**60, -(2.0**52))[seed % 4]
    s = blocks.merge([blocks.Samples(sid, t, value)])
    back = blocks.decode(blocks.encode_chunk(s))
    assert np.array_equal(back.sid, s.sid)
    assert np.abs(back.t - s.t).max(initial=0) <= 1e-6
    assert np.array_equal(back.value, s.value, equal_nan=True)


def test_frames_round_trip_with_their_zeros() -> None:
    s = blocks.decode(blocks.encode_frame(1.8e9, [3, 1], [7.0, 2.5], 1.8e9 - 0.001, [3]))
    assert list(zip(s.sid.tolist(), s.t.tolist(), s.value.tolist(), strict=True)) == [
        (3, 1.8e9 - 0.001, 0.0), (3, 1.8e9, 7.0), (1, 1.8e9, 2.5)
    ]  # fmt: skip


def test_counters_cost_about_a_byte_a_sample() -> None:
    rng = np.random.default_rng(0)
    series, cycles = 275, 40
    sid = np.repeat(np.arange(series), cycles).astype(np.int64)
    t = np.tile(1.8e9 + 15.0 * np.arange(cycles), series)
    value = np.cumsum(rng.poisson(30, (series, cycles)), axis=1).ravel().astype(float)
    assert len(blocks.encode_chunk(blocks.Samples(sid, t, value))) < 1.0 * series * cycles


def test_merge_keeps_the_later_of_equal_samples_and_last_values() -> None:
    a = blocks.Samples(np.array([1, 2]), np.array([10.0, 10.0]), np.array([1.0, 5.0]))
    b = blocks.Samples(np.array([1, 1]), np.array([10.0, 20.0]), np.array([2.0, 3.0]))
    m = blocks.merge([a, b])
    assert m.value.tolist() == [2.0, 3.0, 5.0]
    assert blocks.last_values(m).value.tolist() == [3.0, 5.0]


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:-3],
        lambda b: b[:5],
        lambda b: b"",
        lambda b: b"X" + b[1:],
        lambda b: b[:9] + b"\xff\xff\xff\x7f" + b[13:],  # a sample count far larger than the body
        lambda b: b[: len(b) // 2] + bytes(len(b) - len(b) // 2),
        lambda b: b[:17] + zlib.compress(bytes(10)),
    ],
)
def test_damaged_blocks_raise_a_block_error(damage: object) -> None:
    s = blocks.Samples(np.arange(50, dtype=np.int64), np.full(50, 1.8e9), np.arange(50, dtype=float))
    for good in (blocks.encode_chunk(s), blocks.encode_frame(1.8e9, list(range(50)), [1.0] * 50, 1.8e9, [])):
        with pytest.raises(blocks.BlockError):
            blocks.decode(damage(good))  # type: ignore[operator]
