"""Input-drift histograms: live input values counted in buckets whose bounds come from the evaluation data.

At load time :func:`load_reference` reads the manifest's ``[evaluation] data`` CSV and, for each numeric
signature input (double, float, long, integer; the first :data:`MAX_FEATURES` in signature order), takes
the distinct deciles of that column (``np.quantile`` at 0.1 … 0.9, missing and non-finite values left out)
as bucket bounds, and the share of the column at or below each bound as the reference. The reference is a
pure function of the version's immutable files, so every instance of a version exposes the same one.

:class:`FeatureHistograms` counts the live values of every predicted batch in the predict worker thread
(with numpy, one pass per batch) and renders ``modeltui_feature_value`` (histogram),
``modeltui_feature_reference_ratio`` (gauge) and ``modeltui_feature_missing_total`` (counter); see the
package docstring. Labels are bounded: at most ``MAX_FEATURES`` features × ``len(DECILES) + 1`` bounds.
"""

from __future__ import annotations

import csv
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .manifest import ManifestError, ServingManifest, resolve_inside
from .metrics import escape, fmt, render_histogram

NUMERIC_TYPES = ("double", "float", "long", "integer")
MAX_FEATURES = 100
#: Rows of the evaluation data read for the reference (the first ones): keeps load time and memory bounded.
MAX_REFERENCE_ROWS = 100_000
DECILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
_CHUNK = 10_000
_MISSING = ("", "nan", "NaN", "NAN", "null", "NULL", "None", "NA", "N/A")


class EvaluationDataError(Exception):
    """The evaluation data cannot serve as a reference; the runtime serves without feature metrics."""


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    index: int
    """The column's position in the signature (and in the batch array)."""
    bounds: tuple[float, ...]
    """Distinct deciles of the reference, ascending (1 to 9 of them)."""
    ratios: tuple[float, ...]
    """The reference's cumulative share at each bound: values ``<= bound`` / non-missing values."""
    values: int
    """Non-missing reference values."""


def reference_from_column(values: npt.NDArray[np.float64]) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """(bounds, cumulative ratios) for one reference column, or None when it holds no finite value."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    edges = np.unique(np.quantile(finite, DECILES))
    at_or_below = np.searchsorted(np.sort(finite), edges, side="right")
    ratios = at_or_below / finite.size
    return tuple(float(e) for e in edges.tolist()), tuple(float(r) for r in ratios.tolist())


def _to_float(chunk: list[list[str]]) -> npt.NDArray[np.float64]:
    """Rows of CSV fields → floats; missing or unparseable fields become NaN."""
    text = np.array(chunk, dtype=str)
    try:
        return np.where(np.isin(text, _MISSING), "nan", text).astype(np.float64)
    except ValueError:  # some field is not a number: parse value by value (rare, slower)
        out = np.empty(text.shape, dtype=np.float64)
        for idx, field in np.ndenumerate(text):
            try:
                out[idx] = float(field)
            except ValueError:
                out[idx] = math.nan
        return out


def _read_columns(path: Path, names: list[str]) -> tuple[list[str], npt.NDArray[np.float64]]:
    """The columns of ``path`` among ``names`` (those present, in the order given) as floats."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            if not header:
                raise EvaluationDataError(f"{path.name} is empty")
            position = {h: i for i, h in enumerate(header)}
            present = [n for n in names if n in position]
            if not present:
                raise EvaluationDataError(f"{path.name} has none of the signature's numeric inputs as a column")
            cols = [position[n] for n in present]
            width = len(header)
            chunks: list[npt.NDArray[np.float64]] = []
            chunk: list[list[str]] = []
            rows = 0
            for rec in reader:
                if not rec:
                    continue
                if rows >= MAX_REFERENCE_ROWS:
                    break
                if len(rec) != width:
                    raise EvaluationDataError(
                        f"{path.name} line {reader.line_num} has {len(rec)} fields; the header has {width}"
                    )
                chunk.append([rec[c].strip() for c in cols])
                rows += 1
                if len(chunk) == _CHUNK:
                    chunks.append(_to_float(chunk))
                    chunk = []
            if chunk:
                chunks.append(_to_float(chunk))
    except OSError as exc:
        raise EvaluationDataError(f"cannot read {path.name}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise EvaluationDataError(f"{path.name} is not a readable UTF-8 CSV file: {exc}") from None
    if not chunks:
        raise EvaluationDataError(f"{path.name} has a header but no rows")
    return present, np.concatenate(chunks)


def load_reference(model_dir: Path, manifest: ServingManifest) -> list[Feature] | None:
    """The reference of every numeric input, or None when the manifest names no evaluation data.

    Raises :class:`EvaluationDataError` when the data is named but cannot be used (missing file, no
    usable column); the caller then serves without feature metrics.
    """
    if manifest.evaluation_data is None:
        return None
    numeric = [(i, c.name) for i, c in enumerate(manifest.inputs) if c.type in NUMERIC_TYPES][:MAX_FEATURES]
    if not numeric:
        raise EvaluationDataError("the signature has no numeric inputs")
    try:
        path = resolve_inside(model_dir, manifest.evaluation_data, "evaluation.data")
    except ManifestError as exc:
        raise EvaluationDataError(str(exc)) from None
    if not path.is_file():
        raise EvaluationDataError(f"evaluation data {manifest.evaluation_data!r:.80} is not a file")
    present, data = _read_columns(path, [name for _, name in numeric])
    index = {name: i for i, name in numeric}
    features: list[Feature] = []
    for j, name in enumerate(present):
        column = np.ascontiguousarray(data[:, j])
        ref = reference_from_column(column)
        if ref is not None:
            features.append(Feature(name, index[name], ref[0], ref[1], int(np.isfinite(column).sum())))
    if not features:
        raise EvaluationDataError("no numeric input column of the evaluation data holds a number")
    return features


class FeatureHistograms:
    """Live counts of every feature's values per reference bucket, updated once per predicted batch.

    All features' buckets live in one flat array (``width = max bounds + 1`` slots per feature, the last
    used slot being ``+Inf``). A value's bucket is ``np.searchsorted(bounds, value, side="left")``: the
    number of bounds below it, so a value equal to a bound counts in that bound's bucket, as Prometheus'
    ``le`` means. Large batches are counted with one ``np.searchsorted`` + ``np.bincount`` per feature;
    below :data:`SMALL_BATCH` rows the per-call overhead of that (about 4 µs × features) would dominate,
    so the same bucket index is computed for all features at once by comparing against the bounds padded
    with +inf (at most 9 vectorised comparisons). Both give identical counts (tests check it).
    """

    SMALL_BATCH = 256

    def __init__(self, features: list[Feature]) -> None:
        self.features = tuple(features)
        n = len(features)
        self.width = max(len(f.bounds) for f in features) + 1
        self._columns = np.array([f.index for f in features], dtype=np.intp)
        self._bounds = [np.array(f.bounds, dtype=np.float64) for f in features]
        self._padded = np.full((n, self.width - 1), np.inf)
        for j, f in enumerate(features):
            self._padded[j, : len(f.bounds)] = f.bounds
        self._offsets = np.arange(n, dtype=np.intp) * self.width
        self._lock = threading.Lock()
        self._buckets = np.zeros(n * self.width, dtype=np.int64)
        self._sums = np.zeros(n, dtype=np.float64)
        self._missing = np.zeros(n, dtype=np.int64)

    def take(self, batch: npt.NDArray[Any]) -> npt.NDArray[np.float64] | None:
        """This batch's feature columns (a copy, rows × features, float64): take it before predict, so a
        model that changes its input in place does not change what is counted."""
        if batch.ndim != 2 or batch.shape[0] == 0 or batch.shape[1] <= int(self._columns.max()):
            return None
        values = batch[:, self._columns]
        return values if values.dtype == np.float64 else values.astype(np.float64)

    def count(self, values: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        """Bucket counts (flat, not cumulative) of a rows × features array; NaN values are not counted."""
        missing = np.isnan(values)
        size = self._buckets.size
        if values.shape[0] < self.SMALL_BATCH:
            index = np.zeros(values.shape, dtype=np.intp)
            padded = self._padded
            for k in range(padded.shape[1]):
                index += values > padded[:, k]
            return np.bincount((index + self._offsets)[~missing], minlength=size).astype(np.int64)
        out = np.zeros(size, dtype=np.int64)
        width = self.width
        for j, bounds in enumerate(self._bounds):
            column = values[:, j]
            column = column[~missing[:, j]]
            start = j * width
            out[start : start + bounds.size + 1] += np.bincount(
                np.searchsorted(bounds, column, side="left"), minlength=bounds.size + 1
            )
        return out

    def observe(self, values: npt.NDArray[np.float64] | None) -> None:
        """Count one predicted batch (from :meth:`take`)."""
        if values is None:
            return
        counts = self.count(values)
        missing = np.isnan(values)
        sums = np.where(missing, 0.0, values).sum(axis=0)
        nan_counts = missing.sum(axis=0)
        with self._lock:
            self._buckets += counts
            self._sums += sums
            self._missing += nan_counts

    def snapshot(self) -> tuple[list[list[int]], list[float], list[int]]:
        """Per feature: bucket counts (not cumulative, +Inf last), sum, and missing values: one consistent view."""
        with self._lock:
            buckets = self._buckets.copy()
            sums = self._sums.tolist()
            missing = self._missing.tolist()
        per: list[list[int]] = []
        for j, f in enumerate(self.features):
            start = j * self.width
            per.append(buckets[start : start + len(f.bounds) + 1].tolist())
        return per, sums, missing

    def render(self) -> list[str]:
        buckets, sums, missing = self.snapshot()
        out = [
            "# HELP modeltui_feature_value Live values of each numeric input, in buckets at the deciles of the "
            "evaluation data.",
            "# TYPE modeltui_feature_value histogram",
        ]
        labels = [f'feature="{escape(f.name)}"' for f in self.features]
        for f, lab, counts, total in zip(self.features, labels, buckets, sums, strict=True):
            out.extend(render_histogram("modeltui_feature_value", lab, f.bounds, counts[:-1], total, sum(counts)))
        out += [
            "# HELP modeltui_feature_reference_ratio Share of the evaluation data at or below each bucket bound "
            "(bound has the values of modeltui_feature_value's le).",
            "# TYPE modeltui_feature_reference_ratio gauge",
        ]
        for f, lab in zip(self.features, labels, strict=True):
            out.extend(_ratio_lines(f, lab))
        out += [
            "# HELP modeltui_feature_missing_total Live input values that were missing (null or NaN), per input.",
            "# TYPE modeltui_feature_missing_total counter",
        ]
        for lab, m in zip(labels, missing, strict=True):
            out.append(f"modeltui_feature_missing_total{{{lab}}} {m}")
        return out


def _ratio_lines(f: Feature, lab: str) -> Iterator[str]:
    for bound, ratio in zip(f.bounds, f.ratios, strict=True):
        yield f'modeltui_feature_reference_ratio{{{lab},bound="{fmt(bound)}"}} {fmt(ratio)}'
    yield f'modeltui_feature_reference_ratio{{{lab},bound="+Inf"}} 1'
