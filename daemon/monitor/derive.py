"""Derived metrics over a window, from stored samples. Pure functions: no I/O, no clock.

A series is a metric name and its labels; its samples are (t, value) pairs ordered by time. Counters are
turned into increases over the window (a value lower than the previous one means the target restarted, so
the new value is the increase since the restart, as Prometheus' ``increase`` assumes); gauges give their
last value. Everything else is computed from those increases:

- request rate = model requests (``/predict``, ``/invocations``) / window seconds; error rate = the share
  with status >= 500; client error rate = the share with 400 <= status < 500;
- latency p50/p95/p99 from ``modeltui_request_duration_seconds_bucket`` increases, with Prometheus'
  ``histogram_quantile`` semantics (linear interpolation inside the bucket that holds the rank);
- accuracy and per-class / macro precision, recall and F1 from ``modeltui_feedback_total{predicted,actual}``
  increases (a confusion matrix), matching scikit-learn with ``zero_division=0``;
- drift per feature: PSI and KS between ``modeltui_feature_value_bucket{feature,le}`` increases and the
  reference cumulative proportions ``modeltui_feature_reference_ratio{feature,bound}``, and its state:
  ``not_enough_data`` below :data:`MIN_DRIFT_OBSERVATIONS` live observations, else ``shifted`` past
  :data:`PSI_SHIFTED`, else ``ok``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

Labels = tuple[tuple[str, str], ...]
Key = tuple[str, Labels]  # (sample name, sorted labels)
Point = tuple[float, float]  # (t, value)

REQUESTS = "modeltui_requests_total"
DURATION_BUCKET = "modeltui_request_duration_seconds_bucket"
FEEDBACK = "modeltui_feedback_total"
FEATURE_BUCKET = "modeltui_feature_value_bucket"
FEATURE_REFERENCE = "modeltui_feature_reference_ratio"
UP = "up"

#: Sample names the scraper keeps; the rest of an exposition is ignored.
COUNTERS = frozenset({REQUESTS, DURATION_BUCKET, FEEDBACK, FEATURE_BUCKET})
GAUGES = frozenset({FEATURE_REFERENCE, UP})
KEPT = COUNTERS | GAUGES

#: The endpoints that carry model traffic; health checks, scrapes and feedback are not "requests".
MODEL_ENDPOINTS = frozenset({"/predict", "/invocations"})
QUANTILES = (0.5, 0.95, 0.99)
#: Floor for empty bins in PSI (a bin with no observations would make the logarithm infinite).
PSI_EPSILON = 1e-4
#: PSI above this: the feature's distribution has shifted (the usual rule of thumb).
PSI_SHIFTED = 0.2
#: Live observations of a feature (in the window, or in one step of a plot) below which its drift is not
#: judged. PSI of a small sample is large by chance alone: with the runtime's ten decile bins, a sample drawn
#: from the reference itself is past 0.2 for 44 % of samples of 50, 3 % of 100 and 0.01 % of 200 (PSI is
#: about χ²₉/n; its 99.9th percentile is 0.14 at 200), so at 200 a model with 30 unchanged features shows one
#: falsely SHIFTED about once in 300 windows instead of most of the time.
MIN_DRIFT_OBSERVATIONS = 200


def labels_of(mapping: Mapping[str, str]) -> Labels:
    return tuple(sorted(mapping.items()))


def counter_increase(points: Sequence[Point]) -> float:
    """The increase from the first sample (the base) to the last, across counter resets."""
    total = 0.0
    prev: float | None = None
    for _, v in points:
        if prev is not None:
            total += v - prev if v >= prev else v
        prev = v
    return total


@dataclass
class WindowData:
    """What a window holds: counter increases and the last value of each gauge."""

    counters: dict[Key, float] = field(default_factory=dict)
    gauges: dict[Key, float] = field(default_factory=dict)

    def add(self, other: WindowData) -> None:
        for k, v in other.counters.items():
            self.counters[k] = self.counters.get(k, 0.0) + v
        self.gauges.update(other.gauges)


def window_data(series: Mapping[Key, Sequence[Point]], start: float, end: float) -> WindowData:
    """Increases of counters whose later sample lies in ``(start, end]`` (each series' samples should include
    the last one at or before ``start`` as the base); gauges: the last value at or before ``end``."""
    return stepped_data(series, start, end, end - start).get(start, WindowData())


def stepped_data(
    series: Mapping[Key, Sequence[Point]], start: float, end: float, step: float
) -> dict[float, WindowData]:
    """Like :func:`window_data` for each step ``[start + i*step, start + (i+1)*step)`` of the window, keyed by
    the step's start. An increase belongs to the step of the later sample of its pair."""
    out: dict[float, WindowData] = {}
    if step <= 0 or end <= start:
        return out

    def bucket(t: float) -> WindowData:
        i = min(int((t - start) // step), max(0, math.ceil((end - start) / step) - 1))
        b = start + i * step
        got = out.get(b)
        if got is None:
            got = out[b] = WindowData()
        return got

    for key, points in series.items():
        if key[0] in GAUGES:
            last = [p for p in points if p[0] <= end]
            if last:
                t = max(last[-1][0], start + 1e-9)
                bucket(t).gauges[key] = last[-1][1]
            continue
        prev: float | None = None
        for t, v in points:
            if prev is not None and start < t <= end:
                inc = v - prev if v >= prev else v
                if inc:
                    data = bucket(t)
                    data.counters[key] = data.counters.get(key, 0.0) + inc
            prev = v
    return out


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """Prometheus' ``histogram_quantile`` over (upper bound, cumulative count) pairs; None without data.

    The rank ``q * total`` falls in the first bucket whose cumulative count reaches it; the result
    interpolates linearly between that bucket's lower and upper bound (the lowest bucket starts at 0). A
    rank in the +Inf bucket gives the highest finite bound. Counts are made monotonic first, as
    Prometheus does for buckets scraped at slightly different moments.
    """
    items = sorted(buckets)
    if len(items) < 2 or not math.isinf(items[-1][0]) or not 0 <= q <= 1:
        return None
    bounds = [b for b, _ in items]
    counts: list[float] = []
    running = 0.0
    for _, c in items:
        running = max(running, c)
        counts.append(running)
    total = counts[-1]
    if total <= 0:
        return None
    rank = q * total
    i = next(j for j, c in enumerate(counts) if c >= rank)
    if i == len(items) - 1:
        return bounds[-2]
    if i == 0 and bounds[0] <= 0:
        return bounds[0]
    lower = 0.0 if i == 0 else bounds[i - 1]
    below = 0.0 if i == 0 else counts[i - 1]
    in_bucket = counts[i] - below
    if in_bucket <= 0:
        return bounds[i]
    return lower + (bounds[i] - lower) * (rank - below) / in_bucket


def _le(value: str) -> float:
    return math.inf if value in ("+Inf", "Inf", "inf") else float(value)


@dataclass(frozen=True)
class ClassScores:
    precision: float
    recall: float
    f1: float
    support: float


@dataclass(frozen=True)
class Quality:
    """Classification quality from a confusion matrix (labelled predictions only)."""

    labelled: float
    accuracy: float
    precision: float  # macro
    recall: float
    f1: float
    per_class: dict[str, ClassScores]


def _div(a: float, b: float) -> float:
    return a / b if b else 0.0


def classification(confusion: Mapping[tuple[str, str], float]) -> Quality | None:
    """Accuracy and per-class + macro precision/recall/F1 from ``(predicted, actual) → count``.

    Classes are every label seen as predicted or actual (scikit-learn's default ``labels``); a ratio with a
    zero denominator is 0 (``zero_division=0``); macro is the unweighted mean over those classes.
    """
    counts = {k: v for k, v in confusion.items() if v > 0}
    total = sum(counts.values())
    if total <= 0:
        return None
    classes = sorted({p for p, _ in counts} | {a for _, a in counts})
    tp: dict[str, float] = defaultdict(float)
    predicted: dict[str, float] = defaultdict(float)
    actual: dict[str, float] = defaultdict(float)
    for (p, a), n in counts.items():
        predicted[p] += n
        actual[a] += n
        if p == a:
            tp[p] += n
    per_class: dict[str, ClassScores] = {}
    for c in classes:
        precision = _div(tp[c], predicted[c])
        recall = _div(tp[c], actual[c])
        f1 = _div(2 * tp[c], predicted[c] + actual[c])  # = 2PR/(P+R), and 0 where that is 0/0
        per_class[c] = ClassScores(precision, recall, f1, actual[c])
    n = len(classes)
    return Quality(
        labelled=total,
        accuracy=sum(tp.values()) / total,
        precision=sum(s.precision for s in per_class.values()) / n,
        recall=sum(s.recall for s in per_class.values()) / n,
        f1=sum(s.f1 for s in per_class.values()) / n,
        per_class=per_class,
    )


DriftState = Literal["ok", "shifted", "not_enough_data"]


@dataclass(frozen=True)
class Drift:
    psi: float
    ks: float
    count: float  # live observations in the window

    @property
    def judged(self) -> bool:
        """Enough observations for PSI and KS to say anything (:data:`MIN_DRIFT_OBSERVATIONS`)."""
        return self.count >= MIN_DRIFT_OBSERVATIONS

    @property
    def state(self) -> DriftState:
        if not self.judged:
            return "not_enough_data"
        return "shifted" if self.psi > PSI_SHIFTED else "ok"


def _proportions(cumulative: Sequence[float]) -> list[float]:
    out: list[float] = []
    prev = 0.0
    for c in cumulative:
        c = max(c, prev)
        out.append(c - prev)
        prev = c
    return out


def drift(live: Mapping[float, float], reference: Mapping[float, float]) -> Drift | None:
    """PSI and KS between a live cumulative histogram (``le`` → count) and reference cumulative proportions
    (``le`` → share at or below ``le``), on the bin edges both have (the reference gets +Inf = 1 if absent).

    PSI = Σ (aᵢ − eᵢ)·ln(aᵢ/eᵢ) over bins, shares floored at 1e-4; KS = max |A(le) − E(le)| over the edges
    (the Kolmogorov–Smirnov statistic of the binned distributions).
    """
    ref = dict(reference)
    ref.setdefault(math.inf, 1.0)
    edges = sorted(set(live) & set(ref))
    if not edges or not math.isinf(edges[-1]):
        return None
    total = live[math.inf]
    if total <= 0:
        return None
    live_cum = [live[e] / total for e in edges]
    ref_total = ref[math.inf] or 1.0
    ref_cum = [ref[e] / ref_total for e in edges]
    psi = 0.0
    for a, e in zip(_proportions(live_cum), _proportions(ref_cum), strict=True):
        a, e = max(a, PSI_EPSILON), max(e, PSI_EPSILON)
        psi += (a - e) * math.log(a / e)
    ks = max(abs(a - e) for a, e in zip(live_cum, ref_cum, strict=True))
    return Drift(psi=psi, ks=ks, count=total)


@dataclass(frozen=True)
class Summary:
    seconds: float
    requests: float
    request_rate: float
    error_rate: float | None
    client_error_rate: float | None
    latency: dict[float, float | None]
    quality: Quality | None
    drift: dict[str, Drift]


def summarize(data: WindowData, seconds: float) -> Summary:
    """Every derived metric of one window (``seconds`` long)."""
    requests = errors = client_errors = 0.0
    buckets: dict[float, float] = defaultdict(float)
    confusion: dict[tuple[str, str], float] = defaultdict(float)
    live: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for (metric, labels), inc in data.counters.items():
        lab = dict(labels)
        try:
            if metric == REQUESTS and lab.get("endpoint") in MODEL_ENDPOINTS:
                requests += inc
                status = int(lab.get("status", "0"))
                if status >= 500:
                    errors += inc
                elif status >= 400:
                    client_errors += inc
            elif metric == DURATION_BUCKET and lab.get("endpoint") in MODEL_ENDPOINTS:
                buckets[_le(lab["le"])] += inc
            elif metric == FEEDBACK and "predicted" in lab and "actual" in lab:
                confusion[(lab["predicted"], lab["actual"])] += inc
            elif metric == FEATURE_BUCKET and "feature" in lab:
                live[lab["feature"]][_le(lab["le"])] += inc
        except (KeyError, ValueError):  # a malformed label value: skip that series
            continue
    reference: dict[str, dict[float, float]] = defaultdict(dict)
    for (metric, labels), value in data.gauges.items():
        lab = dict(labels)
        # The runtime labels the reference's edges ``bound`` (Prometheus reserves ``le`` for histograms).
        edge = lab.get("bound", lab.get("le"))
        if metric == FEATURE_REFERENCE and "feature" in lab and edge is not None:
            try:
                reference[lab["feature"]][_le(edge)] = value
            except ValueError:
                continue
    drifts: dict[str, Drift] = {}
    for feature, hist in live.items():
        if feature in reference:
            got = drift(hist, reference[feature])
            if got is not None:
                drifts[feature] = got
    return Summary(
        seconds=seconds,
        requests=requests,
        request_rate=requests / seconds if seconds > 0 else 0.0,
        error_rate=errors / requests if requests else None,
        client_error_rate=client_errors / requests if requests else None,
        latency={q: histogram_quantile(q, buckets.items()) for q in QUANTILES},
        quality=classification(confusion),
        drift=drifts,
    )
