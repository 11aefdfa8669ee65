"""Derived metrics: quality math against scikit-learn, histogram quantiles by hand, drift, counter resets."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from daemon.monitor import derive
from daemon.monitor.derive import (
    DURATION_BUCKET,
    FEATURE_BUCKET,
    FEATURE_REFERENCE,
    FEEDBACK,
    REQUESTS,
    WindowData,
    classification,
    counter_increase,
    histogram_quantile,
    labels_of,
    stepped_data,
    summarize,
    window_data,
)

EDGES = [-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, math.inf]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_quality_equals_scikit_learn(seed: int) -> None:
    rng = random.Random(seed)
    classes = ["a", "b", "c", "d"][: rng.randint(2, 4)]
    y_true = [rng.choice(classes) for _ in range(500)]
    # A model that is right about 70% of the time, and never predicts the last class (zero division).
    y_pred = [t if rng.random() < 0.7 else rng.choice(classes[:-1]) for t in y_true]
    confusion: dict[tuple[str, str], float] = {}
    for t, p in zip(y_true, y_pred, strict=True):
        confusion[(p, t)] = confusion.get((p, t), 0) + 1
    got = classification(confusion)
    assert got is not None
    labels = sorted(set(y_true) | set(y_pred))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=None, zero_division=0)
    mp, mr, mf, _ = precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=0)
    assert got.accuracy == pytest.approx(accuracy_score(y_true, y_pred))
    assert [got.per_class[c].precision for c in labels] == pytest.approx(list(p))
    assert [got.per_class[c].recall for c in labels] == pytest.approx(list(r))
    assert [got.per_class[c].f1 for c in labels] == pytest.approx(list(f))
    assert [got.per_class[c].support for c in labels] == pytest.approx(list(s))
    assert (got.precision, got.recall, got.f1) == pytest.approx((mp, mr, mf))
    assert got.labelled == 500


def test_quality_from_counter_deltas_across_a_reset() -> None:
    """Feedback counters scraped over time (with a restart) give the same scores as the labels sent."""
    rng = random.Random(7)
    y_true = [rng.choice("xy") for _ in range(200)]
    y_pred = [t if rng.random() < 0.8 else rng.choice("xy") for t in y_true]
    series: dict[derive.Key, list[derive.Point]] = {}
    # The first 120 labels arrive before a restart, the rest after it; the counters are scraped every 10.
    for key in {(p, t) for p, t in zip(y_pred, y_true, strict=True)}:
        series[(FEEDBACK, labels_of({"predicted": key[0], "actual": key[1]}))] = [(0.0, 0.0)]
    counts: dict[tuple[str, str], int] = {}
    for i, (p, t) in enumerate(zip(y_pred, y_true, strict=True)):
        if i == 120:
            counts = {}
            for pts in series.values():
                pts.append((float(i) + 0.5, 0.0))
        counts[(p, t)] = counts.get((p, t), 0) + 1
        if i % 10 == 9:
            for (pp, tt), n in counts.items():
                series[(FEEDBACK, labels_of({"predicted": pp, "actual": tt}))].append((float(i + 1), float(n)))
    got = summarize(window_data(series, 0.0, 1000.0), 1000.0).quality
    assert got is not None
    assert got.accuracy == pytest.approx(accuracy_score(y_true, y_pred))
    _, _, mf, _ = precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=0)
    assert got.f1 == pytest.approx(mf)


def test_counter_reset() -> None:
    assert counter_increase([(0, 10), (1, 15), (2, 3), (3, 7)]) == 5 + 3 + 4
    assert counter_increase([(0, 5)]) == 0
    assert counter_increase([(0, 5), (1, 5)]) == 0
    # Only pairs whose later sample is inside the window count; the base sits before it.
    pts = [(0.0, 100.0), (10.0, 110.0), (20.0, 2.0), (30.0, 12.0)]
    data = window_data({(REQUESTS, labels_of({"endpoint": "/predict", "status": "200"})): pts}, 5.0, 30.0)
    assert list(data.counters.values()) == [10 + 2 + 10]


def test_histogram_quantile_by_hand() -> None:
    # 10 at or below 0.1, 30 more up to 0.2, 10 more up to 0.5, none beyond.
    buckets = [(0.1, 10.0), (0.2, 40.0), (0.5, 50.0), (math.inf, 50.0)]
    # p50: rank 25 lies in (0.1, 0.2] holding 30 → 0.1 + 0.1 * (25 - 10) / 30
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1 + 0.1 * 15 / 30)
    # p95: rank 47.5 in (0.2, 0.5] holding 10 → 0.2 + 0.3 * 7.5 / 10
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.2 + 0.3 * 0.75)
    # p10: rank 5 in the first bucket, which starts at 0 → 0.1 * 5 / 10
    assert histogram_quantile(0.1, buckets) == pytest.approx(0.05)
    # A rank in +Inf gives the highest finite bound.
    assert histogram_quantile(0.99, [(0.1, 1.0), (math.inf, 100.0)]) == pytest.approx(0.1)
    assert histogram_quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]) is None
    assert histogram_quantile(0.5, [(0.1, 3.0)]) is None  # no +Inf bucket


def test_latency_and_rates_from_counter_deltas() -> None:
    def key(metric: str, **labels: str) -> derive.Key:
        return (metric, labels_of(labels))

    counters = {
        key(REQUESTS, endpoint="/predict", status="200"): 90.0,
        key(REQUESTS, endpoint="/invocations", status="500"): 6.0,
        key(REQUESTS, endpoint="/predict", status="422"): 4.0,
        key(REQUESTS, endpoint="/health", status="200"): 1000.0,  # not model traffic
        key(DURATION_BUCKET, endpoint="/predict", le="0.001"): 50.0,
        key(DURATION_BUCKET, endpoint="/predict", le="0.01"): 90.0,
        key(DURATION_BUCKET, endpoint="/predict", le="+Inf"): 94.0,
        key(DURATION_BUCKET, endpoint="/invocations", le="0.001"): 0.0,
        key(DURATION_BUCKET, endpoint="/invocations", le="0.01"): 6.0,
        key(DURATION_BUCKET, endpoint="/invocations", le="+Inf"): 6.0,
        key(DURATION_BUCKET, endpoint="/health", le="+Inf"): 1000.0,
    }
    s = summarize(WindowData(counters=counters), 50.0)
    assert s.requests == 100
    assert s.request_rate == pytest.approx(2.0)
    assert s.error_rate == pytest.approx(0.06)
    assert s.client_error_rate == pytest.approx(0.04)
    # Summed over model endpoints: ≤1 ms 50, ≤10 ms 96, +Inf 100. p50: rank 50 → exactly 1 ms.
    assert s.latency[0.5] == pytest.approx(0.001)
    # p95: rank 95 in (0.001, 0.01] holding 46 → 0.001 + 0.009 * 45 / 46
    assert s.latency[0.95] == pytest.approx(0.001 + 0.009 * 45 / 46)
    assert s.latency[0.99] == pytest.approx(0.01)  # rank 99 in +Inf


def _feature_window(sample: np.ndarray, reference: np.ndarray) -> WindowData:
    """As the runtime exposes them: histogram buckets by ``le``, reference shares by ``bound``."""
    data = WindowData()
    finite = EDGES[:-1]
    for le in EDGES:
        text = "+Inf" if math.isinf(le) else repr(le)
        data.counters[(FEATURE_BUCKET, labels_of({"feature": "x", "le": text}))] = float(np.sum(sample <= le))
        ref_share = float(np.mean(reference <= le)) if le in finite else 1.0
        data.gauges[(FEATURE_REFERENCE, labels_of({"feature": "x", "bound": text}))] = ref_share
    return data


def test_drift_shifted_vs_unshifted() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(0.0, 1.0, 20_000)
    same = summarize(_feature_window(rng.normal(0.0, 1.0, 5_000), reference), 60).drift["x"]
    shifted = summarize(_feature_window(rng.normal(1.0, 1.0, 5_000), reference), 60).drift["x"]
    assert same.psi < 0.02
    assert same.ks < 0.03
    assert shifted.psi > 0.2
    assert shifted.ks > 0.3
    assert shifted.count == 5_000


def test_drift_needs_a_minimum_sample_before_it_claims_anything() -> None:
    """A sample drawn from the reference itself: small ones look shifted by chance (PSI past 0.2), so
    below the minimum the state is not_enough_data; from the minimum on such samples are ok."""
    rng = np.random.default_rng(1)
    reference = rng.normal(0.0, 1.0, 20_000)
    small = summarize(_feature_window(rng.normal(0.0, 1.0, 10), reference), 60).drift["x"]
    assert small.count == 10
    assert small.state == "not_enough_data"
    assert not small.judged
    judged = [
        summarize(_feature_window(rng.normal(0.0, 1.0, derive.MIN_DRIFT_OBSERVATIONS), reference), 60).drift["x"]
        for _ in range(20)
    ]
    assert {d.state for d in judged} == {"ok"}
    moved = summarize(_feature_window(rng.normal(1.0, 1.0, derive.MIN_DRIFT_OBSERVATIONS), reference), 60)
    assert moved.drift["x"].state == "shifted"


def test_drift_absent_without_reference_or_live_data() -> None:
    data = _feature_window(np.zeros(10), np.zeros(10))
    no_ref = WindowData(counters=data.counters)
    assert summarize(no_ref, 60).drift == {}
    empty = WindowData(counters=dict.fromkeys(data.counters, 0.0), gauges=data.gauges)
    assert summarize(empty, 60).drift == {}


def test_steps_partition_the_window() -> None:
    pts = [(0.0, 0.0), (30.0, 10.0), (70.0, 15.0), (130.0, 40.0), (170.0, 41.0)]
    k = (REQUESTS, labels_of({"endpoint": "/predict", "status": "200"}))
    steps = stepped_data({k: pts}, 0.0, 180.0, 60.0)
    assert {t: d.counters[k] for t, d in steps.items()} == {0.0: 10.0, 60.0: 5.0, 120.0: 26.0}
    assert sum(d.counters[k] for d in steps.values()) == window_data({k: pts}, 0.0, 180.0).counters[k]
