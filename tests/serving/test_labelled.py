"""Labelled feedback rows: the ledger keeps the input rows, matched feedback captures them, GET /feedback/rows."""

from __future__ import annotations

import gc
import json
import math
import time
from pathlib import Path
from typing import Any

import pytest

from daemon.serving.labelled import LabelledRows
from daemon.serving.ledger import Ledger
from tests.helpers.example_data import eval_table
from tests.helpers.paths import EXAMPLE
from tests.helpers.prometheus import metric
from tests.helpers.serving import Serving, write_python_model

COLUMNS, ROWS, TARGETS = eval_table(EXAMPLE)

# ---- ledger -------------------------------------------------------------------------------------------


def _rows(first: int, n: int) -> list[list[Any]]:
    return [[float(first + i), f"r{first + i}"] for i in range(n)]


def test_claim_returns_the_input_row_once() -> None:
    ledger = Ledger(capacity=10)
    rows = _rows(0, 3)
    first = ledger.record(["a", "b", None], rows)
    ids = ledger.ids(first, 3)
    assert ledger.claim(ids[1]) == (True, "b", (1.0, "r1"))
    assert ledger.claim(ids[1]) == (False, None, None)
    assert ledger.take(ids[1]) == (False, None)
    assert ledger.claim(ids[2]) == (True, None, (2.0, "r2"))
    assert ledger.take(ids[0]) == (True, "a")
    # Held as tuples (untracked by the cyclic GC once it has seen them), not the request's lists.
    second = ledger.record(["c"], rows := _rows(3, 1))
    rows[0][0] = "changed"
    gc.collect()  # the inner tuples are untracked by the first collection, the outer one by the next
    gc.collect()
    assert not any(gc.is_tracked(batch) for batch in ledger._inputs if batch is not None)
    assert ledger.claim(ledger.make_id(second))[2] == (3.0, "r3")
    # A batch recorded without rows matches, without an input row.
    third = ledger.record(["d", "e"])
    assert ledger.claim(ledger.make_id(third + 1)) == (True, "e", None)
    assert ledger.claim("f" * 28) == (False, None, None)
    assert ledger.claim(7) == (False, None, None)
    assert ledger.claim(ledger.prefix + "zzzzzzzzzzzz") == (False, None, None)


def test_inputs_follow_the_ring_across_its_edge_and_are_evicted_with_it() -> None:
    cap = 10
    ledger = Ledger(capacity=cap)
    sizes = [3, 4, 2, 5, 1, 6, 3, 7, 2, 4, 9, 1]  # batches that straddle the ring's end, one near its size
    spans: list[tuple[int, int]] = []
    for n in sizes:
        first = ledger.next
        assert ledger.record([f"c{first + i}" for i in range(n)], _rows(first, n)) == first
        spans.append((first, n))
    total = ledger.next
    assert total == sum(sizes)
    # The last `cap` counters are known with their own row; everything older is gone.
    for n in range(total):
        hit, label, row = ledger.claim(ledger.make_id(n))
        if n >= total - cap:
            assert (hit, label, row) == (True, f"c{n}", (float(n), f"r{n}")), n
        else:
            assert (hit, label, row) == (False, None, None), n
    # Only the requests that still have a live id are referenced.
    live = [rows for rows in ledger._inputs[ledger._head :] if rows is not None]
    assert [len(r) for r in live] == [9, 1]
    assert all(rows is None for rows in ledger._inputs[: ledger._head])


def test_a_batch_larger_than_the_ring_keeps_its_tail_rows() -> None:
    ledger = Ledger(capacity=10)
    first = ledger.record(["x"] * 25, _rows(0, 25))
    assert ledger.claim(ledger.make_id(first + 14)) == (False, None, None)
    assert ledger.claim(ledger.make_id(first + 15)) == (True, "x", (15.0, "r15"))
    assert ledger.claim(ledger.make_id(first + 24)) == (True, "x", (24.0, "r24"))


def test_the_request_lists_are_compacted_and_lookups_stay_right() -> None:
    cap = 100
    ledger = Ledger(capacity=cap)
    for _ in range(5_000):  # one-row requests: many evictions and several compactions
        ledger.record(["k"], _rows(ledger.next, 1))
    assert len(ledger._inputs) <= 2 * 1024 + cap
    assert sum(rows is not None for rows in ledger._inputs) == cap
    for n in (ledger.next - cap, ledger.next - 50, ledger.next - 1):
        assert ledger.claim(ledger.make_id(n)) == (True, "k", (float(n), f"r{n}"))
    assert ledger.claim(ledger.make_id(ledger.next - cap - 1)) == (False, None, None)


# ---- the labelled buffer ------------------------------------------------------------------------------


def test_labelled_rows_page_after_a_seq_and_drop_the_oldest() -> None:
    buf = LabelledRows(capacity=5)
    assert (buf.first, buf.last, buf.page()) == (1, 0, [])
    for i in range(8):
        assert buf.add((float(i),), i % 2, now=1000.0 + i) == i + 1
    assert (buf.first, buf.last, len(buf)) == (4, 8, 5)
    seqs = [r[0] for r in buf.page()]
    assert seqs == [4, 5, 6, 7, 8]
    assert [r[0] for r in buf.page(after=5)] == [6, 7, 8]  # from the newer half
    assert [r[0] for r in buf.page(after=0, limit=2)] == [4, 5]
    assert [r[0] for r in buf.page(after=6, limit=1)] == [7]
    assert buf.page(after=8) == []
    assert buf.page(after=100) == []
    assert buf.page()[0] == (4, 1003.0, (3.0,), 1)
    nan = LabelledRows()
    nan.add((math.nan, 1, "s", math.inf), math.nan, now=5.0)
    assert LabelledRows.as_json(nan.page(), clean=True) == [[1, 5.0, [None, 1, "s", None], None]]


# ---- over HTTP ----------------------------------------------------------------------------------------




def _page(s: Serving, query: str = "") -> dict[str, Any]:
    status, out = s.json("GET", "/feedback/rows" + query)
    assert status == 200, out
    return out  # type: ignore[no-any-return]


@pytest.mark.integration
def test_feedback_captures_exactly_the_labelled_rows_in_order(example_server: Serving) -> None:
    start = _page(example_server)
    assert start["columns"] == COLUMNS
    assert len(start["instance"]) == 16
    cursor = start["last"]
    status, out = example_server.json("POST", "/predict", {"inputs": ROWS[:30]})
    assert status == 200
    ids = out["ids"]
    assert all(i.startswith(start["instance"]) for i in ids)
    # Labels for rows 25, 3, 17 (in that order), then 8 and an unknown id, then 3 again (already taken).
    t0 = time.time()
    status, res = example_server.json("POST", "/feedback", {"id": ids[25], "label": TARGETS[25]})
    assert res == {"matched": 1, "unknown": 0}
    items = [{"id": ids[3], "label": TARGETS[3]}, {"id": ids[17], "label": float(TARGETS[17])}]
    status, res = example_server.json("POST", "/feedback", {"items": items})
    assert res == {"matched": 2, "unknown": 0}
    items = [{"id": ids[8], "label": "1"}, {"id": "0" * 28, "label": 1}, {"id": ids[3], "label": 0}]
    status, res = example_server.json("POST", "/feedback", {"items": items})
    assert res == {"matched": 1, "unknown": 2}
    page = _page(example_server, f"?after={cursor}")
    assert page["last"] == cursor + 4
    assert page["first"] == 1
    got = page["rows"]
    assert [r[0] for r in got] == [cursor + 1, cursor + 2, cursor + 3, cursor + 4]
    assert [r[2] for r in got] == [ROWS[25], ROWS[3], ROWS[17], ROWS[8]]
    assert [r[3] for r in got] == [TARGETS[25], TARGETS[3], float(TARGETS[17]), "1"]  # labels as sent
    assert all(t0 - 1 <= r[1] <= time.time() + 1 for r in got)
    # Paging: after and limit.
    assert [r[0] for r in _page(example_server, f"?after={cursor}&limit=2")["rows"]] == [cursor + 1, cursor + 2]
    assert [r[0] for r in _page(example_server, f"?limit=1&after={cursor + 2}")["rows"]] == [cursor + 3]
    tail = _page(example_server, f"?after={cursor + 4}")
    assert (tail["rows"], tail["last"]) == ([], cursor + 4)
    everything = _page(example_server)["rows"]
    assert everything[-4:] == got
    assert [r[0] for r in everything] == list(range(1, cursor + 5))


@pytest.mark.integration
def test_unknown_ids_add_no_rows(example_server: Serving) -> None:
    before = _page(example_server)["last"]
    items = [{"id": "0" * 28, "label": 1}, {"id": _page(example_server)["instance"] + "f" * 12, "label": 0}]
    status, res = example_server.json("POST", "/feedback", {"items": items})
    assert (status, res) == (200, {"matched": 0, "unknown": 2})
    # A refused request (a label that is not a class) takes nothing and adds nothing either.
    status, out = example_server.json("POST", "/predict", {"inputs": ROWS[:1]})
    status, res = example_server.json("POST", "/feedback", {"id": out["ids"][0], "label": "malignant"})
    assert status == 422
    assert _page(example_server)["last"] == before


@pytest.mark.integration
def test_invocations_predictions_are_captured_too(example_server: Serving) -> None:
    cursor = _page(example_server)["last"]
    shuffled = list(reversed(COLUMNS))
    lines = [",".join(f'"{c}"' for c in shuffled)]
    lines += [",".join(repr(r[COLUMNS.index(c)]) for c in shuffled) for r in ROWS[:5]]
    body = ("\n".join(lines) + "\n").encode()
    status, headers, _ = example_server.request("POST", "/invocations", body, {"Content-Type": "text/csv"})
    assert status == 200
    csv_ids = headers["x-prediction-ids"].split(",")
    split = {"dataframe_split": {"columns": COLUMNS, "data": ROWS[5:8]}}
    status, headers, _ = example_server.request("POST", "/invocations", split)
    assert status == 200
    json_ids = headers["x-prediction-ids"].split(",")
    items = [{"id": csv_ids[4], "label": 0}, {"id": json_ids[1], "label": 1}, {"id": csv_ids[0], "label": 1}]
    status, res = example_server.json("POST", "/feedback", {"items": items})
    assert res == {"matched": 3, "unknown": 0}
    got = _page(example_server, f"?after={cursor}")["rows"]
    assert [(r[2], r[3]) for r in got] == [(ROWS[4], 0), (ROWS[6], 1), (ROWS[0], 1)]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("?after=-1", "after must be a non-negative integer"),
        ("?after=abc", "after must be a non-negative integer"),
        ("?after=", "after must be a non-negative integer"),
        ("?after", "after must be a non-negative integer"),
        ("?after=1.5", "after must be a non-negative integer"),
        ("?limit=0", "limit must be from 1 to 10000"),
        ("?limit=10001", "limit must be from 1 to 10000"),
        ("?limit=%31", "limit must be a non-negative integer"),
        ("?after=1&after=2", "after given twice"),
        ("?offset=3", "unknown query parameter 'offset'"),
        ("?after=" + "9" * 30, "after must be a non-negative integer"),
    ],
)
def test_bad_queries_get_400(example_server: Serving, query: str, needle: str) -> None:
    status, out = example_server.json("GET", "/feedback/rows" + query)
    assert status == 400, out
    assert needle in out["message"]


@pytest.mark.integration
def test_rows_route_methods_and_metrics(example_server: Serving) -> None:
    status, headers, _ = example_server.request("POST", "/feedback/rows", {"after": 0})
    assert status == 405
    assert headers["allow"] == "GET"
    assert _page(example_server, "?limit=10000&after=0")["columns"] == COLUMNS
    assert 'modeltui_requests_total{endpoint="/feedback/rows",status="200"}' in example_server.metrics()


@pytest.mark.integration
def test_missing_values_are_null_and_labels_are_kept_as_sent(tmp_path: Path, serving_factory: Any) -> None:
    model = write_python_model(
        tmp_path / "m",
        "def predict(X):\n    return [1.5 for _ in range(len(X))]\n",
        inputs='{ name = "a", type = "double" }, { name = "b", type = "double" }, { name = "s", type = "string" }',
    )
    s = serving_factory(model).start()
    status, out = s.json("POST", "/predict", {"inputs": [[None, 2.0, "x"], [1.0, 2.0, "y"]]})
    assert status == 200, out
    status, headers, _ = s.request("POST", "/invocations", b"s,b,a\nz,,3\n", {"Content-Type": "text/csv"})
    assert status == 200
    csv_id = headers["x-prediction-ids"]
    # A regressor (no classes): any label is accepted and kept as sent.
    items = [
        {"id": out["ids"][0], "label": 3.25},
        {"id": csv_id, "label": "high"},
        {"id": out["ids"][1], "label": True},
    ]
    status, res = s.json("POST", "/feedback", {"items": items})
    assert res == {"matched": 3, "unknown": 0}
    status, _, data = s.request("GET", "/feedback/rows")
    assert status == 200
    page = json.loads(data, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert page["columns"] == ["a", "b", "s"]
    assert (page["first"], page["last"]) == (1, 3)
    assert [(r[0], r[2], r[3]) for r in page["rows"]] == [
        (1, [None, 2.0, "x"], 3.25),
        (2, [3.0, None, "z"], "high"),
        (3, [1.0, 2.0, "y"], True),
    ]


@pytest.mark.integration
def test_rows_survive_only_as_long_as_the_process(tmp_path: Path, serving_factory: Any) -> None:
    model = write_python_model(
        tmp_path / "m", "def predict(X):\n    return [0] * len(X)\n", inputs='{ name = "a", type = "double" }'
    )
    s = serving_factory(model).start()
    empty = _page(s)
    assert (empty["rows"], empty["first"], empty["last"], empty["columns"]) == ([], 1, 0, ["a"])
    status, out = s.json("POST", "/predict", {"inputs": [[1.0]]})
    assert status == 200
    assert s.json("POST", "/feedback", {"id": out["ids"][0], "label": 0}) == (200, {"matched": 1, "unknown": 0})
    assert _page(s)["last"] == 1
    s.stop()
    s.start()
    again = _page(s)
    assert again["instance"] != empty["instance"]
    assert (again["rows"], again["first"], again["last"]) == ([], 1, 0)


@pytest.mark.integration
def test_no_feedback_inputs_keeps_no_rows_but_still_counts_the_labels(tmp_path: Path, serving_factory: Any) -> None:
    """``--no-feedback-inputs`` (``[deploy] feedback_inputs = false``): the memory is not spent, the
    confusion matrix still counts every label."""
    model = write_python_model(
        tmp_path / "m", "def predict(X):\n    return [0] * len(X)\n", inputs='{ name = "a", type = "double" }'
    )
    s = serving_factory(model).start("--no-feedback-inputs")
    status, out = s.json("POST", "/predict", {"inputs": [[1.0], [2.0]]})
    assert status == 200
    items = [{"id": i, "label": 0} for i in out["ids"]]
    assert s.json("POST", "/feedback", {"items": items}) == (200, {"matched": 2, "unknown": 0})
    page = _page(s)
    assert (page["rows"], page["last"]) == ([], 0)
    status, _, body = s.request("GET", "/metrics")
    assert metric(body.decode(), "modeltui_feedback_total", predicted="0", actual="0") == 2
