"""In-process checks of the pieces: schema validation, the id ledger, bounded metric labels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from daemon.serving.http import MAX_CHUNKS, _Chunks, _Reject
from daemon.serving.ledger import Ledger
from daemon.serving.manifest import Column
from daemon.serving.metrics import MAX_CLASSES, Metrics, feedback_key
from daemon.serving.schema import InputError, Schema

SCHEMA = Schema([Column("x", "double"), Column("n", "long"), Column("s", "string"), Column("f", "boolean")])


def test_rows_come_out_in_signature_order_and_converted() -> None:
    rows = SCHEMA.from_predict({"inputs": [{"s": "a", "f": True, "n": 2.0, "x": None}]})
    assert rows[0][1:] == [2, "a", True]
    assert math.isnan(rows[0][0])
    arr = SCHEMA.to_array(rows)
    assert arr.dtype == object
    assert arr.shape == (1, 4)
    doubles = Schema([Column("a", "double"), Column("b", "double")])
    arr = doubles.to_array(doubles.from_mlflow({"dataframe_split": {"columns": ["b", "a"], "data": [[1, 2.5]]}}))
    assert arr.dtype == np.float64
    assert arr.tolist() == [[2.5, 1.0]]


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"inputs": [[1.0, 2**63, "a", True]]}, "out of range for long"),
        ({"inputs": [[1.0, 1, "a", 1]]}, "column 'f': expected true or false, got 1"),
        ({"inputs": [[1e400, 1, "a", True]]}, "infinity"),
        ({"inputs": {"x": [1.0], "n": [1, 2], "s": ["a"], "f": [True]}}, "column 'n' has 2 values"),
        ({"inputs": [[[1.0], 1, "a", True]]}, "expected a number, got a list"),
    ],
)
def test_schema_errors_name_the_column(payload: object, needle: str) -> None:
    with pytest.raises(InputError) as err:
        SCHEMA.from_predict(payload)
    assert needle in err.value.message


def test_ledger_ids_are_consecutive_and_taken_once() -> None:
    ledger = Ledger(capacity=10)
    first = ledger.record(["a", "b", None])
    ids = ledger.ids(first, 3)
    assert [i[-12:] for i in ids] == ["000000000000", "000000000001", "000000000002"]
    assert ledger.take(ids[0]) == (True, "a")
    assert ledger.take(ids[0]) == (False, None)
    assert ledger.take(ids[2]) == (True, None)
    # Older than the ring: forgotten. A batch larger than the ring keeps its tail.
    ledger.record(["c"] * 25)
    assert ledger.take(ids[1]) == (False, None)
    assert ledger.take(ledger.make_id(ledger.next - 1)) == (True, "c")
    assert ledger.take("f" * 28) == (False, None)
    assert ledger.take(123) == (False, None)


def test_class_labels_are_bounded() -> None:
    m = Metrics("m", "1", "sklearn")
    labels = m.class_labels(list(range(MAX_CLASSES + 10)))
    assert labels[-1] == "other"
    assert len(m.classes) == MAX_CLASSES + 1
    assert m.class_labels([0.5, 1.5]) == [None, None]
    assert feedback_key(1.0) == "1"
    assert feedback_key(True) == "true"
    text = m.render().decode()
    assert 'modeltui_predictions_total{class="other"} 10' in text


def test_a_chunked_body_fed_in_small_reads_decodes_exactly_and_keeps_what_follows() -> None:
    chunks = [bytes([65 + i % 26]) * (i % 5 + 1) for i in range(2000)]
    wire = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\nX-Trailer: 1\r\n\r\nNEXT"
    decoder, buf, total = _Chunks(), b"", 0
    for i in range(0, len(wire), 7):  # the connection hands over whatever arrived, mid-line included
        buf, total = decoder.feed(buf + wire[i : i + 7], total, 1 << 24)
    assert decoder.done
    assert (decoder.body(), total, buf) == (b"".join(chunks), sum(map(len, chunks)), b"NEXT")


def test_a_body_of_too_many_tiny_chunks_is_refused_with_413() -> None:
    with pytest.raises(_Reject) as refused:
        _Chunks().feed(b"1\r\na\r\n" * (MAX_CHUNKS + 1), 0, 1 << 24)
    assert refused.value.status == 413
    assert "chunks" in refused.value.message
