"""Flavors, model loading rules and batching semantics, each with its own small model directory."""

from __future__ import annotations

import http.client
import json
import math
import operator
import pickle
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from tests.helpers.paths import REPO
from tests.helpers.prometheus import metric
from tests.helpers.serving import write_python_model

pytestmark = pytest.mark.integration

TWO = '{ name = "a", type = "double" }, { name = "b", type = "double" }'


def test_python_flavor_and_health_before_load(tmp_path: Path, serving_factory: Any) -> None:
    code = (
        "import time\n"
        "from helper import FACTOR\n"  # a neighbour module: the model directory is on sys.path
        "time.sleep(1.5)\n"
        "def predict(X):\n"
        "    return (X.sum(axis=1) * FACTOR).tolist()\n"
    )
    model = write_python_model(tmp_path / "m", code, inputs=TWO, outputs='{ name = "y", type = "double" }')
    (model / "helper.py").write_text("FACTOR = 10\n")
    s = serving_factory(model).start(ready=False)
    status, out = s.json("GET", "/health")
    assert status == 503
    assert out["ready"] is False
    assert s.request("GET", "/health/live")[0] == 200
    assert s.request("POST", "/predict", {"inputs": [[1, 2]]})[0] == 503
    s.wait_ready()
    status, out = s.json("POST", "/predict", {"inputs": [[1, 2], [0.5, None]]})
    assert status == 200
    assert out["predictions"][0] == 30.0
    assert math.isnan(out["predictions"][1])  # null → NaN → NaN
    status, out = s.json("POST", "/predict", {"inputs": [{"b": 1, "a": 0.5}]})
    assert (status, out["predictions"]) == (200, [15.0])
    status, out = s.json("POST", "/predict", {"inputs": [[1, 2], {"a": 0.5, "b": 1}]})
    assert status == 400
    assert "row 1: expected a list" in out["message"]
    assert s.json("POST", "/predict", {"inputs": [[1, 2]]})[1]["version"] == "py-model:local"


def test_model_errors_fail_only_their_own_request(tmp_path: Path, serving_factory: Any) -> None:
    code = (
        "import time\n"
        "def predict(X):\n"
        "    time.sleep(0.05)\n"
        "    if (X[:, 0] < 0).any():\n"
        "        raise ValueError('negative a')\n"
        "    return X[:, 0].tolist()\n"
    )
    s = serving_factory(write_python_model(tmp_path / "m", code, inputs=TWO)).start("--max-wait-ms", "0")
    results: dict[int, tuple[int, Any]] = {}

    def call(i: int) -> None:
        results[i] = s.json("POST", "/predict", {"inputs": [[-1.0 if i == 3 else float(i), 0.0]]})

    threads = [threading.Thread(target=call, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for i, (status, out) in results.items():
        if i == 3:
            assert status == 422
            assert "negative a" in out["message"]
        else:
            assert (status, out["predictions"]) == (200, [float(i)])
    text = s.metrics()
    assert metric(text, "modeltui_batch_size_count") < 12  # the slow model made them share batches


def test_lone_requests_do_not_wait(tmp_path: Path, serving_factory: Any) -> None:
    model = write_python_model(tmp_path / "m", "def predict(X):\n    return X[:, 0]\n", inputs=TWO)
    s = serving_factory(model).start("--max-wait-ms", "1000")
    conn = s.connect()
    try:
        conn.request("POST", "/predict", body=b'{"inputs": [[1, 2]]}')
        conn.getresponse().read()
        time.sleep(1.1)  # longer than max-wait: the model is idle, the next request is "lone"
        t0 = time.perf_counter()
        conn.request("POST", "/predict", body=b'{"inputs": [[1, 2]]}')
        resp = conn.getresponse()
        assert resp.status == 200
        resp.read()
        assert time.perf_counter() - t0 < 1.0  # a request that waited for company would take max-wait, 1 s
    finally:
        conn.close()


def _skops_dir(path: Path, *, trusted: bool | list[str]) -> Path:
    x = np.random.default_rng(0).random((40, 2))
    y = (x[:, 0] > 0.5).astype(int)
    model = make_pipeline(FunctionTransformer(operator.neg), LogisticRegression()).fit(x, y)
    path.mkdir()
    (path / "model.skops").write_bytes(sio.dumps(model))
    (path / "modeltui.toml").write_text(
        f'name = "neg"\nflavor = "sklearn"\nmodel_file = "model.skops"\ntrusted = {json.dumps(trusted)}\n'
        f"[signature]\ninputs = [{TWO}]\n"
    )
    return path


def test_untrusted_skops_types_are_refused(tmp_path: Path, serving_factory: Any) -> None:
    s = serving_factory(_skops_dir(tmp_path / "m", trusted=False)).start(ready=False)
    assert s.proc is not None
    assert s.proc.wait(30) == 3
    err = s.stderr()
    assert "refusing to load model.skops" in err
    assert "_operator.neg" in err
    assert 'trusted = ["_operator.neg"' in err  # says how to allow exactly what was refused


def test_a_reviewed_type_list_loads_exactly_those_types(tmp_path: Path, serving_factory: Any) -> None:
    s = serving_factory(_skops_dir(tmp_path / "ok", trusted=["_operator.neg"])).start()
    status, out = s.json("POST", "/predict", {"inputs": [[0.9, 0.1], [0.1, 0.9]]})
    assert status == 200
    assert len(out["predictions"]) == 2
    other = serving_factory(_skops_dir(tmp_path / "other", trusted=["_operator.pos"])).start(ready=False)
    assert other.proc is not None
    assert other.proc.wait(30) == 3
    assert "_operator.neg" in other.stderr()


def test_trusted_skops_types_are_loaded(tmp_path: Path, serving_factory: Any) -> None:
    s = serving_factory(_skops_dir(tmp_path / "m", trusted=True)).start()
    status, out = s.json("POST", "/predict", {"inputs": [[0.9, 0.1], [0.1, 0.9]]})
    assert status == 200
    assert len(out["predictions"]) == 2


@pytest.mark.parametrize("trusted", [False, True])
def test_pickle_only_when_trusted(tmp_path: Path, serving_factory: Any, trusted: bool) -> None:
    x = np.random.default_rng(0).random((40, 2))
    model = LogisticRegression().fit(x, (x[:, 0] > 0.5).astype(int))
    d = tmp_path / "m"
    d.mkdir()
    (d / "model.pkl").write_bytes(pickle.dumps(model))
    (d / "modeltui.toml").write_text(
        f'name = "p"\nflavor = "sklearn"\nmodel_file = "model.pkl"\ntrusted = {str(trusted).lower()}\n'
        f"[signature]\ninputs = [{TWO}]\n"
    )
    s = serving_factory(d)
    if trusted:
        s.start()
        assert s.json("POST", "/predict", {"inputs": [[0.9, 0.1]]})[1]["predictions"] == [1]
    else:
        s.start(ready=False)
        assert s.proc.wait(30) == 3
        assert "pickle/joblib files run arbitrary code" in s.stderr()


@pytest.mark.parametrize(
    ("manifest", "needle"),
    [
        ('name = "x"\nflavor = "tensorflow"\nmodel_file = "m"\n', "flavor must be one of"),
        ('name = "x"\nflavor = "sklearn"\n', "model_file"),
        ('name = "x"\nflavor = "sklearn"\nmodel_file = "m"\n[signature]\ninputs = [{ name = "a", type = "int8" }]\n',
         "signature.inputs[0].type"),
        ("not toml ===", "not valid TOML"),
    ],
)
def test_bad_manifest_exits_2_before_listening(tmp_path: Path, manifest: str, needle: str) -> None:
    (tmp_path / "modeltui.toml").write_text(manifest)
    proc = subprocess.run(
        [sys.executable, "-m", "daemon.serving", "--model-dir", str(tmp_path), "--port", "0"],
        capture_output=True, timeout=30, cwd=REPO,
    )
    assert proc.returncode == 2
    assert proc.stdout == b""
    assert needle in proc.stderr.decode()


def test_model_file_must_stay_inside_the_directory(tmp_path: Path, serving_factory: Any) -> None:
    d = tmp_path / "m"
    d.mkdir()
    (tmp_path / "evil.py").write_text("def predict(X):\n    return X[:, 0]\n")
    (d / "modeltui.toml").write_text(
        f'name = "x"\nflavor = "python"\nmodel_file = "../evil.py:predict"\n[signature]\ninputs = [{TWO}]\n'
    )
    s = serving_factory(d).start(ready=False)
    assert s.proc.wait(30) == 3
    assert "leaves the model directory" in s.stderr()


def test_sigterm_exits_cleanly(tmp_path: Path, serving_factory: Any) -> None:
    model = write_python_model(tmp_path / "m", "def predict(X):\n    return X[:, 0]\n", inputs=TWO)
    s = serving_factory(model).start()
    assert json.loads(s.request("GET", "/health")[2])["ready"] is True
    assert s.stop() == 0


def test_runtime_runs_copied_on_its_own(tmp_path: Path) -> None:
    """As in a Docker image: only daemon/serving (and an empty daemon package) on the path."""

    root = tmp_path / "img"
    shutil.copytree(REPO / "daemon" / "serving", root / "daemon" / "serving",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (root / "daemon" / "__init__.py").write_text("")
    model = write_python_model(tmp_path / "m", "def predict(X):\n    return X[:, 1]\n", inputs=TWO)
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import runpy; "
         "sys.argv = ['serving', '--model-dir', sys.argv[2], '--port', '0']; "
         "runpy.run_module('daemon.serving', run_name='__main__')", str(root), str(model)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("LISTENING 127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        deadline = time.monotonic() + 20
        while True:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request("POST", "/predict", body=b'{"inputs": [[1, 7]]}')
                resp = conn.getresponse()
                body = resp.read()
            finally:
                conn.close()
            if resp.status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert json.loads(body)["predictions"] == [7.0]
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
