"""A deployment's HTTP endpoint as a client sees it: JSON posts, predictions, rows sent in batches."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import Any


def post(url: str, body: Any, ctype: str = "application/json") -> tuple[int, Any]:
    """POST ``body`` (bytes as they are, anything else as JSON): the status and the parsed answer."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": ctype}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def predictions(endpoint: str, xs: list[float]) -> list[float]:
    """The predictions for one-feature rows ``xs``."""
    status, body = post(endpoint + "/predict", {"inputs": [[x] for x in xs]})
    assert status == 200, body
    return body["predictions"]  # type: ignore[no-any-return]


def predict_ids(endpoint: str, rows: list[list[float]]) -> tuple[list[str], list[int]]:
    """The prediction ids (feedback refers to them) and the predictions for ``rows``."""
    status, body = post(endpoint + "/predict", {"inputs": rows})
    assert status == 200, body
    return body["ids"], body["predictions"]


def send_rows(endpoint: str, rows: list[list[float]]) -> None:
    """Predict ``rows`` in batches of 50 (enough traffic for the monitor's drift figures)."""
    for start in range(0, len(rows), 50):
        status, body = post(endpoint + "/predict", {"inputs": rows[start : start + 50]})
        assert status == 200, body


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
