"""What endpoint authentication and TLS cost the runtime: req/s and latency at 16 connections with auth off,
auth on (a bearer token checked on every request) and auth on over TLS, beside MLflow's uvicorn server with
TLS serving the same model. Writes bench/serving/AUTH_TLS.md.

    .venv/bin/python bench/serving/auth_tls.py [--duration 10] [--connections 16] [--rounds 3] [--skip-mlflow]

The model, the 64 one-row bodies and the load (wrk, closed loop, keep-alive, POST /invocations) are
run.py's. Every modeltui mode serves on a ``--public-port`` (TLS is only ever on that port); the three modes
run in turn, ``--rounds`` times, and each figure is the median of its rounds, so a machine whose load
drifts hurts every mode alike. MLflow: ``mlflow models serve`` with uvicorn's own TLS options
(``UVICORN_SSL_CERTFILE``/``UVICORN_SSL_KEYFILE``, read by its command line), one round. The certificate is
made by ``modeltuid tls self-signed`` (openssl); wrk does not verify it (the handshake cost is the same).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent))

import run as R  # noqa: E402 - bench/serving/run.py: the model, bodies and processes of the main benchmark

from daemon.deploy.tls import self_signed  # noqa: E402
from daemon.serving.auth import Auth, sha256_hex  # noqa: E402

TOKEN = "bench-" + "t" * 40
CONTROL = "auth off (control: a second auth-off runtime)"
ADMIN = "bench-admin-" + "a" * 40


def lua(path: str, bodies: list[str], token: str | None) -> str:
    headers = '{["Content-Type"] = "application/json"}'
    if token:
        headers = '{["Content-Type"] = "application/json", ["Authorization"] = "Bearer ' + token + '"}'
    text = R.LUA.replace('{["Content-Type"] = "application/json"}', headers).replace("{PATH}", path)
    return text.replace("{BODIES}", "{" + ", ".join(R.lua_string(b) for b in bodies) + "}")


def wrk(url: str, conns: int, duration: float, bodies: list[str], token: str | None, tmp: Path) -> dict[str, Any]:
    script = tmp / f"post-{os.getpid()}-{time.monotonic_ns()}.lua"
    script.write_text(lua("/invocations", bodies, token))
    argv = ["wrk", "-t", str(min(2, conns)), "-c", str(conns), "-d", f"{duration:g}s", "--timeout", "10s",
            "--latency", "-s", str(script), url]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    res: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
    res["rps"] = res["requests"] / res["duration_s"] if res["duration_s"] else 0.0
    return res


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process and its children (MLflow's uvicorn worker), so far."""
    p = psutil.Process(pid)
    total = 0.0
    for q in [p, *p.children(recursive=True)]:
        t = q.cpu_times()
        total += t.user + t.system
    return total


def measured(pid: int, url: str, conns: int, duration: float, bodies: list[str], token: str | None,
             tmp: Path) -> dict[str, Any]:  # fmt: skip
    """wrk's figures plus the server's CPU per request (µs): less at the mercy of the machine's other load
    than req/s, since a server that waits for the CPU spends no CPU meanwhile."""
    before = cpu_seconds(pid)
    res = wrk(url, conns, duration, bodies, token, tmp)
    res["cpu_us"] = (cpu_seconds(pid) - before) / max(res["requests"], 1) * 1e6
    return res


def paired(a: tuple[str, str | None], b: tuple[str, str | None], conns: int, duration: float, bodies: list[str],
           tmp: Path) -> float:  # fmt: skip
    """req/s of ``b`` ÷ req/s of ``a`` when both are loaded at once (``conns`` connections each): whatever else
    the machine does then, it does to both, so the ratio is their relative cost per request."""
    got: dict[int, dict[str, Any]] = {}

    def one(i: int, target: tuple[str, str | None]) -> None:
        got[i] = wrk(target[0], conns, duration, bodies, target[1], tmp)

    threads = [threading.Thread(target=one, args=(i, t)) for i, t in enumerate((a, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return float(got[1]["rps"] / got[0]["rps"])


def call(url: str, body: str, token: str | None, ctx: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    req = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30, context=ctx) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def start_runtime(procs: R.Procs, model_dir: Path, tmp: Path, name: str, env: dict[str, str]) -> tuple[R.Server, int]:
    """A runtime serving on a public port (where TLS would be); returns it and that port."""
    public = R.free_port()
    log = tmp / f"{name}.stderr"
    with log.open("wb") as err:
        p = procs.spawn(
            [sys.executable, "-m", "daemon.serving", "--model-dir", str(model_dir), "--port", "0",
             "--public-port", str(public)],
            cwd=R.REPO, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, env={**os.environ, **env},
        )  # fmt: skip
    assert p.stdout is not None
    lines = [p.stdout.readline().decode().strip() for _ in range(2)]
    if not lines[1].startswith("SERVING"):
        raise RuntimeError(f"{name}: {lines!r}\n{R.tail(log)}")
    out = p.stdout
    threading.Thread(target=lambda: [None for _ in out], daemon=True).start()
    return R.Server(name, p, int(lines[0].rsplit(":", 1)[1])), public


def start_mlflow_tls(procs: R.Procs, model_dir: Path, tmp: Path, cert: Path, key: Path) -> tuple[R.Server, str]:
    log = tmp / "mlflow.log"
    port = R.free_port()
    env = dict(os.environ)
    env["PATH"] = f"{R.MLFLOW_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(R.MLFLOW_VENV)
    env.pop("MLFLOW_MODELS_WORKERS", None)
    env.pop("PYTHONPATH", None)
    env["MLFLOW_TRACKING_URI"] = (tmp / "mlruns").as_uri()
    env["UVICORN_SSL_CERTFILE"] = str(cert)
    env["UVICORN_SSL_KEYFILE"] = str(key)
    with log.open("wb") as out:
        p = procs.spawn(
            [str(R.MLFLOW_VENV / "bin" / "mlflow"), "models", "serve", "-m", str(model_dir), "--env-manager",
             "local", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        )  # fmt: skip
    ctx = ssl.create_default_context(cafile=str(cert))
    url = f"https://localhost:{port}"
    deadline = time.monotonic() + R.HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise RuntimeError(f"mlflow exited {p.returncode}:\n{R.tail(log)}")
        try:
            with urllib.request.urlopen(url + "/ping", timeout=1, context=ctx) as resp:
                if resp.status == 200:
                    return R.Server("MLflow+TLS", p, port), url
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"mlflow not healthy over TLS:\n{R.tail(log)}")


def check_cost(n: int = 200_000) -> float:
    """Seconds per token check as the runtime makes it (hash the header's token, compare with both hashes)."""
    auth = Auth(token_sha256=sha256_hex(TOKEN), admin_sha256=sha256_hex(ADMIN), public=True)
    header = f"Bearer {TOKEN}".encode()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            auth.presented(header)
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-mlflow", action="store_true")
    ap.add_argument("--results", type=Path, default=HERE / "AUTH_TLS.md")
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    procs = R.Procs()
    with tempfile.TemporaryDirectory(prefix="bench-auth-tls-") as t:
        tmp = Path(t)
        try:
            model, X = R.train()
            model_dir = tmp / "modeltui-model"
            R.save_modeltui(model, model_dir)
            cert, key = self_signed(tmp / "tls", "localhost")
            bodies = R.bodies(X)
            hashes = {"MODELTUI_TOKEN_SHA256": sha256_hex(TOKEN), "MODELTUI_ADMIN_TOKEN_SHA256": sha256_hex(ADMIN)}
            modes = {
                "auth off": ({}, "http", None),
                "auth on": ({**hashes, "MODELTUI_AUTH": "on"}, "http", TOKEN),
                "auth on + TLS": (
                    {**hashes, "MODELTUI_AUTH": "on", "MODELTUI_TLS_CERT": str(cert), "MODELTUI_TLS_KEY": str(key)},
                    "https",
                    TOKEN,
                ),
            }
            urls: dict[str, tuple[str, str | None]] = {}
            pids: dict[str, int] = {}
            ctx = ssl.create_default_context(cafile=str(cert))
            for name, (env, scheme, token) in modes.items():
                server, public = start_runtime(procs, model_dir, tmp, name.replace(" ", "_"), env)
                pids[name] = server.proc.pid
                url = f"{scheme}://localhost:{public}/invocations"
                urls[name] = (url, token)
                status, answer = call(url, bodies[0], token, ctx if scheme == "https" else None)
                assert status == 200, (name, status, answer)
                if token:
                    assert call(url, bodies[0], None, ctx if scheme == "https" else None)[0] == 401, name
            _, control_public = start_runtime(procs, model_dir, tmp, "auth_off_control", {})
            control_url = (f"http://localhost:{control_public}/invocations", None)
            for url, token in [*urls.values(), control_url]:  # warm-up, discarded
                wrk(url, args.connections, 2.0, bodies, token, tmp)
            results: dict[str, list[dict[str, Any]]] = {name: [] for name in urls}
            for _ in range(args.rounds):
                for name, (url, token) in urls.items():
                    results[name].append(measured(pids[name], url, args.connections, args.duration, bodies, token, tmp))
            pairs = {
                CONTROL: [
                    paired(urls["auth off"], control_url, args.connections, args.duration, bodies, tmp)
                    for _ in range(args.rounds)
                ],
                "auth on": [paired(urls["auth off"], urls["auth on"], args.connections, args.duration, bodies, tmp)
                            for _ in range(args.rounds)],
                "auth on + TLS": [paired(urls["auth off"], urls["auth on + TLS"], args.connections, args.duration,
                                         bodies, tmp) for _ in range(args.rounds)],
            }  # fmt: skip
            if not args.skip_mlflow:
                mlflow_dir, _ = R.save_mlflow(model, tmp)
                mlflow, base = start_mlflow_tls(procs, mlflow_dir, tmp, cert, key)
                assert call(base + "/invocations", bodies[0], None, ctx)[0] == 200
                wrk(base + "/invocations", args.connections, 2.0, bodies, None, tmp)
                results["MLflow (uvicorn) + TLS"] = [measured(mlflow.proc.pid, base + "/invocations", args.connections,
                                                              args.duration, bodies, None, tmp)]  # fmt: skip
        finally:
            procs.close()
    load_after = os.getloadavg()[0]
    per_check = check_cost()
    summary = {
        name: {
            "rps": statistics.median(r["rps"] for r in runs),
            "p50_ms": statistics.median(r["p50_ms"] for r in runs),
            "p99_ms": statistics.median(r["p99_ms"] for r in runs),
            "cpu_us": statistics.median(r["cpu_us"] for r in runs),
            "errors": sum(r["non2xx"] + r["socket_errors"] for r in runs),
            "rounds": [round(r["rps"]) for r in runs],
        }
        for name, runs in results.items()
    }
    base_rps = summary["auth off"]["rps"]
    base_cpu = summary["auth off"]["cpu_us"]
    lines = [
        "# bench/serving — endpoint authentication and TLS",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `bench/serving/auth_tls.py --duration "
        f"{args.duration:g} --connections {args.connections} --rounds {args.rounds}`"
        f"{' --skip-mlflow' if args.skip_mlflow else ''}.",
        "",
        f"- Machine: {os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}; the load "
        f"generator (wrk) shares it. 1-minute load average at the start: {load_before:.2f}, at the end: "
        f"{load_after:.2f} (other work ran on the machine: compare modes, not absolute figures).",
        "- Model, bodies and load as `run.py` (50-tree random forest, 8 features, one row per request, "
        "`POST /invocations` with `dataframe_split`, keep-alive, closed loop). Each modeltui mode serves on a "
        "`--public-port`; modes take turns, each figure is the median of its rounds (req/s of every round in "
        "the last column). Auth on: every request carries `Authorization: Bearer TOKEN`, hashed and compared "
        "with both hashes (`hmac.compare_digest`). TLS: the runtime's `ssl` context (TLS 1.2+, the server's "
        "defaults), an EC P-256 self-signed certificate.",
        "",
        "| mode | req/s | vs auth off | server CPU per request | vs auth off | p50 | p99 | errors | rounds (req/s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        lines.append(
            f"| {name} | {s['rps']:,.0f} | {s['rps'] / base_rps:.3f}× | {s['cpu_us']:.0f} µs | "
            f"{s['cpu_us'] / base_cpu:.3f}× | {s['p50_ms']:.2f} ms | {s['p99_ms']:.2f} ms "
            f"| {s['errors']} | {', '.join(f'{v:,}' for v in s['rounds'])} |"
        )
    auth_ratio = summary["auth on"]["rps"] / base_rps
    cpu_ratio = summary["auth on"]["cpu_us"] / base_cpu
    control_ratio = statistics.median(pairs[CONTROL])
    pair_ratio = statistics.median(pairs["auth on"]) / control_ratio
    quiet = 8947.0  # RESULTS.md: auth off, 16 connections, on a quiet machine
    lines += [
        "",
        f"Target: auth on within 5 % of auth off at {args.connections} connections: req/s {auth_ratio:.3f}× "
        f"({'pass' if auth_ratio >= 0.95 else 'FAIL'}), server CPU per request {cpu_ratio:.3f}× "
        f"({'pass' if cpu_ratio <= 1.05 else 'FAIL'}). Side by side with auth off, divided by the control pair "
        f"(below): {pair_ratio:.3f}×, for information only: the control pair's own spread "
        f"({min(pairs[CONTROL]):.2f}–{max(pairs[CONTROL]):.2f}×) is wider than the effect looked for.",
        "",
        f"Side by side: auth off and the other mode loaded at the same time, {args.connections} connections each, "
        f"{args.rounds} rounds of {args.duration:g} s; req/s of the mode ÷ req/s of auth off in the same round "
        "(whatever else the machine does, it does to both). The control pair, two identical auth-off runtimes, "
        "shows how far the pairing itself is from 1.000× (the second of a pair may be favoured or not by the "
        "scheduler); the target line divides by it:",
        "",
        "| mode (÷ auth off) | median ratio | rounds |",
        "|---|---|---|",
        *(f"| {n} | {statistics.median(v):.3f}× | {', '.join(f'{x:.3f}' for x in v)} |" for n, v in pairs.items()),
        "",
        f"The check's own cost, measured in process (best of 5 × 200,000 calls of `Auth.presented`): "
        f"{per_check * 1e6:.2f} µs per request — {per_check * base_rps * 100:.2f} % of a request at this run's "
        f"auth-off rate, {per_check * quiet * 100:.2f} % at RESULTS.md's quiet-machine rate "
        f"({quiet:,.0f} req/s): what auth can cost at most, whatever the machine's noise.",
        "",
    ]
    text = "\n".join(lines)
    args.results.write_text(text)
    print(text)
    print(json.dumps({"summary": summary, "pairs": pairs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
