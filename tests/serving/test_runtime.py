"""The serving runtime as a real process against a copy of examples/breast_cancer, over real HTTP."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio

from tests.helpers.example_data import eval_table
from tests.helpers.paths import EXAMPLE
from tests.helpers.prerequisites import need
from tests.helpers.prometheus import metric
from tests.helpers.serving import Serving, copy_example, send, write_python_model

pytestmark = pytest.mark.integration


COLUMNS, ROWS, TARGETS = eval_table(EXAMPLE)
EXPECTED: list[int] = sio.load(EXAMPLE / "model.skops").predict(np.array(ROWS)).tolist()


def test_predict_equals_the_models_own_predictions(example_server: Serving) -> None:
    status, out = example_server.json("POST", "/predict", {"inputs": ROWS})
    assert status == 200, out
    assert out["predictions"] == EXPECTED
    assert out["version"] == "breast-cancer:local"
    assert len(out["ids"]) == len(ROWS) == len(set(out["ids"]))
    # One row per request gives the same answer as the whole set in one request.
    conn = example_server.connect()
    try:
        for row, want in zip(ROWS[:20], EXPECTED[:20], strict=True):
            status, _, data = send(conn, "POST", "/predict", {"inputs": [dict(zip(COLUMNS, row, strict=True))]})
            assert status == 200
            assert json.loads(data)["predictions"] == [want]
    finally:
        conn.close()


def _invocation_bodies() -> dict[str, tuple[str, bytes]]:
    records = [dict(zip(COLUMNS, r, strict=True)) for r in ROWS]
    shuffled = list(reversed(COLUMNS))
    csv_lines = [",".join(f'"{c}"' for c in shuffled)] + [
        ",".join(repr(r[COLUMNS.index(c)]) for c in shuffled) for r in ROWS
    ]
    as_json = {
        "dataframe_split": {"dataframe_split": {"columns": COLUMNS, "data": ROWS}},
        "dataframe_split_reordered": {
            "dataframe_split": {"columns": shuffled, "data": [[r[COLUMNS.index(c)] for c in shuffled] for r in ROWS]}
        },
        "dataframe_records": {"dataframe_records": records},
        "instances_rows": {"instances": ROWS},
        "instances_records": {"instances": records},
        "inputs_columns": {"inputs": {c: [r[i] for r in ROWS] for i, c in enumerate(COLUMNS)}},
        "inputs_rows": {"inputs": ROWS},
    }
    bodies = {k: ("application/json", json.dumps(v).encode()) for k, v in as_json.items()}
    bodies["dataframe_split"] = ("application/json; charset=utf-8", bodies["dataframe_split"][1])
    bodies["csv"] = ("text/csv", ("\n".join(csv_lines) + "\n").encode())
    return bodies


@pytest.mark.parametrize("fmt", sorted(_invocation_bodies()))
def test_invocations_formats_match_predict(example_server: Serving, fmt: str) -> None:
    ctype, body = _invocation_bodies()[fmt]
    status, headers, data = example_server.request("POST", "/invocations", body, {"Content-Type": ctype})
    assert status == 200, data
    out = json.loads(data)
    assert out == {"predictions": EXPECTED}  # MLflow's response shape, nothing else
    ids = headers["x-prediction-ids"].split(",")
    assert len(ids) == len(ROWS) == len(set(ids))


def test_health_live_and_ping(example_server: Serving) -> None:
    status, out = example_server.json("GET", "/health")
    assert status == 200
    assert out["status"] == "ok"
    assert out["ready"] is True
    assert out["version"] == "breast-cancer:local"
    assert example_server.request("GET", "/health/live")[0] == 200
    assert example_server.request("GET", "/ping")[0] == 200


def test_metrics_count_requests_and_classes(example_server: Serving) -> None:
    before = example_server.metrics()
    n = 25
    conn = example_server.connect()
    try:
        for i in range(n):
            assert send(conn, "POST", "/predict", {"inputs": [ROWS[i]]})[0] == 200
        assert send(conn, "POST", "/predict", {"inputs": [[1.0]]})[0] == 422
    finally:
        conn.close()
    after = example_server.metrics()

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("modeltui_requests_total", endpoint="/predict", status="200") == n
    assert delta("modeltui_requests_total", endpoint="/predict", status="422") == 1
    assert delta("modeltui_request_duration_seconds_count", endpoint="/predict") == n + 1
    for cls in (0, 1):
        assert delta("modeltui_predictions_total", **{"class": str(cls)}) == EXPECTED[:n].count(cls)
    assert delta("modeltui_batch_size_sum") == n
    assert metric(after, "modeltui_model_ready") == 1
    assert 'modeltui_batch_size_bucket{le="+Inf"}' in after
    assert "# TYPE modeltui_request_duration_seconds histogram" in after


def test_promtool_accepts_the_exposition(example_server: Serving) -> None:
    promtool = shutil.which("promtool")
    need(promtool is not None, "promtool (Debian's prometheus package; scripts/test.sh installs it as root)")
    assert promtool is not None
    text = example_server.metrics().encode()
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_feedback_builds_a_confusion_matrix(example_server: Serving) -> None:
    before = example_server.metrics()
    status, out = example_server.json("POST", "/predict", {"inputs": ROWS[:40]})
    assert status == 200
    ids, preds = out["ids"], out["predictions"]
    truth = TARGETS[:40]
    # One item alone, then a batch with the rest, an unknown id, and a repeat of the first.
    status, res = example_server.json("POST", "/feedback", {"id": ids[0], "label": truth[0]})
    assert (status, res) == (200, {"matched": 1, "unknown": 0})
    items = [{"id": i, "label": float(t)} for i, t in zip(ids[1:], truth[1:], strict=True)]
    items += [{"id": "0" * 28, "label": 1}, {"id": ids[0], "label": truth[0]}]
    status, res = example_server.json("POST", "/feedback", {"items": items})
    assert (status, res) == (200, {"matched": 39, "unknown": 2})
    after = example_server.metrics()
    for p in (0, 1):
        for a in (0, 1):
            want = sum(1 for x, y in zip(preds, truth, strict=True) if (x, y) == (p, a))
            got = metric(after, "modeltui_feedback_total", predicted=str(p), actual=str(a)) - metric(
                before, "modeltui_feedback_total", predicted=str(p), actual=str(a)
            )
            assert got == want, (p, a)
    assert metric(after, "modeltui_feedback_unknown_total") - metric(before, "modeltui_feedback_unknown_total") == 2


def test_feedback_with_a_label_the_classifier_cannot_predict_is_refused_whole(example_server: Serving) -> None:
    status, out = example_server.json("POST", "/predict", {"inputs": ROWS[:2]})
    assert status == 200
    before = example_server.metrics()
    items = [{"id": out["ids"][0], "label": 1}, {"id": out["ids"][1], "label": "malignant"}]
    status, res = example_server.json("POST", "/feedback", {"items": items})
    assert status == 422
    assert "item 1: label 'malignant' is not one of the model's classes (0, 1)" in res["message"]
    assert example_server.metrics().count("modeltui_feedback_total{") == before.count("modeltui_feedback_total{")
    # Nothing was taken: both ids still accept a label of a real class ("1" and 1.0 name class 1).
    status, res = example_server.json("POST", "/feedback", {"items": [{"id": out["ids"][0], "label": "1"},
                                                                      {"id": out["ids"][1], "label": 1.0}]})
    assert (status, res) == (200, {"matched": 2, "unknown": 0})


def _bad_cases() -> list[tuple[str, str, bytes, str, int, str]]:
    row = ROWS[0]
    rec = dict(zip(COLUMNS, row, strict=True))
    missing = {k: v for k, v in rec.items() if k != "mean area"}
    extra = {**rec, "bogus": 1.0}
    j = "application/json"

    def b(v: Any) -> bytes:
        return json.dumps(v).encode()

    return [
        ("malformed-json", "/predict", b"{\"inputs\": [[1,2", j, 400, "malformed JSON"),
        ("not-an-object", "/predict", b("hello"), j, 400, "inputs"),
        ("no-inputs-key", "/predict", b({"rows": [row]}), j, 400, "inputs"),
        ("empty", "/predict", b({"inputs": []}), j, 422, "no rows"),
        ("missing-column", "/predict", b({"inputs": [missing]}), j, 422, "missing column 'mean area'"),
        ("extra-column", "/predict", b({"inputs": [extra]}), j, 422, "unexpected column 'bogus'"),
        ("string-for-double", "/predict", b({"inputs": [["x", *row[1:]]]}), j, 422,
         "row 0, column 'mean radius': expected a number, got string 'x'"),
        ("bool-for-double", "/predict", b({"inputs": [[*row[:29], True]]}), j, 422, "'worst fractal dimension'"),
        ("infinity", "/predict", b'{"inputs": [[Infinity' + b", 1.0" * 29 + b"]]}", j, 422, "infinity"),
        ("ragged", "/predict", b({"inputs": [row, row[:29]]}), j, 422, "row 1 has 29 values; expected 30"),
        ("row-not-a-list", "/predict", b({"inputs": [row, 5]}), j, 400, "row 1"),
        ("too-many-rows", "/predict", b({"inputs": [row] * 10_001}), j, 422, "the limit is 10000"),
        ("mlflow-two-formats", "/invocations", b({"instances": [row], "inputs": [row]}), j, 400, "exactly one of"),
        ("mlflow-no-format", "/invocations", b({"rows": [row]}), j, 400, "exactly one of"),
        ("mlflow-split-missing-column", "/invocations",
         b({"dataframe_split": {"columns": COLUMNS[:29], "data": [row[:29]]}}), j, 400, "worst fractal dimension"),
        ("mlflow-records-wrong-type", "/invocations",
         b({"dataframe_records": [{**rec, "mean texture": "high"}]}), j, 400, "column 'mean texture'"),
        ("mlflow-wrong-content-type", "/invocations", b({"inputs": [row]}), "text/plain", 415, "Content-Type"),
        ("csv-bad-number", "/invocations",
         (",".join(f'"{c}"' for c in COLUMNS) + "\n" + ",".join(["abc"] + [str(v) for v in row[1:]]) + "\n").encode(),
         "text/csv", 400, "row 0, column 'mean radius'"),
        ("feedback-malformed", "/feedback", b({"label": 1}), j, 400, "id"),
        ("feedback-bad-label", "/feedback", b({"id": "x", "label": [1]}), j, 422, "label"),
    ]


@pytest.mark.parametrize(("path", "body", "ctype", "status", "needle"),
                         [c[1:] for c in _bad_cases()], ids=[c[0] for c in _bad_cases()])
def test_bad_input_gets_4xx_and_the_server_keeps_serving(
    example_server: Serving, path: str, body: bytes, ctype: str, status: int, needle: str
) -> None:
    conn = example_server.connect()
    try:
        got, _, data = send(conn, "POST", path, body, {"Content-Type": ctype})
        assert got == status, data
        message = json.loads(data)["message"]
        assert needle in message
        # Same connection, next request: still served.
        got, _, data = send(conn, "POST", "/predict", {"inputs": [ROWS[0]]})
        assert (got, json.loads(data)["predictions"]) == (200, EXPECTED[:1])
    finally:
        conn.close()


def test_long_column_rejects_nan_and_bool(tmp_path: Path, serving_factory: Any) -> None:
    model = write_python_model(
        tmp_path / "m", "def predict(X):\n    return X[:, 0] * 2\n",
        inputs='{ name = "n", type = "long" }, { name = "s", type = "string" }',
    )
    s = serving_factory(model).start()
    status, out = s.json("POST", "/predict", {"inputs": [[3, "a"], [4.0, "b"]]})
    assert status == 200
    assert out["predictions"] == [6, 8]
    for bad, needle in (
        (b'{"inputs": [[NaN, "a"]]}', "NaN is not a valid long"),
        (b'{"inputs": [[true, "a"]]}', "expected an integer (long), got true"),
        (b'{"inputs": [[1.5, "a"]]}', "expected an integer (long), got 1.5"),
        (b'{"inputs": [[1, 2]]}', "column 's': expected a string, got 2"),
        (b'{"inputs": [[1, null]]}', "column 's': expected a string, got null"),
    ):
        status, out = s.json("POST", "/predict", bad, headers={"Content-Type": "application/json"})
        assert status == 422, out
        assert needle in out["message"], out


def _raw_status(resp: bytes) -> int:
    return int(resp.split(b" ", 2)[1]) if resp.startswith(b"HTTP/1.1 ") else -1


def test_protocol_errors(example_server: Serving) -> None:
    big = 17 * 1024 * 1024
    # Announced too large: refused before the body is read.
    resp = example_server.raw(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % big)
    assert _raw_status(resp) == 413
    assert b"the limit is 16777216" in resp
    # Actually sent: the client still reads the 413 (the server drains before closing).
    conn = example_server.connect()
    try:
        status, _, _ = send(conn, "POST", "/predict", b"[" + b" " * big + b"]", {"Content-Type": "application/json"})
        assert status == 413
    except (BrokenPipeError, ConnectionResetError):
        pytest.fail("the connection was reset before the 413 could be read")
    finally:
        conn.close()
    gzipped = b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
    assert _raw_status(example_server.raw(gzipped)) == 501
    assert _raw_status(example_server.raw(b"POST /predict HTTP/1.1\r\nHost: x\r\n\r\n")) == 411
    assert _raw_status(example_server.raw(b"GARBAGE\r\n\r\n")) == 400
    assert _raw_status(example_server.raw(b"GET / HTTP/2.0\r\n\r\n")) == 505
    huge_head = b"GET /health HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 70_000 + b"\r\n\r\n"
    assert _raw_status(example_server.raw(huge_head)) == 431
    assert example_server.request("GET", "/nope")[0] == 404
    status, headers, _ = example_server.request("GET", "/predict")
    assert (status, headers.get("allow")) == (405, "POST")
    assert example_server.request("DELETE", "/metrics")[0] == 405
    assert example_server.request("GET", "/health")[0] == 200


def test_keep_alive_and_pipelining(example_server: Serving) -> None:
    conn = example_server.connect()
    try:
        send(conn, "GET", "/health")
        sock = conn.sock
        for i in range(10):
            status, _, data = send(conn, "POST", "/predict", {"inputs": [ROWS[i]]})
            assert (status, json.loads(data)["predictions"]) == (200, [EXPECTED[i]])
        assert conn.sock is sock  # the same TCP connection throughout
    finally:
        conn.close()
    # Three requests in one write: three responses, in order; Connection: close ends it.
    bodies = [json.dumps({"inputs": [ROWS[i]]}).encode() for i in range(3)]
    payload = b"".join(
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n%s"
        % (len(b), b"Connection: close\r\n" if i == 2 else b"", b)
        for i, b in enumerate(bodies)
    )
    resp = example_server.raw(payload)
    parts = resp.split(b"HTTP/1.1 200 OK\r\n")
    assert len(parts) == 4, resp
    got = [json.loads(p.split(b"\r\n\r\n", 1)[1])["predictions"][0] for p in parts[1:]]
    assert got == EXPECTED[:3]
    # Expect: 100-continue is answered before the body is sent.
    with socket.create_connection(("127.0.0.1", example_server.port), timeout=10) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n"
                  % len(bodies[0]))
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(bodies[0])
        assert s.recv(65536).startswith(b"HTTP/1.1 200 OK")


def test_concurrent_requests_are_batched_and_all_correct(example_server: Serving) -> None:
    before = example_server.metrics()
    n = 64
    rounds = 5
    results: dict[int, list[Any]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", example_server.port, timeout=30)
        try:
            conn.connect()
            got = []
            for r in range(rounds):
                i = (k * rounds + r) % len(ROWS)
                barrier.wait(timeout=30)
                status, _, data = send(conn, "POST", "/predict", {"inputs": [ROWS[i]]})
                assert status == 200
                got.append((i, json.loads(data)["predictions"][0]))
            results[k] = got
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    assert len(results) == n
    for got in results.values():
        for i, pred in got:
            assert pred == EXPECTED[i]
    after = example_server.metrics()
    batches = metric(after, "modeltui_batch_size_count") - metric(before, "modeltui_batch_size_count")
    rows = metric(after, "modeltui_batch_size_sum") - metric(before, "modeltui_batch_size_sum")
    singles = metric(after, "modeltui_batch_size_bucket", le="1") - metric(before, "modeltui_batch_size_bucket", le="1")
    assert rows == n * rounds
    assert batches < rows  # some batches held more than one request
    assert singles < batches


GATED_MODEL = """
import pathlib, time

_gate = pathlib.Path(__file__).with_name("gate")
_deadline = time.monotonic() + 60
while not _gate.exists() and time.monotonic() < _deadline:  # loading takes until the test opens the gate
    time.sleep(0.02)


def predict(X):
    return [0] * len(X)
"""


def test_a_loading_model_answers_503_loading(tmp_path: Path, serving_factory: Any) -> None:
    model = write_python_model(tmp_path / "m", GATED_MODEL, inputs='{ name = "x", type = "double" }')
    s = serving_factory(model).start(ready=False)
    for path, body in (("/predict", {"inputs": [[1.0]]}), ("/invocations", {"inputs": [[1.0]]})):
        status, headers, data = s.request("POST", path, body)
        assert (status, json.loads(data)["error_code"]) == (503, "LOADING"), data
        assert headers["retry-after"] == "1"
    status, out = s.json("GET", "/health")
    assert (status, out["status"]) == (503, "loading")
    (model / "gate").touch()
    s.wait_ready()
    status, out = s.json("POST", "/predict", {"inputs": [[1.0]]})
    assert (status, out["predictions"]) == (200, [0])


def test_the_example_polled_from_its_start_is_loading_then_ready(tmp_path: Path, serving_factory: Any) -> None:
    """The issue's reproduction: the standalone runtime on the example, polled as soon as it listens."""
    s = serving_factory(copy_example(tmp_path / "example")).start(ready=False)
    seen: list[tuple[int, str]] = []
    body = {"dataframe_split": {"columns": COLUMNS, "data": ROWS[:1]}}
    for _ in range(3000):
        status, _, data = s.request("POST", "/invocations", body)
        if status == 200:
            break
        seen.append((status, json.loads(data)["error_code"]))
        time.sleep(0.01)
    assert status == 200
    assert all(answer == (503, "LOADING") for answer in seen), set(seen)


def test_a_declared_charset_is_honoured_never_guessed(example_server: Serving) -> None:
    utf16 = json.dumps({"inputs": [ROWS[0]]}).encode("utf-16")
    declared = {"Content-Type": "application/json; charset=utf-16"}
    for path in ("/predict", "/invocations", "/feedback"):
        status, _, data = example_server.request("POST", path, utf16, declared)
        assert status == 415, (path, data)
        assert "charset=utf-16" in json.loads(data)["message"]
        status, _, data = example_server.request("POST", path, utf16, {"Content-Type": "application/json"})
        assert status == 400, (path, data)
        assert "not UTF-8" in json.loads(data)["message"]
    latin = json.dumps({"inputs": [ROWS[0]]}).encode()
    status, _, _ = example_server.request("POST", "/predict", latin, {"Content-Type": "text/json; charset=latin-1"})
    assert status == 415
    bom = b"\xef\xbb\xbf" + latin  # a UTF-8 byte order mark is UTF-8 still
    status, _, _ = example_server.request("POST", "/predict", bom, {"Content-Type": "application/json; charset=utf-8"})
    assert status == 200


@pytest.mark.parametrize(
    "head",
    [
        b"GET /health HTTP/1.1\n\n",
        b"GET /health HTTP/1.1\nHost: x\n\n",
        b"GET /health HTTP/1.1\r\nHost: x\n\n",
        b"GET /health HTTP/1.1\r\nHost: x\nX-Other: y\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\rX-Other: y\r\n\r\n",
    ],
    ids=["request-line", "all-lines", "header-line", "inside-a-complete-head", "bare-cr"],
)
def test_a_bare_line_feed_is_refused_at_once(example_server: Serving, head: bytes) -> None:
    # The server must answer without waiting for more: the client reads for less than the 30 s request timeout.
    resp = example_server.raw(head, read_timeout=10)
    assert _raw_status(resp) == 400, resp
    assert b"CRLF" in resp
