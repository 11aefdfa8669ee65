"""bench/serving: modeltui's serving runtime against ``mlflow models serve``, in one run (issue 3, "Benchmark").

    /work/main/.venv/bin/python bench/serving/run.py [--duration 10] [--connections 16,64] [--skip-mlflow]
                                                     [--results FILE] [--json FILE]

1. Trains the issue's model (50-tree ``RandomForestClassifier(random_state=0)`` on
   ``make_classification(n_samples=5000, n_features=8, random_state=0)``) and saves it twice: as a modeltui
   model directory (``model.skops`` + ``modeltui.toml``) and, through ``mlflow_model.py`` in the MLflow venv
   (``bench/registry/.venv-mlflow``; ``bash bench/registry/setup_mlflow.sh`` makes it), as an MLflow model.
2. Measures the model's own in-process ``predict`` throughput at batch 1 and 64: the ceiling.
3. Starts ``python -m daemon.serving --model-dir DIR --port 0`` and ``mlflow models serve --env-manager local``
   (its defaults: uvicorn, 1 worker in MLflow 3.17), each timed from spawn to the first 200 on its health route.
4. Checks both answer the same predictions, then drives each with the same load generator (``wrk`` with a
   Lua script, or ``loadgen.py`` in its own process when wrk is missing) for ``--duration`` seconds per
   connection count: ``POST /invocations``, one row per request, ``dataframe_split`` bodies, 127.0.0.1 only.
5. Prints the table against the issue's targets and writes ``RESULTS.md`` (``--results``).

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

    pkl = tmp / "model.pkl"
    with pkl.open("wb") as fh:
        pickle.dump(model, fh)
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


# -- processes -----------------------------------------------------------------------------------------------
@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int = 0
    start_s: float = float("nan")
    info: dict[str, Any] = field(default_factory=dict)

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


# -- load ----------------------------------------------------------------------------------------------------
LUA = """
local bodies = {BODIES}
local reqs = {}
local i = 0
function init(args)
  for k, b in ipairs(bodies) do
    reqs[k] = wrk.format("POST", "/invocations", {["Content-Type"] = "application/json"}, b)
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


def load(gen: str, port: int, conns: int, duration: float, bodies_: list[str], tmp: Path) -> dict[str, Any]:
    if gen == "wrk":
        script = tmp / "post.lua"
        script.write_text(LUA.replace("{BODIES}", "{" + ", ".join(lua_string(b) for b in bodies_) + "}"))
        argv = ["wrk", "-t", str(min(2, conns)), "-c", str(conns), "-d", f"{duration:g}s", "--timeout", "10s",
                "--latency", "-s", str(script), f"http://127.0.0.1:{port}/invocations"]  # fmt: skip
        out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk printed no summary ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        res: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
    else:
        bf = tmp / "bodies.json"
        bf.write_text(json.dumps(bodies_))
        argv = [sys.executable, str(HERE / "loadgen.py"), "--port", str(port), "--connections", str(conns),
                "--duration", str(duration), "--bodies", str(bf)]  # fmt: skip
        out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"loadgen.py failed ({out.returncode}):\n{out.stderr[-3000:]}")
        res = json.loads(out.stdout.strip().splitlines()[-1])
    res["rps"] = res["requests"] / res["duration_s"] if res["duration_s"] else 0.0
    return res


def check_same(servers: list[Server], bodies_: list[str], expect: list[int]) -> None:
    for s in servers:
        for b, want in zip(bodies_[:16], expect[:16], strict=True):
            status, raw = post(s.port, "/invocations", b)
            if status != 200:
                raise RuntimeError(f"{s.name}: /invocations answered {status}: {raw[:500]!r}")
            got = json.loads(raw)["predictions"][0]
            if isinstance(got, dict):  # just in case a server wraps the value
                got = next(iter(got.values()))
            if int(got) != want:
                raise RuntimeError(f"{s.name}: predicted {got!r}, the model in process says {want}")


def metrics_batch(port: int) -> str:
    """Mean rows per predict call from modeltui's /metrics, if it exposes a batch-size histogram."""
    with contextlib.suppress(OSError, http.client.HTTPException):
        status, raw = get(port, "/metrics")
        if status == 200:
            total = count = None
            for ln in raw.decode().splitlines():
                name, _, val = ln.rpartition(" ")
                if name.startswith("modeltui_batch_size_sum"):
                    total = float(val)
                elif name.startswith("modeltui_batch_size_count"):
                    count = float(val)
            if total is not None and count:
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


def table(r: dict[str, Any], conns: list[int]) -> tuple[list[list[str]], bool]:
    rows: list[list[str]] = []
    ok = True
    mt, ml = r["modeltui"], r.get("mlflow")

    def add(fig: str, a: float, b: float | None, unit: str, ratio: str, target: str, passed: bool | None) -> None:
        nonlocal ok
        verdict = "—" if passed is None else ("pass" if passed else "FAIL")
        if passed is False:
            ok = False
        rows.append([fig, fmt(a, unit), fmt(b, unit) if b is not None else "—", ratio, target, verdict])

    for c in conns:
        a, b = mt["load"][str(c)], ml["load"][str(c)] if ml else None
        head = c == 16
        ratio = f"{a['rps'] / b['rps']:.1f}×" if b and b["rps"] else "—"
        add(f"req/s @ {c} conns", a["rps"], b["rps"] if b else None, "", ratio,
            "≥ 20× MLflow" if head else "—", (a["rps"] >= 20 * b["rps"]) if (head and b) else None)  # fmt: skip
        add(f"p50 @ {c} conns", a["p50_ms"], b["p50_ms"] if b else None, "ms",
            f"{a['p50_ms'] / b['p50_ms']:.2f}×" if b else "—", "—", None)  # fmt: skip
        add(f"p99 @ {c} conns", a["p99_ms"], b["p99_ms"] if b else None, "ms",
            f"{a['p99_ms'] / b['p99_ms']:.2f}×" if b else "—",
            "< MLflow p50" if head else "—", (a["p99_ms"] < b["p50_ms"]) if (head and b) else None)  # fmt: skip
        ea = a["non2xx"] + a["socket_errors"]
        rows.append([f"errors @ {c} conns (non-2xx / socket)", f"{a['non2xx']} / {a['socket_errors']}",
                     f"{b['non2xx']} / {b['socket_errors']}" if b else "—", "—", "none" if head else "—",
                     ("pass" if ea == 0 else "FAIL") if head else "—"])  # fmt: skip
        if head and ea:
            ok = False
    a_s, b_s = mt["start_s"], ml["start_s"] if ml else None
    add("deploy/start → healthy", a_s, b_s, "s", f"{a_s / b_s:.3f}×" if b_s else "—", "≤ 1/5 of MLflow",
        (a_s <= b_s / 5) if b_s else None)  # fmt: skip
    rows.append(["RSS after load (process tree)", f"{mt['rss_mib']:.0f} MiB", f"{ml['rss_mib']:.0f} MiB" if ml else "—",
                 "—", "—", "—"])  # fmt: skip
    return rows, ok


def render(rows: list[list[str]]) -> str:
    head = ["figure", "modeltui", "MLflow", "ratio", "target", "result"]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def write_results(path: Path, r: dict[str, Any], md_table: str, args: argparse.Namespace) -> None:
    ip = r["in_process"]
    ml = r.get("mlflow")
    mt = r["modeltui"]
    if r["generator"] == "wrk":
        gen = "`wrk` 4.1 with a Lua script (`-t 2`, `--timeout 10s`, cycling through 64 distinct one-row bodies)"
    else:
        gen = "`bench/serving/loadgen.py` (Python asyncio, keep-alive connections, its own process)"
    lines = [
        "# bench/serving — results",
        "",
        f"Measured {r['date']} by `bench/serving/run.py --duration {args.duration:g} --connections "
        f"{args.connections}{' --skip-mlflow' if args.skip_mlflow else ''}`.",
        "",
        f"- Machine: {r['machine']}. **The load generator runs on the same 2-core machine as the server**, so it",
        "  takes CPU from whichever server it drives: absolute figures are low-side, ratios are what matter.",
        f"- Model: 50-tree `RandomForestClassifier(random_state=0)`, 8 double features, "
        f"`make_classification(n_samples=5000, n_features=8, random_state=0)`; scikit-learn {r['sklearn']}.",
        f"- Load: {gen}; closed loop, `POST /invocations` with one `dataframe_split` row per request, the same",
        f"  bodies for both servers, {args.duration:g} s per connection count, 127.0.0.1 only.",
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
            f"({ml['info']['processes']} processes in its tree)."
        )
    else:
        lines.append("- MLflow: skipped in this run (`--skip-mlflow`).")
    lines += [
        f"- Ceiling, the model's own `predict` in process: batch 1 {ip['1']['calls_s']:,.0f} calls/s "
        f"({ip['1']['us_call']:,.0f} µs/call); batch 64 {ip['64']['calls_s']:,.0f} calls/s = "
        f"{ip['64']['rows_s']:,.0f} rows/s ({ip['64']['us_call']:,.0f} µs/call).",
        "",
        md_table,
        "",
        "Targets are the issue's, at 16 connections; 64-connection rows are reported without a target.",
        "",
        "## Not measured yet (TODO)",
        "",
        "- **BentoML** (adaptive batching, `batchable=True`, `max_batch_size=64`, `max_latency_ms=200`, own venv):",
        "  out of scope for this session; the targets ≥ 5× BentoML's req/s and p99 < BentoML's p50 are unchecked.",
        "- Docker build and push times (the Docker backend does not exist yet).",
        "",
        "## Reproduce",
        "",
        "```sh",
        "bash bench/registry/setup_mlflow.sh          # once: MLflow in bench/registry/.venv-mlflow (shared)",
        "apt-get install -y wrk                        # optional; without it loadgen.py is used",
        ".venv/bin/python bench/serving/run.py --duration 10 --connections 16,64",
        "```",
        "",
    ]
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
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of load per server and connection count")
    ap.add_argument("--connections", default="16,64", help="comma-separated connection counts (default 16,64)")
    ap.add_argument("--skip-mlflow", action="store_true", help="measure modeltui only")
    ap.add_argument("--generator", choices=["auto", "wrk", "python"], default="auto", help="load generator")
    ap.add_argument("--results", type=Path, default=HERE / "RESULTS.md", help="markdown report (default RESULTS.md)")
    ap.add_argument("--json", type=Path, help="also write every raw figure here")
    args = ap.parse_args()
    conns = [int(c) for c in args.connections.split(",") if c.strip()]
    gen = "wrk" if (args.generator == "wrk" or (args.generator == "auto" and shutil.which("wrk"))) else "python"
    if not args.skip_mlflow and not MLFLOW_PY.exists():
        print(f"no MLflow venv at {MLFLOW_VENV}: run bash bench/registry/setup_mlflow.sh, or pass --skip-mlflow")
        return 2

    import sklearn

    r: dict[str, Any] = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
                         "generator": gen, "sklearn": sklearn.__version__}  # fmt: skip
    procs = Procs()
    tmp = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    try:
        with sigterm_as_interrupt():
            print(f"training … (load generator: {gen})", flush=True)
            model, X = train()
            save_modeltui(model, tmp / "modeltui-model")
            r["in_process"] = in_process(model, X)
            ip = r["in_process"]
            print(
                f"in-process predict: batch 1 {ip['1']['calls_s']:,.0f}/s, batch 64 {ip['64']['rows_s']:,.0f} rows/s",
                flush=True,
            )
            b = bodies(X)
            expect = [int(v) for v in model.predict(X[:N_BODIES])]
            ml_dir = None
            if not args.skip_mlflow:
                ml_dir, ml_info = save_mlflow(model, tmp)
                print(f"MLflow model saved (mlflow {ml_info['mlflow']}, {ml_info['save_s']:.2f} s)", flush=True)

            targets: list[tuple[str, Any]] = [("modeltui", lambda: start_modeltui(procs, tmp / "modeltui-model", tmp))]
            if ml_dir is not None:
                targets.append(("mlflow", lambda: start_mlflow(procs, ml_dir, tmp)))
            for key, start in targets:
                s = start()
                print(f"{s.name}: healthy after {s.start_s:.3f} s on port {s.port} {s.info}", flush=True)
                check_same([s], b, expect)
                load(gen, s.port, conns[0], min(2.0, args.duration), b, tmp)  # warm-up, discarded
                res: dict[str, Any] = {"start_s": s.start_s, "info": s.info, "load": {}}
                for c in conns:
                    res["load"][str(c)] = x = load(gen, s.port, c, args.duration, b, tmp)
                    print(f"  {c:>3} conns: {x['rps']:>9,.0f} req/s  p50 {x['p50_ms']:.2f} ms  p99 {x['p99_ms']:.2f} ms"
                          f"  errors {x['non2xx']}/{x['socket_errors']}", flush=True)  # fmt: skip
                res["rss_mib"] = s.tree_rss_mib()
                if key == "modeltui":
                    res["batch_mean"] = metrics_batch(s.port)
                else:
                    res["version"] = ml_info["mlflow"]
                r[key] = res
                procs.stop(s.proc)  # one server at a time: the other must not take CPU from it

        rows, ok = table(r, conns)
        md = render(rows)
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
