"""What ``modeltui predict`` prints: each row's prediction with the id ``modeltui feedback`` takes for it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import click

from ..format import printable

#: The runtime's id counter: the last 12 hex characters of an id (``daemon/serving/ledger.py``).
ID_COUNTER_DIGITS = 12


def prediction_ids(answer: Any, headers: Mapping[str, str]) -> list[str] | None:
    """The ids of a prediction answer's rows, for ``modeltui feedback``: ``/predict`` returns them in the body;
    ``/invocations`` (MLflow's shape) in ``X-Prediction-Ids``, or ``X-Prediction-Id-Range: FIRST/COUNT`` for
    large batches (consecutive ids). None when the runtime sent none."""
    if isinstance(answer, dict) and isinstance(answer.get("ids"), list):
        return [str(i) for i in answer["ids"]]
    headers = {k.lower(): v for k, v in headers.items()}  # HTTP header names are case-insensitive
    listed = headers.get("x-prediction-ids")
    if listed:
        return listed.split(",")
    first, sep, count = (headers.get("x-prediction-id-range") or "").partition("/")
    if sep and count.isdigit() and len(first) > ID_COUNTER_DIGITS:
        prefix, counter = first[:-ID_COUNTER_DIGITS], first[-ID_COUNTER_DIGITS:]
        try:
            start = int(counter, 16)
        except ValueError:
            return None
        return [f"{prefix}{n:0{ID_COUNTER_DIGITS}x}" for n in range(start, start + int(count))]
    return None


def print_prediction(answer: Any, headers: Mapping[str, str], as_json: bool) -> None:
    """``predict``'s output: the answer with its ``ids`` (``--json``), or one ``ID  PREDICTION`` line a row
    under an ``id  prediction`` header (plain text, so ``awk``/``cut`` can turn it into a feedback file)."""
    ids = prediction_ids(answer, headers)
    if as_json:
        if isinstance(answer, dict) and ids is not None:
            answer = {**answer, "ids": ids}
        click.echo(json.dumps(answer, indent=2))
        return
    predictions = answer.get("predictions") if isinstance(answer, dict) else None
    if not isinstance(predictions, list):
        click.echo(json.dumps(answer, indent=2))  # not a shape we know: show it as it is
        return
    if ids is None or len(ids) != len(predictions):
        ids = ["-"] * len(predictions)
    ids = [printable(i) for i in ids]
    width = max([len("id"), *map(len, ids)])
    click.echo(f"{'id':<{width}}  prediction")
    for pid, value in zip(ids, predictions, strict=True):
        shown = value if isinstance(value, str) else json.dumps(value)
        click.echo(f"{pid:<{width}}  {printable(shown)}")
