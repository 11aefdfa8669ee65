"""Quantiles shared by both halves of bench/registry (imported from the script's own directory, so the MLflow
venv needs nothing of modeltui): one definition, so both sides' figures mean the same thing."""

from __future__ import annotations

import statistics


def pct(samples: list[float], q: float) -> float:
    """The q-quantile (0..1) of samples (seconds) in milliseconds, nearest-rank."""
    ordered = sorted(samples)
    k = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[k] * 1000.0


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": pct(samples, 0.50),
        "p95_ms": pct(samples, 0.95),
        "mean_ms": statistics.fmean(samples) * 1000.0,
        "n": len(samples),
    }
