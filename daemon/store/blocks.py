"""Compressed blocks of monitoring samples: (series id, time, value) triples packed into one blob.

Two encodings, both self-describing (a magic byte):

- a **frame** is one scrape of one deployment, written every cycle: the cycle's time, the changed
  samples as raw ``int32`` ids and ``float64`` values, and the counters reset to 0 just before (explicit
  zeros, with their own time). ``zlib`` level 1: cheap to write, read back for at most one compaction period.
- a **chunk** holds many samples: sorted by (series, time), times as microsecond offsets, every column
  delta-coded within its series; a whole-number value (every counter here) is stored as the integer
  difference from its series' previous whole value, anything else as its raw float. Each column is
  byte-shuffled (the high bytes of small integers are zero and compress to nothing) and the whole is
  compressed with ``zlib``.

Every block ends with the CRC-32 of the rest. Decoding checks it and the sizes, and raises
:class:`BlockError` on anything malformed: the store skips a damaged block with a warning.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FRAME = 0x46  # "F"
CHUNK = 0x43  # "C"
_FRAME_HEAD = struct.Struct("<BddII")  # magic, t, zero_t, zeros, samples
_CHUNK_HEAD = struct.Struct("<BdII")  # magic, t_base, samples, floats
#: Whole-number deltas up to this size are stored as integers (beyond it a float loses integer precision).
_EXACT = 2.0**52
#: A decompressed block larger than this is refused (a chunk of one deployment's ten minutes is ~100 KiB).
MAX_RAW = 64 << 20

Ids = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]


class BlockError(ValueError):
    """A block that is not in either encoding (damaged, truncated or foreign)."""


@dataclass(frozen=True)
class Samples:
    """Columns of samples, sorted by (series, time) when they come out of :func:`merge`."""

    sid: Ids
    t: Floats
    value: Floats

    def __len__(self) -> int:
        return int(self.sid.size)


EMPTY = Samples(np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros(0, np.float64))


def encode_frame(t: float, sids: list[int], values: list[float], zero_t: float, zeros: list[int]) -> bytes:
    """One cycle of one deployment (see the module docstring); built without numpy: it runs per target."""
    body = (
        np.asarray(zeros, np.int32).tobytes()
        + np.asarray(sids, np.int32).tobytes()
        + np.asarray(values, np.float64).tobytes()
    )
    return _sealed(_FRAME_HEAD.pack(FRAME, t, zero_t, len(zeros), len(sids)) + zlib.compress(body, 1))


def _sealed(payload: bytes) -> bytes:
    return payload + struct.pack("<I", zlib.crc32(payload))


def _decode_frame(blob: bytes) -> Samples:
    if len(blob) < _FRAME_HEAD.size:
        raise BlockError("truncated frame")
    _, t, zero_t, n_zero, n = _FRAME_HEAD.unpack_from(blob)
    body = _inflate(blob[_FRAME_HEAD.size :], 4 * n_zero + 12 * n)
    zeros = np.frombuffer(body, np.int32, n_zero).astype(np.int64)
    sids = np.frombuffer(body, np.int32, n, 4 * n_zero).astype(np.int64)
    values = np.frombuffer(body, np.float64, n, 4 * (n_zero + n))
    return Samples(
        np.concatenate([zeros, sids]),
        np.concatenate([np.full(n_zero, zero_t), np.full(n, t)]),
        np.concatenate([np.zeros(n_zero), values]),
    )


def _inflate(data: bytes, expected: int) -> bytes:
    if expected > MAX_RAW:
        raise BlockError(f"block too large ({expected} bytes)")
    try:
        d = zlib.decompressobj()
        body = d.decompress(data, expected + 1)
    except zlib.error as exc:
        raise BlockError(f"damaged block: {exc}") from None
    if len(body) != expected or not d.eof:
        raise BlockError("block size does not match its header")
    return body


def encode_chunk(s: Samples, level: int = 6) -> bytes:
    """Samples sorted by (series, time) into a chunk (see the module docstring)."""
    n = len(s)
    if n == 0:
        return _sealed(_CHUNK_HEAD.pack(CHUNK, 0.0, 0, 0) + zlib.compress(b"", level))
    base = float(s.t.min())
    first = _firsts(s.sid)
    us = np.rint((s.t - base) * 1e6).astype(np.int64)
    t_d = us - np.where(first, 0, np.roll(us, 1))
    whole = (s.value == np.rint(s.value)) & (np.abs(s.value) < _EXACT)
    ints = np.where(whole, s.value, 0).astype(np.int64)
    restart = first | ~np.roll(whole, 1)
    int_d = ints - np.where(restart, 0, np.roll(ints, 1))
    floats = s.value[~whole].astype(np.float64)
    body = b"".join(
        (
            _shuffle(np.diff(s.sid, prepend=0).astype(np.int64)),
            _shuffle(t_d),
            np.packbits(whole).tobytes(),
            _shuffle(np.where(whole, int_d, 0)),
            _shuffle(floats),
        )
    )
    return _sealed(_CHUNK_HEAD.pack(CHUNK, base, n, int(floats.size)) + zlib.compress(body, level))


def _firsts(sid: Ids) -> npt.NDArray[np.bool_]:
    first = np.ones(sid.size, bool)
    first[1:] = sid[1:] != sid[:-1]
    return first


def _decode_chunk(blob: bytes) -> Samples:
    if len(blob) < _CHUNK_HEAD.size:
        raise BlockError("truncated chunk")
    _, base, n, n_float = _CHUNK_HEAD.unpack_from(blob)
    if n_float > n:
        raise BlockError("chunk header is inconsistent")
    mask_len = (n + 7) // 8
    body = _inflate(blob[_CHUNK_HEAD.size :], 24 * n + mask_len + 8 * n_float)
    sid = np.cumsum(_unshuffle(body, 0, n))
    t_d = _unshuffle(body, 8 * n, n)
    whole = np.unpackbits(np.frombuffer(body, np.uint8, mask_len, 16 * n), count=n).astype(bool)
    int_d = _unshuffle(body, 16 * n + mask_len, n)
    floats = _unshuffle(body, 24 * n + mask_len, n_float).view(np.float64)
    if int(np.count_nonzero(~whole)) != n_float:
        raise BlockError("chunk columns do not match")
    first = _firsts(sid)
    us = _segment_cumsum(t_d, first)
    ints = _segment_cumsum(np.where(whole, int_d, 0), first | ~np.roll(whole, 1) | ~whole)
    value = ints.astype(np.float64)
    value[~whole] = floats
    return Samples(sid, base + us.astype(np.float64) / 1e6, value)


def _shuffle(a: npt.NDArray[np.int64] | npt.NDArray[np.float64]) -> bytes:
    """Bytes grouped by their position in the item (all first bytes, then all second bytes, ...)."""
    return a.view(np.uint8).reshape(-1, 8).T.tobytes()


def _unshuffle(body: bytes, at: int, n: int) -> npt.NDArray[np.int64]:
    """``n`` shuffled 8-byte items at ``at`` as int64."""
    planes = np.frombuffer(body, np.uint8, 8 * n, at).reshape(8, n)
    return np.ascontiguousarray(planes.T).view(np.int64).reshape(n)


def _segment_cumsum(x: npt.NDArray[np.int64], starts: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """Cumulative sum of ``x`` restarting where ``starts`` is true (int64: wrap-around cancels out exactly)."""
    if not x.size:
        return x
    with np.errstate(over="ignore"):
        c = np.cumsum(x)
        idx = np.maximum.accumulate(np.where(starts, np.arange(x.size), 0))
        return c - (c[idx] - x[idx])


def decode(blob: bytes) -> Samples:
    """Either encoding; raises :class:`BlockError` on anything else."""
    if len(blob) < 5:
        raise BlockError("truncated block")
    blob, crc = blob[:-4], blob[-4:]
    if struct.pack("<I", zlib.crc32(blob)) != crc:
        raise BlockError("checksum mismatch")
    if blob[0] == FRAME:
        return _decode_frame(blob)
    if blob[0] == CHUNK:
        return _decode_chunk(blob)
    raise BlockError("not a monitoring block")


def merge(parts: list[Samples]) -> Samples:
    """Concatenate and sort by (series, time); of equal (series, time) the later part wins."""
    if not parts:
        return EMPTY
    sid = np.concatenate([p.sid for p in parts])
    t = np.concatenate([p.t for p in parts])
    value = np.concatenate([p.value for p in parts])
    order = np.lexsort((np.arange(sid.size), t, sid))
    sid, t, value = sid[order], t[order], value[order]
    keep = np.ones(sid.size, bool)
    keep[:-1] = (sid[1:] != sid[:-1]) | (t[1:] != t[:-1])
    return Samples(sid[keep], t[keep], value[keep])


def last_values(s: Samples) -> Samples:
    """Each series' last sample (``s`` sorted by (series, time))."""
    if not len(s):
        return EMPTY
    last = np.ones(len(s), bool)
    last[:-1] = s.sid[1:] != s.sid[:-1]
    return Samples(s.sid[last], s.t[last], s.value[last])
