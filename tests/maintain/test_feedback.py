"""Labelled feedback as maintenance data, below the daemon: the store (rows and cursor together, the newest
kept), the validation of what a runtime answers, the CSV files a run trains on, and the policy's checks."""

from __future__ import annotations

import csv
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from daemon.maintain import feedback as fb
from daemon.maintain import policy as pol
from daemon.maintain.engine import RunStore
from daemon.protocol.manifest import parse_manifest
from daemon.store import migrations
from daemon.store.engine import make_engine

SOURCE = fb.Source("bc", 1, "http://127.0.0.1:1")


def page(instance: str, first_seq: int, count: int, columns: tuple[str, ...] = ("a", "b")) -> fb.Page:
    rows = [(s, 1000.0 + s, [float(s), None], s % 2) for s in range(first_seq, first_seq + count)]
    return fb.Page(instance=instance, columns=list(columns), rows=rows, first=1, last=first_seq + count - 1)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunStore]:
    engine = make_engine(tmp_path)
    migrations.migrate(engine)
    engine.dispose()
    s = RunStore(tmp_path)
    yield s
    s.close()


def test_rows_and_cursor_are_stored_together_and_read_back_oldest_first(store: RunStore) -> None:
    assert store.feedback_cursor("bc") is None
    store.add_feedback("m", SOURCE, page("p1", 1, 3))
    assert store.feedback_cursor("bc") == ("p1", 3)
    got = store.feedback("m", 10)
    assert [(x.at, x.inputs, x.label) for x in got] == [
        (1001.0, {"a": 1.0, "b": None}, 1),
        (1002.0, {"a": 2.0, "b": None}, 0),
        (1003.0, {"a": 3.0, "b": None}, 1),
    ]
    assert type(got[0].label) is int  # a JSON 1 comes back as the number it was
    assert [x.inputs["a"] for x in store.feedback("m", 2)] == [2.0, 3.0]  # the newest two
    assert store.feedback("other", 10) == []


def test_only_the_newest_rows_are_kept(store: RunStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fb, "KEEP_ROWS", 5)
    store.add_feedback("m", SOURCE, page("p1", 1, 4))
    store.add_feedback("m", SOURCE, page("p1", 5, 4))
    assert [x.inputs["a"] for x in store.feedback("m", 100)] == [4.0, 5.0, 6.0, 7.0, 8.0]
    assert store.feedback_cursor("bc") == ("p1", 8)


class _Runtime(BaseHTTPRequestHandler):
    answer: bytes = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.answer)))
        self.end_headers()
        self.wfile.write(self.answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def runtime() -> Iterator[tuple[fb.Source, type[_Runtime]]]:
    handler = type("Handler", (_Runtime,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fb.Source("bc", 1, f"http://127.0.0.1:{server.server_address[1]}"), handler
    server.shutdown()
    server.server_close()


def test_a_runtimes_page_is_read(runtime: tuple[fb.Source, type[_Runtime]]) -> None:
    source, handler = runtime
    handler.answer = json.dumps(
        {"instance": "abc", "columns": ["a"], "rows": [[1, 5.5, [2.0], "x"]], "first": 1, "last": 1}
    ).encode()
    got = fb.fetch(source, 0)
    assert (got.instance, got.rows) == ("abc", [(1, 5.5, [2.0], "x")])


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"not json", "malformed"),
        (
            b'{"instance": "abc", "columns": ["a"], "rows": [[1, 5.5, {"a": 1}, "x"]], "first": 1, "last": 1}',
            "malformed",
        ),
        (b'{"instance": "", "columns": [], "rows": [], "first": 1, "last": 0}', "malformed"),
        (
            b'{"instance": "abc", "columns": ["a"], "rows": [[1, 5.5, [1, 2], "x"]], "first": 1, "last": 1}',
            "2 inputs, not 1",
        ),
    ],
)
def test_a_malformed_page_is_refused(runtime: tuple[fb.Source, type[_Runtime]], answer: bytes, message: str) -> None:
    source, handler = runtime
    handler.answer = answer
    with pytest.raises(ValueError, match=message):
        fb.fetch(source, 0)


def test_csv_files_hold_the_signature_columns_then_the_target(tmp_path: Path) -> None:
    rows = [
        fb.Labelled(1.0, {"a": 1.5, "b": float("nan"), "extra": 9}, 1),
        fb.Labelled(2.0, {"a": None, "b": True}, "yes"),
    ]
    assert all(fb.complete(x, ["a", "b"]) for x in rows)
    assert not fb.complete(fb.Labelled(3.0, {"a": 1.0}, 1), ["a", "b"])  # made by another signature
    assert not fb.complete(fb.Labelled(3.0, {"a": 1.0, "b": 1.0}, None), ["a", "b"])
    path = tmp_path / "rows.csv"
    fb.write_csv(rows, ["b", "a"], fb.target_name(None, ["b", "a"]), path)
    with path.open(newline="") as fh:
        assert list(csv.reader(fh)) == [["b", "a", "label"], ["", "1.5", "1"], ["true", "", "yes"]]
    assert fb.target_name("label", ["label", "_label"]) == "__label"
    assert fb.target_name("target", ["a"]) == "target"


MANIFEST = """
name = "m"
flavor = "sklearn"
model_file = "model.skops"
[training]
command = "python train.py --data {data} --out {output}"
"""


@pytest.mark.parametrize(
    ("manifest", "overrides", "problem"),
    [
        (MANIFEST + '[signature]\ninputs = [{name = "a"}]\n', {"data": "feedback", "holdout": "feedback"}, None),
        (MANIFEST, {"data": "feedback", "holdout": "feedback"}, "needs the model's [signature] inputs"),
        (MANIFEST + '[signature]\ninputs = [{name = "a"}]\n', {"data": "feedback"}, "no holdout data"),
        (
            MANIFEST + '[signature]\ninputs = [{name = "a"}]\n',
            {"data": "feedback", "holdout": "feedback", "feedback_rows": 20, "feedback_min_rows": 30},
            "feedback_min_rows (30) exceeds feedback_rows (20)",
        ),
    ],
)
def test_feedback_policies_are_checked(manifest: str, overrides: dict[str, Any], problem: str | None) -> None:
    parsed = parse_manifest(manifest.encode())
    problems = pol.check_usable(pol.effective(parsed, overrides), parsed, {"model.skops"}, set())
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"holdout_fraction": 1.0}, "holdout_fraction"), ({"feedback_min_rows": 1}, "feedback_min_rows")],
)
def test_feedback_limits_out_of_range_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pol.effective(parse_manifest(MANIFEST.encode()), overrides)
