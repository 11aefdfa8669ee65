"""Counters and histograms, rendered by hand in the Prometheus text format 0.0.4.

Label values come from a bounded set: at most ``MAX_CLASSES`` distinct classes per label, the rest are
counted as ``other``, so a regressor or a hostile feedback sender cannot grow the exposition without bound.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

MAX_CLASSES = 50
OTHER = "other"
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 10000)


class FeatureSource(Protocol):
    """Renders more metric families (the input-drift histograms of ``drift.py``)."""

    def render(self) -> list[str]: ...


def label_key(v: Any) -> str | None:
    """The label text of a class value, or None for values that are not classes (floats, lists)."""
    t = type(v)
    if t is int:
        return str(v)
    if t is str:
        return str(v)[:64]
    if t is bool:
        return "true" if v else "false"
    return None


def feedback_key(v: Any) -> str | None:
    """Like :func:`label_key`, but an integral float label (``1.0``) counts as the class ``1``."""
    if type(v) is float:
        return str(int(v)) if v.is_integer() else None
    return label_key(v)


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def fmt(v: float) -> str:
    if v == float("inf"):
        return "+Inf"
    if isinstance(v, int) or v.is_integer():
        return str(int(v))
    return repr(v)


class Bounded:
    """Maps values to at most ``limit`` distinct labels; later newcomers become ``other``."""

    def __init__(self, limit: int = MAX_CLASSES) -> None:
        self.limit = limit
        self.known: set[str] = set()

    def __call__(self, key: str) -> str:
        if key in self.known:
            return key
        if len(self.known) < self.limit:
            self.known.add(key)
            return key
        return OTHER


class Histogram:
    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, v: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, v)] += 1
        self.sum += v
        self.count += 1

    def render(self, name: str, labels: str) -> Iterable[str]:
        return render_histogram(name, labels, self.bounds, self.counts, self.sum, self.count)


def render_histogram(
    name: str, labels: str, bounds: Sequence[float], counts: Sequence[int], total: float, count: int
) -> Iterable[str]:
    """The ``_bucket``/``_sum``/``_count`` lines of one histogram; ``counts[i]`` is the number of values in
    ``(bounds[i-1], bounds[i]]`` (not cumulative), ``count`` all of them (the ``+Inf`` bucket)."""
    sep = "," if labels else ""
    cum = 0
    for bound, c in zip(bounds, counts, strict=False):
        cum += c
        yield f'{name}_bucket{{{labels}{sep}le="{fmt(bound)}"}} {cum}'
    yield f'{name}_bucket{{{labels}{sep}le="+Inf"}} {count}'
    braces = f"{{{labels}}}" if labels else ""
    yield f"{name}_sum{braces} {fmt(total)}"
    yield f"{name}_count{braces} {count}"


class Metrics:
    def __init__(self, name: str, version: str, flavor: str) -> None:
        self.info = (name, version, flavor)
        self.requests: Counter[tuple[str, int]] = Counter()
        self.durations: dict[str, Histogram] = {}
        self.batch = Histogram(BATCH_BUCKETS)
        self.predict_seconds = Histogram(DURATION_BUCKETS)
        self.classes: Counter[str] = Counter()
        self.feedback: Counter[tuple[str, str]] = Counter()
        self.feedback_unknown = 0
        self.feedback_unlabelled = 0
        self.predicted_label = Bounded()
        self.actual_label = Bounded()
        self._class_cache: dict[Any, str | None] = {}
        self.features: FeatureSource | None = None
        """Input-drift histograms (set once the evaluation data is read; None: no feature metrics)."""
        self.ready = False

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests[(endpoint, status)] += 1
        hist = self.durations.get(endpoint)
        if hist is None:
            hist = self.durations[endpoint] = Histogram(DURATION_BUCKETS)
        hist.observe(seconds)

    def class_labels(self, predictions: list[Any]) -> list[str | None]:
        """Count predictions by class; return each prediction's bounded class label (None: not a class)."""
        if not predictions or type(predictions[0]) is list:
            return [None] * len(predictions)
        cache = self._class_cache
        labels: list[str | None] = []
        append = labels.append
        for v in predictions:
            try:
                lab: str | None = cache[v]
            except (KeyError, TypeError):
                key = label_key(v)
                lab = None if key is None else self.predicted_label(key)
                if len(cache) < 4 * MAX_CLASSES and key is not None:
                    cache[v] = lab
            append(lab)
        self.classes.update(lab for lab in labels if lab is not None)
        return labels

    def render(self) -> bytes:
        name, version, flavor = self.info
        out: list[str] = [
            "# HELP modeltui_model_info The model version this runtime serves.",
            "# TYPE modeltui_model_info gauge",
            f'modeltui_model_info{{name="{escape(name)}",version="{escape(version)}",flavor="{flavor}"}} 1',
            "# HELP modeltui_model_ready 1 once the model is loaded and serving.",
            "# TYPE modeltui_model_ready gauge",
            f"modeltui_model_ready {int(self.ready)}",
            "# HELP modeltui_requests_total HTTP requests by endpoint and status code.",
            "# TYPE modeltui_requests_total counter",
        ]
        for (ep, status), c in sorted(self.requests.items()):
            out.append(f'modeltui_requests_total{{endpoint="{escape(ep)}",status="{status}"}} {c}')
        out += [
            "# HELP modeltui_request_duration_seconds Time from a complete request to its response.",
            "# TYPE modeltui_request_duration_seconds histogram",
        ]
        for ep, hist in sorted(self.durations.items()):
            out.extend(hist.render("modeltui_request_duration_seconds", f'endpoint="{escape(ep)}"'))
        out += [
            "# HELP modeltui_batch_size Rows per call of the model's predict.",
            "# TYPE modeltui_batch_size histogram",
            *self.batch.render("modeltui_batch_size", ""),
            "# HELP modeltui_predict_duration_seconds Time spent in the model's predict per batch.",
            "# TYPE modeltui_predict_duration_seconds histogram",
            *self.predict_seconds.render("modeltui_predict_duration_seconds", ""),
            "# HELP modeltui_predictions_total Predictions by predicted class (at most 50 classes, then other).",
            "# TYPE modeltui_predictions_total counter",
        ]
        for cls, c in sorted(self.classes.items()):
            out.append(f'modeltui_predictions_total{{class="{escape(cls)}"}} {c}')
        out += [
            "# HELP modeltui_feedback_total Ground-truth labels received, by predicted and actual class.",
            "# TYPE modeltui_feedback_total counter",
        ]
        for (pred, actual), c in sorted(self.feedback.items()):
            out.append(f'modeltui_feedback_total{{predicted="{escape(pred)}",actual="{escape(actual)}"}} {c}')
        out += [
            "# HELP modeltui_feedback_unknown_total Labels for prediction ids this runtime does not remember.",
            "# TYPE modeltui_feedback_unknown_total counter",
            f"modeltui_feedback_unknown_total {self.feedback_unknown}",
            "# HELP modeltui_feedback_unclassified_total Labels matched to predictions that are not classes.",
            "# TYPE modeltui_feedback_unclassified_total counter",
            f"modeltui_feedback_unclassified_total {self.feedback_unlabelled}",
        ]
        if self.features is not None:
            out.extend(self.features.render())
        return ("\n".join(out) + "\n").encode()
