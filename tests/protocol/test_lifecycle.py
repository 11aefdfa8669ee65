"""The files beside the socket that tell a client about a daemon that does not answer, and predict's ids."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from daemon.protocol import lifecycle
from modeltui.cli.predictions import prediction_ids

TRACEBACK = """\
Traceback (most recent call last):
  File "x.py", line 1, in <module>
    open_db()
sqlite3.OperationalError: unable to open database file

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "daemon/app.py", line 9, in startup
    raise ProtocolError(...)
daemon.protocol.errors.ProtocolError: UNAVAILABLE: cannot open the registry database
(Background on this error at: https://sqlalche.me/e/21/e3q8)
"""


def test_the_error_line_is_the_last_tracebacks_exception_not_its_trailing_notes() -> None:
    assert lifecycle.error_line(TRACEBACK) == (
        "daemon.protocol.errors.ProtocolError: UNAVAILABLE: cannot open the registry database"
    )
    assert lifecycle.error_line("modeltuid: configuration error: bad\n\n") == "modeltuid: configuration error: bad"
    assert lifecycle.error_line("") == ""
    assert lifecycle.exception_line(RuntimeError("first\nsecond")) == "RuntimeError: first"


def test_record_round_trip_and_unreadable_records(tmp_path: Path) -> None:
    sock = tmp_path / "d.sock"
    assert lifecycle.read_record(sock) is None
    rec = lifecycle.LastRun(pid=12, state="crashed", started_at=datetime.now(UTC), reason="OSError: x")
    lifecycle.write_record(sock, rec)
    assert lifecycle.read_record(sock) == rec
    lifecycle.record_path(sock).write_text("{not json")
    assert lifecycle.read_record(sock) is None


def test_prediction_ids_from_the_body_the_header_or_a_range() -> None:
    assert prediction_ids({"predictions": [1], "ids": ["a"]}, {}) == ["a"]
    assert prediction_ids({"predictions": [1, 0]}, {"X-Prediction-Ids": "p1,p2"}) == ["p1", "p2"]
    assert prediction_ids({"predictions": [1, 0]}, {"x-prediction-ids": "p1,p2"}) == ["p1", "p2"]  # any case
    first = "0123456789abcdef" + "00000000000e"
    got = prediction_ids({"predictions": [0] * 3}, {"X-Prediction-Id-Range": f"{first}/3"})
    assert got == ["0123456789abcdef00000000000e", "0123456789abcdef00000000000f", "0123456789abcdef000000000010"]
    assert prediction_ids({"predictions": [0]}, {}) is None
