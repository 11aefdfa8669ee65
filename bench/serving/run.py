"""bench/serving: modeltui's serving runtime against ``mlflow models serve`` and BentoML, in one run (issue 3).

    /work/main/.venv/bin/python bench/serving/run.py [--duration 10] [--connections 16,64]
                                                     [--peers mlflow,bentoml] [--results FILE] [--json FILE]

1. Trains the issue's model (50-tree ``RandomForestClassifier(random_state=0)`` on
   ``make_classification(n_samples=5000, n_features=8, random_state=0)``) and saves it as a modeltui model
   directory (``model.skops`` + ``modeltui.toml``), as a pickle, and, through ``mlflow_model.py`` in the MLflow
   venv (``bench/registry/.venv-mlflow``; ``bash bench/registry/setup_mlflow.sh`` makes it), as an MLflow model.
   BentoML's service (``bento_service.py``, run from ``bench/serving/.venv-bentoml``;
   ``bash bench/serving/setup_bentoml.sh`` makes it) loads the pickle. One model, three servers.
2. Measures the model's own in-process ``predict`` throughput at batch 1 and 64: the ceiling.
3. Starts, one at a time, ``python -m daemon.serving --model-dir DIR --port 0``, ``mlflow models serve
   --env-manager local`` (its defaults: uvicorn, 1 worker in MLflow 3.17) and ``bentoml serve
   bento_service:BenchRF`` (its defaults: 1 worker process per service in BentoML 1.4; the endpoint batches
   adaptively, max batch 64, max latency 200 ms), each timed from spawn to the first 200 on its health route.
4. Checks each answers the model's predictions, then drives it with the same load generator (``wrk`` with a
   Lua script, or ``loadgen.py`` in its own process when wrk is missing) for ``--duration`` seconds (≤ 15) per
   connection count: one row per request, 127.0.0.1 only — ``POST /invocations`` with a ``dataframe_split``
   body for modeltui and MLflow, ``POST /predict`` with ``{"rows": [[...]]}`` (BentoML's JSON input) for BentoML.
5. Prints the table against the issue's targets and writes ``RESULTS.md`` (``--results``); the table it
   replaces moves under "Earlier runs" there.

A benchmark, not a CI gate: the exit code is 0 unless something broke. Every server it starts is killed when
it ends (also on errors and Ctrl-C) and its temp directory is removed.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import pickle
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
MLFLOW_VENV = HERE.parent / "registry" / ".venv-mlflow"
MLFLOW_PY = MLFLOW_VENV / "bin" / "python"
BENTO_VENV = HERE / ".venv-bentoml"
BENTO_PY = BENTO_VENV / "bin" / "python"
PEERS = {"mlflow": "MLflow", "bentoml": "BentoML"}  # key -> display name, in run order
RPS_TARGET = {"mlflow": 20, "bentoml": 5}  # the targets: modeltui req/s ≥ N× the peer's, at 16 conns
MAX_DURATION_S = 15.0
N_FEATURES = 8
COLUMNS = [f"f{i}" for i in range(N_FEATURES)]
N_BODIES = 64  # distinct one-row bodies the generator cycles through
HEALTH_TIMEOUT_S = 180.0


# -- model ---------------------------------------------------------------------------------------------------
def train() -> tuple[Any, np.ndarray]:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    X, y = make_classification(n_samples=5000, n_features=N_FEATURES, random_state=0)
    model = RandomForestClassifier(n_estimators=50, random_state=0).fit(X, y)
    return model, X


def save_modeltui(model: Any, d: Path) -> None:
    import skops.io as sio

    d.mkdir()
    sio.dump(model, d / "model.skops")
    inputs = ", ".join(f'{{ name = "{c}", type = "double" }}' for c in COLUMNS)
    (d / "modeltui.toml").write_text(
        # trusted: skops 0.16 does not trust sklearn.tree._tree.Tree by default, and we wrote this file ourselves
        'name = "bench-rf"\nflavor = "sklearn"\nmodel_file = "model.skops"\ntrusted = true\n\n'
        f'[signature]\ninputs = [{inputs}]\noutputs = [{{ name = "prediction", type = "long" }}]\n'
    )


def save_mlflow(model: Any, tmp: Path) -> tuple[Path, dict[str, Any]]:
    import sklearn

    pkl = save_pickle(model, tmp)
    out = tmp / "mlflow-model"
    proc = subprocess.run(
        [str(MLFLOW_PY), str(HERE / "mlflow_model.py"), "--pickle", str(pkl), "--out", str(out),
         "--columns", ",".join(COLUMNS), "--sklearn-version", sklearn.__version__],
        capture_output=True, text=True, cwd=tmp, timeout=300, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"mlflow_model.py failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return out, json.loads(proc.stdout.strip().splitlines()[-1])


def in_process(model: Any, X: np.ndarray, seconds: float = 2.0) -> dict[str, dict[str, float]]:
    """Calls per second of model.predict at batch 1 and 64, in this process (the ceiling)."""
    out: dict[str, dict[str, float]] = {}
    for batch in (1, 64):
        model.predict(X[:batch])  # warm
        calls = 0
        t0 = time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds:
            start = (calls * batch) % (len(X) - batch)
            model.predict(X[start : start + batch])
            calls += 1
        out[str(batch)] = {
            "calls_s": calls / elapsed,
            "rows_s": calls * batch / elapsed,
            "us_call": elapsed / calls * 1e6,
        }
    return out


def bodies(X: np.ndarray) -> list[str]:
    return [
        json.dumps({"dataframe_split": {"columns": COLUMNS, "data": [[float(v) for v in X[i]]]}})
        for i in range(N_BODIES)
    ]


def bento_bodies(X: np.ndarray) -> list[str]:
    """The same rows as ``bodies``, in BentoML's JSON input: the API's one argument ``rows``, a 1×8 array."""
    return [json.dumps({"rows": [[float(v) for v in X[i]]]}) for i in range(N_BODIES)]


def save_pickle(model: Any, tmp: Path) -> Path:
    pkl = tmp / "model.pkl"
    if not pkl.exists():
        with pkl.open("wb") as fh:
            pickle.dump(model, fh)
    return pkl


# -- processes -----------------------------------------------------------------------------------------------
@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int = 0
    start_s: float = float("nan")
    info: dict[str, Any] = field(default_factory=dict)
    log: Path | None = None  # the server's own log, when it writes an access line per request (BentoML)

    def tree_rss_mib(self) -> float:
        try:
            p = psutil.Process(self.proc.pid)
            return sum(x.memory_info().rss for x in [p, *p.children(recursive=True)]) / (1 << 20)
        except psutil.Error:
            return float("nan")


class Procs:
    """Every child this script starts, each in its own session; all of them die in ``close``."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(argv, start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen[bytes]) -> None:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)  # stragglers in the group (uvicorn workers), even if p exited
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=5)

    def close(self) -> None:
        for p in self.procs:
            self.stop(p)
        self.procs.clear()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def post(port: int, path: str, body: str) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("POST", path, body=body.encode(), headers={"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def wait_healthy(p: subprocess.Popen[bytes], port: int, path: str, t0: float, what: str, log: Path) -> float:
    while True:
        if p.poll() is not None:
            raise RuntimeError(f"{what} exited with {p.returncode} before it was healthy:\n{tail(log)}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            if get(port, path, timeout=1.0)[0] == 200:
                return time.perf_counter() - t0
        if time.perf_counter() - t0 > HEALTH_TIMEOUT_S:
            raise RuntimeError(f"{what} not healthy after {HEALTH_TIMEOUT_S:.0f} s:\n{tail(log)}")
        time.sleep(0.01)


def tail(log: Path, n: int = 3000) -> str:
    with contextlib.suppress(OSError):
        return log.read_text(errors="replace")[-n:]
    return ""


def start_modeltui(procs: Procs, model_dir: Path, tmp: Path) -> Server:
    log = tmp / "modeltui.stderr"
    t0 = time.perf_counter()
    with log.open("wb") as err:
        p = procs.spawn(
            [sys.executable, "-m", "daemon.serving", "--model-dir", str(model_dir), "--port", "0"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    assert p.stdout is not None
    first = p.stdout.readline().decode().strip()
    if not first.startswith("LISTENING "):
        raise RuntimeError(f"modeltui printed {first!r} instead of LISTENING host:port:\n{tail(log)}")
    listening_s = time.perf_counter() - t0
    port = int(first.rsplit(":", 1)[1])
    out = p.stdout
    threading.Thread(target=lambda: [None for _ in out], daemon=True).start()  # keep the pipe drained
    s = Server("modeltui", p, port)
    s.start_s = wait_healthy(p, port, "/health", t0, "modeltui", log)
    s.info = {"listening_s": listening_s, "cmd": "python -m daemon.serving --model-dir DIR --port 0 (defaults)"}
    return s


def start_mlflow(procs: Procs, model_dir: Path, tmp: Path) -> Server:
    log = tmp / "mlflow.log"
    port = free_port()
    env = dict(os.environ)
    env["PATH"] = f"{MLFLOW_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"  # mlflow execs `uvicorn` by name
    env["VIRTUAL_ENV"] = str(MLFLOW_VENV)
    env.pop("MLFLOW_MODELS_WORKERS", None)  # its default (1 uvicorn worker in 3.17; recorded from the cmdline)
    env.pop("PYTHONPATH", None)
    env["MLFLOW_TRACKING_URI"] = (tmp / "mlruns").as_uri()
    t0 = time.perf_counter()
    with log.open("wb") as out:
        p = procs.spawn(
            [str(MLFLOW_VENV / "bin" / "mlflow"), "models", "serve", "-m", str(model_dir), "--env-manager", "local",
             "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        )  # fmt: skip
    s = Server("MLflow", p, port)
    s.start_s = wait_healthy(p, port, "/ping", t0, "mlflow models serve", log)
    cmds = []
    with contextlib.suppress(psutil.Error):
        pp = psutil.Process(p.pid)
        cmds = [" ".join(c.cmdline()) for c in [pp, *pp.children(recursive=True)]]
    uvicorn = next((c for c in cmds if "uvicorn" in c), "")
    workers = uvicorn.split("--workers", 1)[1].split()[0] if "--workers" in uvicorn else "?"
    s.info = {"processes": len(cmds), "workers": workers, "server_cmd": uvicorn.split("/")[-1] if uvicorn else "?"}
    return s


def bento_versions() -> dict[str, str]:
    """BentoML's, scikit-learn's and numpy's versions in the BentoML venv; refuses a scikit-learn mismatch."""
    import sklearn

    code = ("import json, bentoml, numpy, sklearn; print(json.dumps({'bentoml': bentoml.__version__, "
            "'sklearn': sklearn.__version__, 'numpy': numpy.__version__}))")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-bentoml-home-") as home:
        proc = subprocess.run(
            [str(BENTO_PY), "-c", code],
            capture_output=True, text=True, timeout=120, check=False, env={**bento_env(), "BENTOML_HOME": home},
        )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"the BentoML venv does not import bentoml ({proc.returncode}):\n{proc.stderr[-3000:]}")
    v: dict[str, str] = json.loads(proc.stdout.strip().splitlines()[-1])
    if v["sklearn"] != sklearn.__version__:
        raise RuntimeError(
            f"scikit-learn {v['sklearn']} in {BENTO_VENV}, {sklearn.__version__} here: the pickle would not be the "
            "same model (re-run bash bench/serving/setup_bentoml.sh)"
        )
    return v


def bento_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENTOML_")}  # its defaults, no outside config
    env["PATH"] = f"{BENTO_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(BENTO_VENV)
    env.pop("PYTHONPATH", None)
    env["BENTOML_DO_NOT_TRACK"] = "True"  # no usage reports: traffic stays on 127.0.0.1
    return env


def start_bentoml(procs: Procs, pkl: Path, tmp: Path) -> Server:
    import sklearn

    log = tmp / "bentoml.log"
    port = free_port()
    env = bento_env()
    env["BENTOML_HOME"] = str(tmp / "bentoml-home")  # its model store and config dir, not the user's ~/bentoml
    env["BENCH_MODEL_PKL"] = str(pkl)
    env["BENCH_SKLEARN_VERSION"] = sklearn.__version__
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    cmd = ["bentoml", "serve", "bento_service:BenchRF", "--working-dir", str(HERE), "--host", "127.0.0.1",
           "--port", str(port)]  # fmt: skip
    t0 = time.perf_counter()
    with log.open("wb") as out:
        p = procs.spawn(
            [str(BENTO_VENV / "bin" / "bentoml"), *cmd[1:]],
            cwd=tmp, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        )  # fmt: skip
    s = Server("BentoML", p, port, log=log)
    s.start_s = wait_healthy(p, port, "/readyz", t0, "bentoml serve", log)
    cmds: list[str] = []
    with contextlib.suppress(psutil.Error):
        pp = psutil.Process(p.pid)
        cmds = [" ".join(c.cmdline()) for c in [pp, *pp.children(recursive=True)]]
    workers = sum("_bentoml_impl.worker.service" in c for c in cmds)
    s.info = {"processes": len(cmds), "workers": workers,
              "server_cmd": " ".join(cmd).replace(str(HERE), "bench/serving").replace(str(port), "P")}  # fmt: skip
    return s


# -- load ----------------------------------------------------------------------------------------------------
LUA = """
local bodies = {BODIES}
local reqs = {}
local i = 0
function init(args)
  for k, b in ipairs(bodies) do
    reqs[k] = wrk.format("POST", "{PATH}", {["Content-Type"] = "application/json"}, b)
  end
  i = math.random(#reqs)
end
function request()
  i = i % #reqs + 1
  return reqs[i]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_s": %.6f, "p50_ms": %.4f, "p99_ms": %.4f, "max_ms": %.4f, ' ..
    '"non2xx": %d, "socket_errors": %d, "connect": %d, "read": %d, "write": %d, "timeout": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3,
    latency.max / 1e3, e.status, e.connect + e.read + e.write + e.timeout, e.connect, e.read, e.write, e.timeout))
end
"""


def lua_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def load(
    gen: str, port: int, conns: int, duration: float, bodies_: list[str], tmp: Path, path: str = "/invocations"
) -> dict[str, Any]:
    if gen == "wrk":
        script = tmp / "post.lua"
        lua = LUA.replace("{PATH}", path)
        script.write_text(lua.replace("{BODIES}", "{" + ", ".join(lua_string(b) for b in bodies_) + "}"))
        argv = ["wrk", "-t", str(min(2, conns)), "-c", str(conns), "-d", f"{duration:g}s", "--timeout", "10s",
                "--latency", "-s", str(script), f"http://127.0.0.1:{port}{path}"]  # fmt: skip
        out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk printed no summary ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        res: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
    else:
        bf = tmp / "bodies.json"
        bf.write_text(json.dumps(bodies_))
        argv = [sys.executable, str(HERE / "loadgen.py"), "--port", str(port), "--connections", str(conns),
                "--duration", str(duration), "--bodies", str(bf), "--path", path]  # fmt: skip
        out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"loadgen.py failed ({out.returncode}):\n{out.stderr[-3000:]}")
        res = json.loads(out.stdout.strip().splitlines()[-1])
    res["rps"] = res["requests"] / res["duration_s"] if res["duration_s"] else 0.0
    return res


def access_statuses(log: Path | None, since: int) -> tuple[dict[str, int], int]:
    """HTTP statuses counted in an access log from byte ``since`` on (BentoML logs ``(status=503,...``), and the
    log's size now: tells which non-2xx a load run got, which wrk only counts."""
    counts: dict[str, int] = {}
    if log is None:
        return counts, 0
    with contextlib.suppress(OSError), log.open("rb") as fh:
        fh.seek(since)
        data = fh.read()
        for part in data.split(b"(status=")[1:]:
            code = part[:3].decode(errors="replace")
            counts[code] = counts.get(code, 0) + 1
        return counts, since + len(data)
    return counts, since


def check_same(s: Server, path: str, bodies_: list[str], expect: list[int]) -> None:
    for b, want in zip(bodies_[:16], expect[:16], strict=True):
        status, raw = post(s.port, path, b)
        if status != 200:
            raise RuntimeError(f"{s.name}: {path} answered {status}: {raw[:500]!r}")
        got = json.loads(raw)
        got = got["predictions"][0] if isinstance(got, dict) else got[0]  # MLflow/modeltui: {"predictions": [..]}
        if isinstance(got, dict):  # just in case a server wraps the value
            got = next(iter(got.values()))
        if int(got) != want:
            raise RuntimeError(f"{s.name}: predicted {got!r}, the model in process says {want}")


def metrics_batch(port: int) -> str:
    """Mean rows per predict call from a server's Prometheus /metrics, if it exposes a batch-size histogram
    (modeltui: ``modeltui_batch_size``; BentoML: ``bentoml_service_adaptive_batch_size``)."""
    with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
        status, raw = get(port, "/metrics")
        if status == 200:
            total = count = 0.0
            for ln in raw.decode().splitlines():
                if ln.startswith("#"):
                    continue
                name, _, val = ln.rpartition(" ")
                metric = name.split("{", 1)[0]
                if metric.endswith("batch_size_sum"):
                    total += float(val)
                elif metric.endswith("batch_size_count"):
                    count += float(val)
            if count:
                return f"{total / count:.1f}"
    return "?"


# -- report --------------------------------------------------------------------------------------------------
def machine() -> str:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    mem = psutil.virtual_memory().total / (1 << 30)
    return f"{os.cpu_count()} CPUs ({cpu}), {mem:.1f} GiB RAM, {platform.system()} {platform.release()}"


def fmt(v: float, unit: str = "") -> str:
    if v != v:  # NaN
        return "—"
    if unit == "ms":
        return f"{v:.2f} ms"
    if unit == "s":
        return f"{v:.2f} s"
    return f"{v:,.0f}"


def table(r: dict[str, Any], conns: list[int]) -> tuple[list[list[str]], list[str], bool]:
    """Rows for the report: modeltui, then each peer that ran, then modeltui ÷ each peer; targets at 16 conns."""
    peers = [k for k in PEERS if r.get(k)]
    names = [PEERS[k] for k in peers]
    head = ["figure", "modeltui", *names, *(f"modeltui ÷ {n}" for n in names), "target", "result"]
    rows: list[list[str]] = []
    ok = True
    mt = r["modeltui"]

    def verdicts(checks: list[bool | None]) -> str:
        nonlocal ok
        if all(c is None for c in checks):
            return "—"
        ok = ok and all(c is not False for c in checks)
        return "; ".join("—" if c is None else ("pass" if c else "FAIL") for c in checks)

    def row(fig: str, a: str, bs: list[str], ratios: list[str], targets: list[str], checks: list[bool | None]) -> None:
        target = "; ".join(t for t in targets if t) or "—"
        rows.append([fig, a, *bs, *ratios, target, verdicts([c for c, t in zip(checks, targets, strict=True) if t])])

    def ratio(a: float, b: float, digits: int) -> str:
        return f"{a / b:.{digits}f}×" if b and b == b and a == a else "—"

    for c in conns:
        head16 = c == 16
        a = mt["load"][str(c)]
        bl = [r[k]["load"][str(c)] for k in peers]
        row(f"req/s @ {c} conns", fmt(a["rps"]), [fmt(b["rps"]) for b in bl],
            [ratio(a["rps"], b["rps"], 1) for b in bl],
            [f"≥ {RPS_TARGET[k]}× {PEERS[k]}" if head16 else "" for k in peers],
            [a["rps"] >= RPS_TARGET[k] * b["rps"] for k, b in zip(peers, bl, strict=True)])  # fmt: skip
        row(f"p50 @ {c} conns", fmt(a["p50_ms"], "ms"), [fmt(b["p50_ms"], "ms") for b in bl],
            [ratio(a["p50_ms"], b["p50_ms"], 2) for b in bl], ["" for _ in bl], [None for _ in bl])  # fmt: skip
        row(f"p99 @ {c} conns", fmt(a["p99_ms"], "ms"), [fmt(b["p99_ms"], "ms") for b in bl],
            [ratio(a["p99_ms"], b["p99_ms"], 2) for b in bl], ["" for _ in bl], [None for _ in bl])  # fmt: skip
        if head16:
            row(f"modeltui p99 vs peer p50 @ {c} conns", fmt(a["p99_ms"], "ms"), [fmt(b["p50_ms"], "ms") for b in bl],
                [ratio(a["p99_ms"], b["p50_ms"], 2) for b in bl], [f"< {PEERS[k]} p50" for k in peers],
                [a["p99_ms"] < b["p50_ms"] for b in bl])  # fmt: skip
        ea = a["non2xx"] + a["socket_errors"]
        rows.append([f"errors @ {c} conns (non-2xx / socket)", f"{a['non2xx']} / {a['socket_errors']}",
                     *(f"{b['non2xx']} / {b['socket_errors']}" for b in bl), *("—" for _ in bl),
                     "none" if head16 else "—", verdicts([ea == 0]) if head16 else "—"])  # fmt: skip
    bs = [r[k]["start_s"] for k in peers]
    if "deploy" in r:
        dep = r["deploy"]["median_s"]
        row("deploy → healthy (daemon, warm zygote) vs peer start", fmt(dep, "s"), [fmt(b, "s") for b in bs],
            [ratio(dep, b, 3) for b in bs], ["≤ 1/5 of MLflow" if k == "mlflow" else "" for k in peers],
            [dep <= b / 5 for b in bs])  # fmt: skip
    row("cold process start → healthy", fmt(mt["start_s"], "s"), [fmt(b, "s") for b in bs],
        [ratio(mt["start_s"], b, 3) for b in bs], ["" for _ in peers], [None for _ in peers])  # fmt: skip
    rows.append(["RSS after load (process tree)", f"{mt['rss_mib']:.0f} MiB",
                 *(f"{r[k]['rss_mib']:.0f} MiB" for k in peers),
                 *(ratio(mt["rss_mib"], r[k]["rss_mib"], 2) for k in peers), "—", "—"])  # fmt: skip
    return rows, head, ok


def render(rows: list[list[str]], head: list[str]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


EARLIER_INTRO = "Tables of earlier runs, newest first, as each run wrote them (run.py moves the last one here)."


def earlier_runs(path: Path) -> str:
    """The "Earlier runs" of the results file about to be rewritten, with that file's own table put on top."""
    try:
        old = path.read_text()
    except OSError:
        return ""
    current, _, earlier = old.partition("\n## Earlier runs\n")
    lines = current.splitlines()
    measured = next((ln for ln in lines if ln.startswith("Measured ")), None)
    start = next((i for i, ln in enumerate(lines) if ln.startswith("|")), None)
    parts = []
    if measured and start is not None:
        end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
        parts.append(f"### {measured.removeprefix('Measured ').rstrip('.')}\n\n" + "\n".join(lines[start:end]))
    earlier = earlier.replace(EARLIER_INTRO, "").strip()
    if earlier:
        parts.append(earlier)
    return "\n\n".join(parts)


def write_results(path: Path, r: dict[str, Any], md_table: str, args: argparse.Namespace) -> None:
    ip = r["in_process"]
    ml, bt = r.get("mlflow"), r.get("bentoml")
    mt = r["modeltui"]
    if r["generator"] == "wrk":
        gen = "`wrk` 4.1 with a Lua script (`-t 2`, `--timeout 10s`, cycling through 64 distinct one-row bodies)"
    else:
        gen = "`bench/serving/loadgen.py` (Python asyncio, keep-alive connections, its own process)"
    peers_arg = "" if r["peers"] == list(PEERS) else f" --peers {','.join(r['peers']) or 'none'}"
    earlier = earlier_runs(path)
    lines = [
        "# bench/serving — results",
        "",
        f"Measured {r['date']} by `bench/serving/run.py --duration {args.duration:g} --connections "
        f"{args.connections}{peers_arg}`.",
        "",
        f"- Machine: {r['machine']}. **The load generator runs on the same 2-core machine as the server**, so it",
        "  takes CPU from whichever server it drives: absolute figures are low-side, ratios are what matter.",
        "  One server runs at a time; each gets a 2 s warm-up (discarded) before its measured runs. 1-minute load",
        f"  average when the run began: {r['loadavg_before'][0]:.2f}, when it ended: {r['loadavg_after'][0]:.2f} "
        "(the end figure includes the benchmark's own load).",
        f"- Model: 50-tree `RandomForestClassifier(random_state=0)`, 8 double features, "
        f"`make_classification(n_samples=5000, n_features=8, random_state=0)`; scikit-learn {r['sklearn']} in "
        "every venv; the very same fitted model (skops for modeltui, cloudpickle via MLflow, pickle for BentoML).",
        f"- Load: {gen}; closed loop, one row per request, the same 64 rows for every server, "
        f"{args.duration:g} s per connection count, 127.0.0.1 only. modeltui and MLflow get `POST /invocations` with",
        '  a `dataframe_split` body; BentoML gets `POST /predict` with its own JSON input, `{"rows": [[f0, …, f7]]}`.',
        f"- modeltui: `{mt['info']['cmd']}` — one process, max batch 64, max wait 2 ms; mean rows per predict "
        f"call over the whole run (warm-up, all connection counts): {mt.get('batch_mean', '?')}. "
        f"It printed `LISTENING` after "
        f"{mt['info']['listening_s']:.2f} s; the rest of its {mt['start_s']:.2f} s to healthy is importing "
        "scikit-learn + skops and loading the model (the import alone is ~1 s here).",
    ]
    if ml:
        lines.append(
            f"- MLflow {ml['version']}: `mlflow models serve -m DIR --env-manager local` with its defaults — "
            f"`{ml['info']['server_cmd']}`, {ml['info']['workers']} uvicorn worker(s) "
            f"({ml['info']['processes']} processes in its tree). Healthy = first 200 on `/ping`."
        )
    else:
        lines.append("- MLflow: not run this time (`--peers` left it out).")
    if bt:
        lines.append(
            f"- BentoML {bt['version']}: `{bt['info']['server_cmd']}` (`bench/serving/bento_service.py`, a "
            "`@bentoml.service` class whose one endpoint is `@bentoml.api(batchable=True, max_batch_size=64, "
            "max_latency_ms=200)`, a sync method taking an `np.ndarray` and calling `model.predict` on the batch). "
            f"Everything else is BentoML's default: {bt['info']['workers']} worker process — BentoML 1.4 starts one "
            "per service when `workers` is unset, the same count as MLflow's default, so no override was needed — "
            f"1 thread, access log on; {bt['info']['processes']} processes in its tree (the circus arbiter that "
            f"`bentoml serve` runs, and the worker). Mean rows per predict call over the whole run: "
            f"{bt.get('batch_mean', '?')}. Healthy = first 200 on `/readyz`. `BENTOML_DO_NOT_TRACK=True` (no usage "
            "reports), `BENTOML_HOME` in the run's temp directory. Statuses in its access log, per measured run: "
            + "; ".join(
                f"{c} conns {', '.join(f'{n:,} × {code}' for code, n in sorted(x.get('statuses', {}).items())) or '?'}"
                for c, x in bt["load"].items()
            )
            + " (a 503 is BentoML refusing a request its batcher expects to miss `max_latency_ms`)."
        )
    else:
        lines.append("- BentoML: not run this time (`--peers` left it out).")
    lines += [
        f"- Ceiling, the model's own `predict` in process: batch 1 {ip['1']['calls_s']:,.0f} calls/s "
        f"({ip['1']['us_call']:,.0f} µs/call); batch 64 {ip['64']['calls_s']:,.0f} calls/s = "
        f"{ip['64']['rows_s']:,.0f} rows/s ({ip['64']['us_call']:,.0f} µs/call). That is scikit-learn's `predict`,"
        " which MLflow and BentoML call; modeltui's runtime evaluates forests with its own fast path"
        " (`daemon/serving/treefast.py`: every tree descended at once in numpy, bit-identical answers, checked"
        " against the model on a probe batch at load and against the other servers' answers by this script), so"
        " it can exceed that ceiling.",
        "- Deploy → healthy: `bench/serving/deploy_time.py` on a fresh daemon: push the same model directory, then"
        f" the median of 5 `deployments.create` requests, each answered once its instance is healthy:"
        f" {r['deploy']['median_s']:.3f} s (best {r['deploy']['best_s']:.3f} s), forked from the warm zygote. The"
        " cold process start is a new interpreter importing numpy, scikit-learn and skops (a deployment that sets"
        " its own environment starts that way).",
        "",
        md_table,
        "",
        "Targets are the issue's, at 16 connections (modeltui ≥ 20× MLflow's and ≥ 5× BentoML's req/s; modeltui's",
        "p99 below each peer's p50; start → healthy ≤ 1/5 of MLflow's); 64-connection rows have no target.",
        "The result column lists one verdict per target, in the target column's order. Ratios are modeltui ÷ peer.",
        "",
        "## Not measured by this script",
        "",
        "- Docker build and push times: `bench/serving/docker_times.py` (figures in `docs/deploy-docker.md`).",
        "- Endpoint authentication and TLS (auth off / on / on + TLS, and MLflow's uvicorn with TLS): "
        "`bench/serving/auth_tls.py` (figures in `bench/serving/AUTH_TLS.md`).",
        "",
        "## Reproduce",
        "",
        "```sh",
        "bash bench/registry/setup_mlflow.sh          # once: MLflow in bench/registry/.venv-mlflow (shared)",
        "bash bench/serving/setup_bentoml.sh          # once: BentoML in bench/serving/.venv-bentoml",
        "apt-get install -y wrk                        # optional; without it loadgen.py is used",
        ".venv/bin/python bench/serving/run.py --duration 10 --connections 16,64",
        "```",
        "",
    ]
    if earlier:
        lines += ["## Earlier runs", "", EARLIER_INTRO, "", earlier, ""]
    path.write_text("\n".join(lines))


# -- main ----------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0,
                    help=f"seconds of load per server and connection count (≤ {MAX_DURATION_S:g})")  # fmt: skip
    ap.add_argument("--connections", default="16,64", help="comma-separated connection counts (default 16,64)")
    ap.add_argument("--peers", default=",".join(PEERS),
                    help="comma-separated peers to measure besides modeltui: mlflow, bentoml (default both; '' for "
                         "modeltui alone)")  # fmt: skip
    ap.add_argument("--skip-mlflow", action="store_true", help="leave MLflow out (same as dropping it from --peers)")
    ap.add_argument("--generator", choices=["auto", "wrk", "python"], default="auto", help="load generator")
    ap.add_argument("--results", type=Path, default=HERE / "RESULTS.md", help="markdown report (default RESULTS.md)")
    ap.add_argument("--json", type=Path, help="also write every raw figure here")
    args = ap.parse_args()
    conns = [int(c) for c in args.connections.split(",") if c.strip()]
    if not 0 < args.duration <= MAX_DURATION_S:
        ap.error(f"--duration must be in (0, {MAX_DURATION_S:g}] seconds: each load run is kept short")
    asked = {p.strip().lower() for p in args.peers.split(",") if p.strip()}
    if unknown := asked - set(PEERS):
        ap.error(f"unknown peer(s) {', '.join(sorted(unknown))}; known: {', '.join(PEERS)}")
    if args.skip_mlflow:
        asked.discard("mlflow")
    peers = [k for k in PEERS if k in asked]
    gen = "wrk" if (args.generator == "wrk" or (args.generator == "auto" and shutil.which("wrk"))) else "python"
    if "mlflow" in peers and not MLFLOW_PY.exists():
        print(f"no MLflow venv at {MLFLOW_VENV}: run bash bench/registry/setup_mlflow.sh, or drop mlflow from --peers")
        return 2
    if "bentoml" in peers and not BENTO_PY.exists():
        print(f"no BentoML venv at {BENTO_VENV}: run bash bench/serving/setup_bentoml.sh, or drop it from --peers")
        return 2

    import sklearn

    r: dict[str, Any] = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
                         "generator": gen, "sklearn": sklearn.__version__, "peers": peers,
                         "loadavg_before": os.getloadavg()}  # fmt: skip
    procs = Procs()
    tmp = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    try:
        with sigterm_as_interrupt():
            print(f"training … (load generator: {gen}; peers: {', '.join(PEERS[k] for k in peers) or 'none'}; "
                  f"load average before: {r['loadavg_before'][0]:.2f})", flush=True)  # fmt: skip
            model, X = train()
            save_modeltui(model, tmp / "modeltui-model")
            from deploy_time import measure

            r["deploy"] = measure(tmp / "modeltui-model", repeat=5)
            print(f"deploy → healthy (daemon, warm zygote): {r['deploy']['median_s']:.3f} s", flush=True)
            r["in_process"] = in_process(model, X)
            ip = r["in_process"]
            print(
                f"in-process predict: batch 1 {ip['1']['calls_s']:,.0f}/s, batch 64 {ip['64']['rows_s']:,.0f} rows/s",
                flush=True,
            )
            b = bodies(X)
            expect = [int(v) for v in model.predict(X[:N_BODIES])]
            version: dict[str, str] = {}
            # (key, start, route, bodies): one server at a time, in this order
            targets: list[tuple[str, Any, str, list[str]]] = [
                ("modeltui", lambda: start_modeltui(procs, tmp / "modeltui-model", tmp), "/invocations", b)
            ]
            if "mlflow" in peers:
                ml_dir, ml_info = save_mlflow(model, tmp)
                version["mlflow"] = ml_info["mlflow"]
                print(f"MLflow model saved (mlflow {ml_info['mlflow']}, {ml_info['save_s']:.2f} s)", flush=True)
                targets.append(("mlflow", lambda: start_mlflow(procs, ml_dir, tmp), "/invocations", b))
            if "bentoml" in peers:
                bv = bento_versions()
                version["bentoml"] = bv["bentoml"]
                pkl = save_pickle(model, tmp)
                print(f"BentoML venv: bentoml {bv['bentoml']}, scikit-learn {bv['sklearn']}", flush=True)
                targets.append(("bentoml", lambda: start_bentoml(procs, pkl, tmp), "/predict", bento_bodies(X)))
            for key, start, route, bb in targets:
                s = start()
                print(f"{s.name}: healthy after {s.start_s:.3f} s on port {s.port} {s.info}", flush=True)
                check_same(s, route, bb, expect)
                load(gen, s.port, conns[0], min(2.0, args.duration), bb, tmp, route)  # warm-up, discarded
                res: dict[str, Any] = {"start_s": s.start_s, "info": s.info, "load": {}}
                for c in conns:
                    mark = s.log.stat().st_size if s.log is not None else 0
                    res["load"][str(c)] = x = load(gen, s.port, c, args.duration, bb, tmp, route)
                    if s.log is not None:
                        x["statuses"], _ = access_statuses(s.log, mark)
                    print(f"  {c:>3} conns: {x['rps']:>9,.0f} req/s  p50 {x['p50_ms']:.2f} ms  p99 {x['p99_ms']:.2f} ms"
                          f"  errors {x['non2xx']}/{x['socket_errors']}"
                          + (f"  statuses {x['statuses']}" if "statuses" in x else ""), flush=True)  # fmt: skip
                res["rss_mib"] = s.tree_rss_mib()
                if key in ("modeltui", "bentoml"):
                    res["batch_mean"] = metrics_batch(s.port)
                if key in version:
                    res["version"] = version[key]
                r[key] = res
                procs.stop(s.proc)  # one server at a time: the others must not take CPU from it

        r["loadavg_after"] = os.getloadavg()
        rows, head, ok = table(r, conns)
        md = render(rows, head)
        print()
        print(md)
        write_results(args.results, r, md, args)
        print(f"\nwrote {args.results}" + ("" if ok else "  (some targets missed)"))
        if args.json:
            args.json.write_text(json.dumps(r, indent=2, default=str))
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        procs.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
