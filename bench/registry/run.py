"""bench/registry: modeltui's registry against MLflow's model registry on SQLite, in one run.

    /work/main/.venv/bin/python bench/registry/run.py [--versions 1000] [--repeat 50]
                                                      [--skip-mlflow] [--ingest-gib 1] [--markdown FILE]

modeltui side: a real ``modeltuid`` child process in a temp directory, driven through its Unix socket with
``modeltui.client`` (the same code path as the CLI). MLflow side: ``mlflow_side.py`` in the MLflow venv
(``bash bench/registry/setup_mlflow.sh`` makes it), ``MlflowClient`` on SQLite, in process.

Figures: register N versions of one model (rate); list all N versions (p50); resolve an alias (p50); push a
large file (time against ``cp`` + Python's sha256 of the same file, and RSS growth of the daemon and the
client); re-push the unchanged directory (bytes copied, time). Prints a table with ratios against the
targets; a benchmark, not a CI gate: the exit code is 0 unless something broke.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from timing import summary  # this directory is on sys.path: the script is run directly

from daemon.protocol import requests as q
from daemon.protocol import results as r
from modeltui.client import DaemonClient, connect

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
MLFLOW_PY = HERE / ".venv-mlflow" / "bin" / "python"
MODEL = "bench-model"
ALIAS = "production"
MIB = 1 << 20


# -- small helpers -----------------------------------------------------------------------------------------
def manifest(name: str) -> str:
    return (
        f'name = "{name}"\nflavor = "sklearn"\nmodel_file = "model.bin"\n'
        'requirements = ["scikit-learn"]\n\n[params]\nC = 1.0\n\n[metrics]\naccuracy = 0.9\n\n'
        '[signature]\ninputs = [{ name = "x", type = "double" }]\n'
    )


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM of a process in bytes (from /proc; Linux only)."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


def reset_peak(pid: int) -> bool:
    """Reset a process's peak RSS (VmHWM) to its current RSS; needs Linux >= 4.0 and permission."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class PeakSampler:
    """Samples a process's RSS every few milliseconds in a thread; a cross-check of VmHWM."""

    def __init__(self, pid: int, interval: float = 0.005) -> None:
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- the daemon --------------------------------------------------------------------------------------------
@dataclass
class Daemon:
    base: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return Path(self.env["MODELTUI_SOCKET"])

    def start(self, timeout: float = 20.0) -> None:
        (self.base / "home").mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MODELTUI_")}
        self.env.update(
            MODELTUI_STATE_DIR=str(self.base / "state"),
            MODELTUI_SOCKET=str(self.base / "run" / "modeltuid.sock"),
            MODELTUI_CONFIG=str(self.base / "daemon.toml"),
            HOME=str(self.base / "home"),
            PYTHONUNBUFFERED="1",
        )
        with open(self.base / "daemon.out", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "daemon", "run"],
                env=self.env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"modeltuid exited with {self.proc.returncode}:\n{self.log()}")
            if self.socket.exists():
                return
            time.sleep(0.05)
        raise RuntimeError(f"modeltuid did not create its socket in {timeout:.0f}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return (self.base / "daemon.out").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def connect_retry(sock: Path, wait_s: float = 20.0) -> DaemonClient:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            client = await connect(sock, client_name="bench-registry")
            await client.call(q.Ping())
            return client
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


# -- pushing -----------------------------------------------------------------------------------------------
PushFn = Callable[[DaemonClient, Path], Awaitable[tuple[r.PushResult, int]]]


async def push_raw(client: DaemonClient, directory: Path) -> tuple[r.PushResult, int]:
    """Push a flat directory with the bare protocol: one Upload frame (descriptors over SCM_RIGHTS), then
    one Push frame."""
    rel = sorted(os.listdir(directory))
    fds = [os.open(directory / p, os.O_RDONLY | os.O_CLOEXEC) for p in rel]
    try:
        sizes = [os.fstat(fd).st_size for fd in fds]
        req = q.Upload(files=[q.UploadFile(path=p, size=s) for p, s in zip(rel, sizes, strict=True)])
        reply = await client.send(req, fds=fds)
    finally:
        for fd in fds:
            os.close(fd)
    up = r.UploadResult.model_validate_json(reply.raw)
    copied = sum(i.size for i in up.items if i.copied)
    push = q.Push(files=[q.PushFile(path=i.path, sha256=i.sha256, size=i.size) for i in up.items], name=None)
    return await client.call(push), copied


def pick_push() -> tuple[str, PushFn]:
    """modeltui's own push helper when there is one (what the CLI runs), else the bare protocol."""
    try:
        from modeltui.cli.transfer import push_directory
    except ImportError:
        return "bare protocol (Upload + Push)", push_raw

    async def helper(client: DaemonClient, directory: Path) -> tuple[r.PushResult, int]:
        return await push_directory(client, directory)

    return "modeltui.cli.transfer.push_directory", helper


# -- the modeltui side -------------------------------------------------------------------------------------
def make_version_dirs(parent: Path, name: str, n: int) -> list[Path]:
    """N tiny model directories of one model, each differing from the next by one byte."""
    text = manifest(name)
    dirs = []
    for i in range(n):
        d = parent / f"v{i:05d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "modeltui.toml").write_text(text)
        (d / "model.bin").write_bytes(b"weights-%05d" % i)
        dirs.append(d)
    return dirs


async def register(client: DaemonClient, dirs: list[Path], push: PushFn) -> dict[str, float]:
    times: list[float] = []
    t_all = time.perf_counter()
    for d in dirs:
        t = time.perf_counter()
        res, _ = await push(client, d)
        times.append(time.perf_counter() - t)
        if not res.created:
            raise RuntimeError(f"{d} did not create a new version")
    total = time.perf_counter() - t_all
    return {"total_s": total, "rate_per_s": len(dirs) / total, **summary(times)}


async def registry_side(
    client: DaemonClient, work: Path, n: int, repeat: int, how: str, push: PushFn
) -> dict[str, Any]:
    # Warm up first (imports, caches, SQLite's first pages) like the MLflow side's first calls, so neither
    # path measured below pays for going first.
    warm = make_version_dirs(work / "warmup", MODEL + "-warmup", 50)
    await register(client, warm, push)
    shutil.rmtree(work / "warmup")
    # Directories are made before timing, like the MLflow side's sources.
    dirs = make_version_dirs(work / "versions", MODEL, n)
    out: dict[str, Any] = {"push_path": how, "register": await register(client, dirs, push)}
    shutil.rmtree(work / "versions")
    if push is not push_raw:
        # The same work through the bare protocol (no manifest check, no directory scan, no `git` calls):
        # what the socket and the store cost on their own.
        dirs = make_version_dirs(work / "versions", MODEL + "-raw", n)
        out["register_raw"] = await register(client, dirs, push_raw)
        shutil.rmtree(work / "versions")
    await client.call(q.AliasSet(name=MODEL, alias=ALIAS, version=n // 2))

    log_t: list[float] = []
    objects_t: list[float] = []
    items = 0
    await client.call(q.Log(name=MODEL, limit=max(1000, n)))  # warm-up
    for _ in range(repeat):
        t = time.perf_counter()
        vl = await client.call(q.Log(name=MODEL, limit=max(1000, n)))
        log_t.append(time.perf_counter() - t)
        items = len(vl.rows)
    # Separately (its garbage would otherwise be collected inside the next timed call): the typed rows
    # turned into VersionSummary objects, for a caller that wants objects.
    for _ in range(repeat):
        fresh = r.VersionList.model_validate(vl.model_dump())
        t = time.perf_counter()
        items = len(fresh.items)
        objects_t.append(time.perf_counter() - t)

    show_t: list[float] = []
    resolved = None
    await client.call(q.Show(ref=f"{MODEL}@{ALIAS}"))  # warm-up
    for _ in range(repeat):
        t = time.perf_counter()
        vd = await client.call(q.Show(ref=f"{MODEL}@{ALIAS}"))
        show_t.append(time.perf_counter() - t)
        resolved = vd.version.number
    out["list"] = {**summary(log_t), "items": items, "objects": summary(objects_t)}
    out["alias"] = {**summary(show_t), "version": resolved}
    return out


def make_big_file(path: Path, size: int) -> None:
    """Incompressible, non-sparse, no two MiB blocks alike: one random MiB, each copy stamped with a
    counter."""
    block = bytearray(os.urandom(MIB))
    with open(path, "wb") as fh:
        for i in range(size // MIB):
            block[:8] = i.to_bytes(8, "little")
            fh.write(block)
        if size % MIB:
            fh.write(os.urandom(size % MIB))


def baseline_once(path: Path) -> tuple[float, float, float]:
    """`cp` of the file (then `sync` of the copy, for context), and Python's sha256 over it (1 MiB reads)."""
    copy = path.with_name(path.name + ".cp")
    t = time.perf_counter()
    subprocess.run(["cp", str(path), str(copy)], check=True)
    cp_s = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run(["sync", str(copy)], check=True)
    sync_s = time.perf_counter() - t
    copy.unlink()
    t = time.perf_counter()
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(MIB)
        view = memoryview(buf)
        while n := fh.readinto(buf):
            h.update(view[:n])
    return cp_s, sync_s, time.perf_counter() - t


def stamp(path: Path, data: bytes) -> None:
    """Change bytes 8.. of the file in place: new content, same size, new mtime."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, 8)
    finally:
        os.close(fd)


async def ingest_side(
    client: DaemonClient, daemon_pid: int, work: Path, gib: float, reps: int, push: PushFn
) -> dict[str, Any]:
    """`reps` times each: the baseline, and a push of the big file with different content (8 bytes changed
    in place, so nothing is deduplicated). Medians are compared: single `cp` timings of 1 GiB vary by up to
    8x on this kind of VM (page-cache reclaim and writeback of earlier runs)."""
    size = int(gib * (1 << 30))
    d = work / "big-model"
    d.mkdir(parents=True, exist_ok=True)
    (d / "modeltui.toml").write_text(manifest("bench-big"))
    big = d / "model.bin"
    t = time.perf_counter()
    make_big_file(big, size)
    made_s = time.perf_counter() - t
    os.sync()  # neither side should pay for writing back the source file
    cp, syn, sha = [], [], []
    for _ in range(reps):
        c, s_, h = baseline_once(big)
        cp.append(c)
        syn.append(s_)
        sha.append(h)

    me = os.getpid()
    d_before = proc_status(daemon_pid)["VmRSS"]
    c_before = proc_status(me)["VmRSS"]
    hwm_ok = reset_peak(daemon_pid) and reset_peak(me)
    pushes: list[float] = []
    copied: list[int] = []
    res = None
    with PeakSampler(daemon_pid) as ds, PeakSampler(me) as cs:
        for i in range(reps):
            stamp(big, b"push%04d" % i)
            # Past the store's 1 s "racy" window, so the re-push below can use its stat cache.
            await asyncio.sleep(1.1)
            t = time.perf_counter()
            res, n = await push(client, d)
            pushes.append(time.perf_counter() - t)
            copied.append(n)
    assert res is not None
    d_after, c_after = proc_status(daemon_pid), proc_status(me)
    d_peak = max(ds.peak, d_after["VmHWM"] if hwm_ok else 0)
    c_peak = max(cs.peak, c_after["VmHWM"] if hwm_ok else 0)

    t = time.perf_counter()
    res2, copied2 = await push(client, d)
    repush_s = time.perf_counter() - t
    shutil.rmtree(d)
    med = statistics.median
    return {
        "size_bytes": size,
        "make_file_s": made_s,
        "cp_s": cp,
        "sync_s": syn,
        "sha256_s": sha,
        "push_s": pushes,
        "baseline_median_s": med(cp) + med(sha),
        "push_median_s": med(pushes),
        "push_copied_bytes": copied,
        "version": res.version.number,
        "daemon_rss_before": d_before,
        "daemon_rss_growth": d_peak - d_before,
        "client_rss_before": c_before,
        "client_rss_growth": c_peak - c_before,
        "peak_from": "VmHWM + sampling" if hwm_ok else "sampling every 5 ms",
        "repush_s": repush_s,
        "repush_copied_bytes": copied2,
        "repush_created": res2.created,
        "repush_same_version": res2.version.number == res.version.number,
    }


async def modeltui_side(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    daemon = Daemon(work / "daemon")
    daemon.start()
    assert daemon.proc is not None
    how, push = pick_push()
    out: dict[str, Any] = {}
    try:
        client = await connect_retry(daemon.socket)
        try:
            out.update(await registry_side(client, work, args.versions, args.repeat, how, push))
            if args.ingest_gib > 0:
                out["ingest"] = await ingest_side(
                    client, daemon.proc.pid, work, args.ingest_gib, args.ingest_reps, push
                )
        finally:
            await client.close()
    except Exception:
        print(daemon.log(), file=sys.stderr)
        raise
    finally:
        daemon.stop()
    return out


# -- MLflow ------------------------------------------------------------------------------------------------
def mlflow_side(args: argparse.Namespace, work: Path) -> dict[str, Any] | None:
    if args.skip_mlflow:
        return None
    if not MLFLOW_PY.exists():
        print(
            f"no MLflow venv at {MLFLOW_PY.parent.parent}: run bash bench/registry/setup_mlflow.sh "
            "(or pass --skip-mlflow)",
            file=sys.stderr,
        )
        return None
    proc = subprocess.run(
        [
            str(MLFLOW_PY),
            str(HERE / "mlflow_side.py"),
            "--workdir",
            str(work / "mlflow"),
            "--versions",
            str(args.versions),
            "--repeat",
            str(args.repeat),
            "--name",
            MODEL,
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=work,
    )
    if proc.returncode != 0:
        print(proc.stderr[-4000:], file=sys.stderr)
        raise RuntimeError(f"mlflow_side.py exited with {proc.returncode}")
    shutil.rmtree(work / "mlflow", ignore_errors=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# -- report ------------------------------------------------------------------------------------------------
Row = tuple[str, str, str, str, str, str]


def rows(m: dict[str, Any], p: dict[str, Any] | None) -> list[Row]:
    out: list[Row] = []

    def verdict(ok: bool | None) -> str:
        return "-" if ok is None else ("PASS" if ok else "FAIL")

    def add(figure: str, ours: str, peer: str, ratio: float | None, target: str, ok: bool | None) -> None:
        out.append((figure, ours, peer, "-" if ratio is None else f"{ratio:.2f}", target, verdict(ok)))

    mr, ml, ma = m["register"], m["list"], m["alias"]
    if p is not None:
        ratio = mr["rate_per_s"] / p["register"]["rate_per_s"]
        add(
            "register versions/s",
            f"{mr['rate_per_s']:.0f}",
            f"{p['register']['rate_per_s']:.0f}",
            ratio,
            ">= 5",
            ratio >= 5,
        )
        if "register_raw" in m:
            raw = m["register_raw"]["rate_per_s"]
            ratio = raw / p["register"]["rate_per_s"]
            add(
                "register, bare protocol", f"{raw:.0f}", f"{p['register']['rate_per_s']:.0f}", ratio, ">= 5", ratio >= 5
            )
        ratio = ml["p50_ms"] / p["list"]["p50_ms"]
        add(
            f"list {ml['items']} versions p50",
            f"{ml['p50_ms']:.2f} ms",
            f"{p['list']['p50_ms']:.2f} ms",
            ratio,
            "<= 0.10",
            ratio <= 0.10,
        )
        with_objects = ml["p50_ms"] + ml["objects"]["p50_ms"]
        ratio = with_objects / p["list"]["p50_ms"]
        add("  … then as objects", f"{with_objects:.2f} ms", f"{p['list']['p50_ms']:.2f} ms", ratio, "(info)", None)
        ratio = ma["p50_ms"] / p["alias"]["p50_ms"]
        add(
            "resolve alias p50",
            f"{ma['p50_ms']:.3f} ms",
            f"{p['alias']['p50_ms']:.3f} ms",
            ratio,
            "<= 0.20",
            ratio <= 0.20,
        )
    else:
        add("register versions/s", f"{mr['rate_per_s']:.0f}", "(skipped)", None, ">= 5", None)
        if "register_raw" in m:
            raw = m["register_raw"]["rate_per_s"]
            add("register, bare protocol", f"{raw:.0f}", "(skipped)", None, ">= 5", None)
        add(f"list {ml['items']} versions p50", f"{ml['p50_ms']:.2f} ms", "(skipped)", None, "<= 0.10", None)
        add("resolve alias p50", f"{ma['p50_ms']:.3f} ms", "(skipped)", None, "<= 0.20", None)
    ing = m.get("ingest")
    if ing:
        gib = ing["size_bytes"] / (1 << 30)
        ratio = ing["push_median_s"] / ing["baseline_median_s"]
        add(
            f"push {gib:g} GiB",
            f"{ing['push_median_s']:.2f} s",
            f"{ing['baseline_median_s']:.2f} s (cp+sha256)",
            ratio,
            "<= 1.5",
            ratio <= 1.5,
        )
        grow = ing["daemon_rss_growth"] / MIB
        add("daemon RSS growth", f"{grow:.1f} MiB", "-", None, "< 100 MiB", grow < 100)
        grow = ing["client_rss_growth"] / MIB
        add("client RSS growth", f"{grow:.1f} MiB", "-", None, "< 100 MiB", grow < 100)
        add(
            "re-push unchanged: copied",
            f"{ing['repush_copied_bytes']} B",
            "-",
            None,
            "0 B",
            ing["repush_copied_bytes"] == 0 and not ing["repush_created"],
        )
        add("re-push unchanged: time", f"{ing['repush_s'] * 1000:.1f} ms", "-", None, "-", None)
    return out


def table(rs: list[Row], markdown: bool = False) -> str:
    head: Row = ("figure", "modeltui", "MLflow / peer", "ratio", "target", "result")
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r_) + " |" for r_ in rs]
        return "\n".join(lines)
    widths = [max(len(x[i]) for x in [head, *rs]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths)), *(fmt.format(*x) for x in rs)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--versions", type=int, default=1000, help="versions to register (default 1000)")
    ap.add_argument("--repeat", type=int, default=50, help="timed list / alias calls (default 50)")
    ap.add_argument("--ingest-reps", type=int, default=3, help="ingest pushes and baselines (median)")
    ap.add_argument("--skip-mlflow", action="store_true", help="measure modeltui only")
    ap.add_argument("--ingest-gib", type=float, default=1.0, help="size of the ingest file; 0 skips it")
    ap.add_argument("--workdir", type=Path, default=None, help="parent of the temp directory (default: $TMPDIR)")
    ap.add_argument("--json", type=Path, default=None, help="also write all raw figures here")
    ap.add_argument("--markdown", type=Path, default=None, help="also write the table here (markdown)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="modeltui-bench-", dir=args.workdir))
    started = datetime.now(UTC)
    try:
        peer = mlflow_side(args, work)
        ours = asyncio.run(modeltui_side(args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rs = rows(ours, peer)
    info = (
        f"{started:%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {args.versions} versions, {args.repeat} repeats, "
        f"push via {ours['push_path']}" + (f", MLflow {peer['mlflow_version']}" if peer else "")
    )
    print(info)
    print(table(rs))
    raw = {"when": started.isoformat(), "info": info, "modeltui": ours, "mlflow": peer}
    if args.json:
        args.json.write_text(json.dumps(raw, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(info + "\n\n" + table(rs, markdown=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
