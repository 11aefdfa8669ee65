"""``POST /invocations`` against MLflow's scoring protocol, payload by payload, on a real runtime over HTTP.

Each case is a payload shape from MLflow's scoring server (``mlflow/pyfunc/scoring_server``), its client
(``ScoringServerClient``, ``dump_input_data``) or pandas' own writers, with the status MLflow 3.17.2's
``mlflow models serve`` gave for it on the same model (a scikit-learn pipeline with the example's 30 double
inputs). Where the runtime answers otherwise on purpose, ``mlflow`` holds MLflow's status and ``doc`` a
phrase the "Differences from MLflow's scoring server" section of docs/deployments.md must contain.

With an MLflow venv (``bash bench/registry/setup_mlflow.sh``, ~50 s; ``MODELTUI_MLFLOW_PYTHON`` names its
python, which scripts/test.sh sets under CI), MLflow's own ``ScoringServerClient`` is run against the runtime
too, and a runtime started from that venv (which has pyarrow) reads Parquet; without it those two tests skip,
and under CI they fail.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio

from tests.helpers.paths import EXAMPLE, REPO
from tests.helpers.prerequisites import need
from tests.helpers.serving import Serving, send, write_python_model

pytestmark = pytest.mark.integration

DATA = Path(__file__).parent / "data"
DOCS = REPO / "docs" / "deployments.md"
MLFLOW_PYTHON = Path(os.environ.get("MODELTUI_MLFLOW_PYTHON", REPO / "bench/registry/.venv-mlflow/bin/python"))
J = "application/json"


def _example_rows(n: int) -> tuple[list[str], list[list[float]]]:
    with (EXAMPLE / "eval.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0][:30], [[float(v) for v in r[:30]] for r in rows[1 : n + 1]]


C, R = _example_rows(3)
REC = [dict(zip(C, r, strict=True)) for r in R]
EXPECTED: list[int] = sio.load(EXAMPLE / "model.skops").predict(np.array(R)).tolist()


def _split(columns: list[str], data: list[list[Any]]) -> dict[str, Any]:
    """pandas' ``df.to_dict(orient="split")``, which ScoringServerClient.invoke sends."""
    return {"index": list(range(len(data))), "columns": columns, "data": data}


def _with(i: int, column: str, value: Any) -> list[dict[str, Any]]:
    records = [dict(r) for r in REC]
    records[i][column] = value
    return records


def _csv(header: list[str], rows: list[list[Any]]) -> bytes:
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    return ("\n".join(lines) + "\n").encode()


@dataclass
class Case:
    name: str
    ctype: str
    body: Any
    status: int
    code: str = ""
    mlflow: int = 0
    """MLflow's status when the runtime's differs on purpose (0: the same)."""
    doc: str = ""

    def payload(self) -> bytes:
        return self.body if isinstance(self.body, bytes) else json.dumps(self.body).encode()


CASES = [
    # The four formats, as MLflow's client and docs write them.
    Case("dataframe_split", J, {"dataframe_split": _split(C, R)}, 200),
    Case("dataframe_split-no-index", J, {"dataframe_split": {"columns": C, "data": R}}, 200),
    Case("dataframe_records", J, {"dataframe_records": REC}, 200),
    Case("instances-records", J, {"instances": REC}, 200),
    Case("inputs-columns", J, {"inputs": {c: [r[i] for r in R] for i, c in enumerate(C)}}, 200),
    Case("inputs-one-row-object", J, {"inputs": REC[0]}, 200),
    Case("instances-positional-rows", J, {"instances": R}, 200, mlflow=400, doc="positional rows"),
    Case("inputs-positional-rows", J, {"inputs": R}, 200, mlflow=400, doc="positional rows"),
    # params beside the data (ScoringServerClient.invoke(df, params=...)): ignored by a model without them.
    Case("params", J, {"dataframe_split": _split(C, R), "params": {"alpha": 0.5}}, 200),
    Case("params-null", J, {"dataframe_split": _split(C, R), "params": None}, 200),
    Case("params-not-an-object", J, {"dataframe_split": _split(C, R), "params": [1]}, 400, "BAD_REQUEST",
         mlflow=200, doc="`params` must be an object"),
    Case("unknown-key", J, {"dataframe_split": _split(C, R), "parms": {}}, 400, "BAD_REQUEST",
         mlflow=200, doc="unknown top-level key"),
    # Columns the signature does not name are dropped.
    Case("extra-column-records", J, {"dataframe_records": [dict(r, id=7) for r in REC]}, 200),
    Case("extra-column-split", J, {"dataframe_split": _split([*C, "id"], [[*r, 7] for r in R])}, 200),
    Case("extra-column-unnamed-index", J, {"dataframe_split": _split(["Unnamed: 0", *C], [[i, *r] for i, r in
                                                                                         enumerate(R)])}, 200),
    Case("extra-column-inputs", J, {"inputs": dict({c: [r[i] for r in R] for i, c in enumerate(C)}, id=[1, 2, 3])},
         200),
    Case("extra-column-instances", J, {"instances": [dict(r, id="x") for r in REC]}, 200),
    # Numbers written as strings are converted; other strings are not numbers.
    Case("numeric-string", J, {"dataframe_records": _with(0, "mean radius", str(R[0][0]))}, 200),
    Case("integer-string", J, {"dataframe_records": _with(0, "mean radius", str(int(R[0][0])))}, 200),
    Case("numeric-string-split", J, {"dataframe_split": _split(C, [[str(R[0][0]), *R[0][1:]], *R[1:]])}, 200),
    Case("integer-number", J, {"dataframe_records": _with(0, "mean radius", int(R[0][0]))}, 200),
    Case("non-numeric-string", J, {"dataframe_records": _with(0, "mean radius", "abc")}, 400,
         "INVALID_PARAMETER_VALUE"),
    Case("boolean-for-double", J, {"dataframe_records": _with(0, "mean radius", True)}, 400,
         "INVALID_PARAMETER_VALUE", mlflow=200, doc="`true`/`false` in a number column"),
    Case("null-for-double", J, {"dataframe_records": _with(0, "mean radius", None)}, 400, "BAD_REQUEST"),
    # Shape and schema errors: 400, as MLflow answers them.
    Case("missing-column", J, {"dataframe_records": [{k: v for k, v in r.items() if k != "mean area"} for r in REC]},
         400, "INVALID_PARAMETER_VALUE"),
    Case("row-too-wide", J, {"inputs": [[*r, 1.0] for r in R]}, 400, "INVALID_PARAMETER_VALUE"),
    Case("no-rows", J, {"dataframe_records": []}, 400, "INVALID_PARAMETER_VALUE"),
    Case("no-rows-split", J, {"dataframe_split": {"columns": C, "data": []}}, 400, "INVALID_PARAMETER_VALUE"),
    Case("no-format", J, {"rows": R}, 400, "BAD_REQUEST"),
    Case("two-formats", J, {"inputs": R, "instances": R}, 400, "BAD_REQUEST"),
    Case("a-list", J, [R], 400, "BAD_REQUEST"),
    Case("malformed-json", J, b'{"inputs": [[1,2', 400, "BAD_REQUEST"),
    # CSV, including pandas' default df.to_csv() with its unnamed index column.
    Case("csv", "text/csv", _csv(C, R), 200),
    Case("csv-pandas-index", "text/csv", _csv(["", *C], [[i, *r] for i, r in enumerate(R)]), 200),
    Case("csv-quoted-number", "text/csv", _csv(C, [[f'"{R[0][0]}"', *R[0][1:]], *R[1:]]), 200),
    # Content types and charsets.
    Case("charset-utf-8", "application/json; charset=utf-8", {"dataframe_records": REC}, 200),
    Case("charset-UTF-8-quoted", 'application/json; charset="UTF-8"', {"dataframe_records": REC}, 200),
    Case("charset-utf8", "application/json; charset=utf8", {"dataframe_records": REC}, 200, mlflow=415,
         doc="`charset=utf8`"),
    Case("charset-utf-16", "application/json; charset=utf-16", json.dumps({"dataframe_records": REC}).encode("utf-16"),
         415),
    Case("csv-charset-utf-16", "text/csv; charset=utf-16", _csv(C, R).decode().encode("utf-16"), 415),
    Case("undeclared-utf-16", J, json.dumps({"dataframe_records": REC}).encode("utf-16"), 400, "BAD_REQUEST"),
    Case("mlflow-1-format-parameter", "application/json; format=pandas-split", {"dataframe_records": REC}, 415),
    Case("text-plain", "text/plain", {"dataframe_records": REC}, 415),
    Case("no-content-type", "", {"dataframe_records": REC}, 415, mlflow=500, doc="no `Content-Type`"),
    Case("parquet-not-parquet", "application/vnd.apache.parquet", b"PAR1 not parquet PAR1", 415, mlflow=400,
         doc="pyarrow"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_invocations_answer_as_mlflow_does(example_server: Serving, case: Case) -> None:
    headers = {"Content-Type": case.ctype} if case.ctype else {}
    status, _, data = example_server.request("POST", "/invocations", case.payload(), headers)
    assert status == case.status, data
    out = json.loads(data)
    if status == 200:
        n = 1 if case.name == "inputs-one-row-object" else len(R)
        assert out == {"predictions": EXPECTED[:n]}
    else:
        assert set(out) == {"error_code", "message"}
        if case.code:
            assert out["error_code"] == case.code, out


def test_every_difference_from_mlflow_is_documented() -> None:
    text = DOCS.read_text()
    section = text.split("### Differences from MLflow's scoring server", 1)
    assert len(section) == 2, "docs/deployments.md has no 'Differences from MLflow's scoring server' section"
    body = section[1].split("\n## ", 1)[0]
    for case in CASES:
        if case.mlflow:
            assert case.doc, f"{case.name} differs from MLflow: give the phrase that documents it"
            assert case.doc in body, f"{case.name}: {case.doc!r} is not in the section"


def test_version_answers_like_mlflow(example_server: Serving) -> None:
    from daemon import __version__
    from daemon.serving import VERSION

    assert __version__ == VERSION  # images hold the runtime without daemon/__init__.py: keep the two equal
    status, headers, data = example_server.request("GET", "/version")
    assert (status, data.decode()) == (200, VERSION)  # ScoringServerClient.get_version() returns the text
    assert headers["content-type"].startswith("text/plain")


def test_a_chunked_body_is_read(example_server: Serving) -> None:
    body = json.dumps({"dataframe_records": REC}).encode()
    conn = example_server.connect()
    try:  # http.client sends an iterable body chunked
        status, _, data = send(conn, "POST", "/invocations", iter([body[:100], body[100:]]), {"Content-Type": J})
        assert (status, json.loads(data)) == (200, {"predictions": EXPECTED})
        status, _, data = send(conn, "POST", "/predict", iter([b'{"inputs": ', json.dumps(R).encode(), b"}"]))
        assert (status, json.loads(data)["predictions"]) == (200, EXPECTED)
    finally:
        conn.close()
    # Raw: a chunk extension, a trailer, and a pipelined request after the chunked one.
    one = json.dumps({"inputs": R[:1]}).encode()
    raw = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"%x;name=value\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n"
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % (len(one), one)
    )
    resp = example_server.raw(raw)
    assert resp.count(b"HTTP/1.1 200 OK") == 2, resp


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        (b"zz\r\nhello\r\n0\r\n\r\n", 400),  # not a hex size
        (b"5\r\nhelloXX0\r\n\r\n", 400),  # the chunk is longer than its size says
        (b"1000001\r\n", 413),  # one chunk over the 16 MiB body limit: refused before it is sent
        (b"5\nhello\r\n0\r\n\r\n", 400),  # a bare LF after the size
    ],
    ids=["bad-size", "overlong-chunk", "too-large", "bare-lf"],
)
def test_a_malformed_chunked_body_is_refused(example_server: Serving, payload: bytes, status: int) -> None:
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    resp = example_server.raw(head + payload)
    assert resp.startswith(b"HTTP/1.1 %d " % status), resp


PARAMS_MODEL = """
def predict(X, params=None):
    scale = (params or {}).get("scale", 1)
    return [float(row[0]) * scale for row in X]
"""


def test_params_reach_a_model_that_takes_them_and_never_mix_in_a_batch(tmp_path: Path, serving_factory: Any) -> None:
    model = write_python_model(tmp_path / "m", PARAMS_MODEL, inputs='{ name = "x", type = "double" }')
    s = serving_factory(model).start()
    results: dict[tuple[int, int], float] = {}
    errors: list[BaseException] = []

    def client(k: int) -> None:
        conn = s.connect()
        try:
            for i in range(15):
                body: dict[str, Any] = {"dataframe_records": [{"x": float(i)}]}
                if k:
                    body["params"] = {"scale": k}
                status, _, data = send(conn, "POST", "/invocations", body)
                assert status == 200, data
                results[(k, i)] = json.loads(data)["predictions"][0]
        except BaseException as exc:
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in (0, 2, 3, 10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:2]
    for (k, i), got in results.items():
        assert got == float(i) * (k or 1), (k, i)
    assert len(results) == 60
    # /predict takes them too.
    status, out = s.json("POST", "/predict", {"inputs": [[4.0]], "params": {"scale": 5}})
    assert (status, out["predictions"]) == (200, [20.0])


def test_parquet_without_pyarrow_names_what_is_missing(example_server: Serving) -> None:
    body = (DATA / "ab_index_extra.parquet").read_bytes()
    status, _, data = example_server.request("POST", "/invocations", body, {"Content-Type": "application/x-parquet"})
    if _has_pyarrow(sys.executable):
        assert status == 400, data  # readable, but not the example's columns
    else:
        assert status == 415, data
        assert "pyarrow" in json.loads(data)["message"]


def _has_pyarrow(python: str) -> bool:
    return subprocess.run([python, "-c", "import pyarrow.parquet"], capture_output=True, timeout=60).returncode == 0


@pytest.fixture(scope="module")
def mlflow_python() -> str:
    need(MLFLOW_PYTHON.exists(), f"no MLflow venv at {MLFLOW_PYTHON} (bash bench/registry/setup_mlflow.sh makes one)")
    return str(MLFLOW_PYTHON)


def test_parquet_is_read_where_pyarrow_is_installed(tmp_path: Path, serving_factory: Any, mlflow_python: str) -> None:
    model = write_python_model(
        tmp_path / "m", "def predict(X):\n    return [row[0] * 10 + row[1] for row in X]\n",
        inputs='{ name = "a", type = "double" }, { name = "b", type = "long" }',
    )
    s = serving_factory(model, python=mlflow_python).start()
    body = (DATA / "ab_index_extra.parquet").read_bytes()  # pandas' df.to_parquet(): an index and a string column
    for ctype in ("application/vnd.apache.parquet", "application/x-parquet"):
        status, _, data = s.request("POST", "/invocations", body, {"Content-Type": ctype})
        assert (status, json.loads(data)) == (200, {"predictions": [16.0, 27.0, 38.0]})
    status, _, data = s.request("POST", "/invocations", b"PAR1 not parquet", {"Content-Type": "application/x-parquet"})
    assert status == 400
    assert "malformed Parquet" in json.loads(data)["message"]


CLIENT_SCRIPT = """
import json, sys
import pandas as pd
import requests
from mlflow.pyfunc.scoring_server.client import ScoringServerClient

port, eval_csv = int(sys.argv[1]), sys.argv[2]
client = ScoringServerClient("127.0.0.1", port)
client.wait_server_ready(timeout=30)
df = pd.read_csv(eval_csv).iloc[:3, :30]
url = f"http://127.0.0.1:{port}/invocations"
out = {
    "version": client.get_version(),
    "invoke": client.invoke(df)["predictions"],
    "invoke_params": client.invoke(df, params={"alpha": 0.5})["predictions"],
    "invoke_extra_column": client.invoke(df.assign(id=[7, 8, 9]))["predictions"],
    "invoke_string_numbers": client.invoke(df.astype({"mean radius": str}))["predictions"],
    "to_csv": requests.post(url, data=df.to_csv(), headers={"Content-Type": "text/csv"}).json()["predictions"],
    "chunked": requests.post(url, data=iter([json.dumps({"dataframe_records": df.to_dict(orient="records")}).encode()]),
                             headers={"Content-Type": "application/json"}).json()["predictions"],
}
print(json.dumps(out))
"""


def test_mlflows_own_client_works_against_the_runtime(example_server: Serving, mlflow_python: str) -> None:
    t0 = time.monotonic()
    done = subprocess.run(
        [mlflow_python, "-c", CLIENT_SCRIPT, str(example_server.port), str(EXAMPLE / "eval.csv")],
        capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    from daemon.serving import VERSION

    assert out.pop("version") == VERSION
    assert out == dict.fromkeys(out, EXPECTED), f"{out} (client took {time.monotonic() - t0:.1f} s)"
