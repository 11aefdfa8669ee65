"""bench/tui: the TUI as an operator feels it, on a real pty, against a real daemon (issue 16's figures).

    .venv/bin/python bench/tui/run.py [--models 10000] [--samples 30] [--deployments 50] [--idle-seconds 60]
                                      [--skip-ssh] [--skip-peer] [--results bench/tui/RESULTS.md] [--json F]

The script starts its own ``modeltuid`` (temp state directory and socket), pushes models through the socket
(tests/helpers/bulk_models.py: one upload, then one ``versions.push`` per name), and runs ``modeltui`` (the console
script of this venv; a warm venv: one untimed start first) on a pty of 80x24 that it opens itself. Over
SSH means ``ssh -tt`` to a private ``sshd`` on 127.0.0.1 (tests/helpers/sshd.py) that runs the same TUI: every
byte crosses a real SSH connection, as when an operator works on a remote host.

Figures (each printed with the issue's target and, where there is one, the ratio against the peer):
- first paint: exec of ``modeltui`` to the first model name drawn, with an empty registry (the empty-state
  text instead), a few models, and 10,000 models (median of ``--paints`` starts each);
- key to screen with 10,000 models, locally and over SSH: a key written to the pty (j, k, G, g, ``/`` and
  the filter's letters) to the screen output settling (first byte of the redraw; last byte before 20 ms
  without output), p50/p95;
- filter: from the last letter of the filter text to the last byte of the filtered screen (before 300 ms of
  quiet, room for a debounce), checked to show matching names only;
- idle over SSH: bytes per minute on each top-level view over one shared window, while ``--deployments``
  python-flavor deployments (process backend) are restarted one at a time now and then, and the CPU the
  remote TUI processes use over that window (/proc/PID/stat).

The peer: k9s cannot run here (no Kubernetes API to point it at, and it is no PyPI or Debian package), so
the peer is Textual's own minimal DataTable app with the same 10,000 names (bench/tui/peer_datatable.py)
on the same pty, locally and over the same SSH: the floor of a Textual TUI on this machine. Not a CI gate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.tui.terminal import PtyProc, proc_cpu  # noqa: E402
from daemon.protocol import requests as q  # noqa: E402
from modeltui.client import connect  # noqa: E402
from tests.helpers.bulk_models import load_models  # noqa: E402
from tests.helpers.daemon import DaemonProcess, daemon_env  # noqa: E402
from tests.helpers.models import python_model  # noqa: E402
from tests.helpers.sshd import SshServer, sshd_binary, start_sshd  # noqa: E402

PY = sys.executable
MODELTUI = str(Path(PY).with_name("modeltui")) if Path(PY).with_name("modeltui").exists() else None
PEER = ROOT / "bench" / "tui" / "peer_datatable.py"
NAME = re.compile(r"\bbulk-\d{5}\b")
EMPTY = "registry is empty"
#: Matches bulk-00777 and bulk-07770 .. bulk-07779 of 10,000 (tests/helpers/bulk_models.py names).
FILTER_TEXT = "0777"
QUIET = 0.020
FILTER_QUIET = 0.300

TARGETS = {
    "first_paint_few": ("first paint, a few models", "<= 0.5 s"),
    "first_paint_10k": ("first paint, --models models", "<= 1 s (10,000)"),
    "key_local": ("key to screen p95, local", "<= 30 ms"),
    "key_ssh": ("key to screen p95, over ssh", "<= 50 ms"),
    "filter": ("filter over --models models", "<= 50 ms (10,000)"),
    "idle_bytes": ("idle bytes per view over ssh", "<= 2 KB/min"),
    "idle_cpu": ("TUI CPU while idle", "<= 1 % of a core"),
}


@dataclass(frozen=True)
class View:
    """A top-level view: the keys that reach it from the start view, and text that shows it arrived."""

    name: str
    keys: str
    shows: str
    old_keys: str = ""
    """How the TUI before issue 16 reached it (``--source`` of an older tree), and what showed it then."""
    old_shows: str = ""


#: The top-level views, each reached with its ``:`` command from the start view (the models list); the text
#: that shows it arrived is a key of its footer.
VIEWS = (
    View("models", "", ""),
    View("home", ":home\r", "Next list"),
    View("deployments", ":deploy\r", "Logs", "d", "modeltui — deployments"),
    View("alerts", ":alerts\r", "Current", "A", "modeltui — alerts"),
    View("maint", ":maint\r", "Approve", "M", "modeltui — maintenance"),
    View("fleet", ":fleet\r", "Hosts", "F", "modeltui — fleet"),
    View("hosts", ":hosts\r", "Next host"),
)


def tui_argv(*extra: str) -> list[str]:
    return [MODELTUI, *extra] if MODELTUI else [PY, "-m", "modeltui", *extra]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# -- the parts -------------------------------------------------------------------------------------------
class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        (work / "home").mkdir()
        self.env = daemon_env(work)
        if args.source:
            self.env["PYTHONPATH"] = str(args.source.resolve())
        Path(self.env["MODELTUI_CONFIG"]).write_text("[exporter]\nenabled = false\n")
        self.daemon = DaemonProcess(Path(self.env["MODELTUI_STATE_DIR"]), Path(self.env["MODELTUI_SOCKET"]),
                                    env=self.env).start(timeout=60)  # fmt: skip
        self.sshd: SshServer | None = None
        self.out: dict[str, Any] = {"machine": machine()}
        self.first_bytes: list[float] = []
        """When modeltui's first byte reached the terminal, of every timed start."""

    # -- launching -----------------------------------------------------------------------------------------
    def local(self, argv: list[str]) -> PtyProc:
        return PtyProc(argv, self.env, cwd=self.env["HOME"])

    def over_ssh(self, argv: list[str], tag: str = "") -> PtyProc:
        assert self.sshd is not None
        keep = ("MODELTUI_SOCKET", "MODELTUI_STATE_DIR", "MODELTUI_CONFIG", "HOME", "PATH", "PYTHONPATH")
        env = " ".join(f"{k}={shlex.quote(self.env[k])}" for k in keep if k in self.env)
        remote = f"cd {shlex.quote(self.env['HOME'])} && exec env {env} BENCH_TUI_TAG={tag or 'x'} " + shlex.join(
            argv
        )
        # ssh itself gets the environment of whoever runs the bench (its agent and config are not used).
        return PtyProc(["ssh", "-tt", *self.sshd.ssh_args, self.sshd.host, remote], self.env, cwd=self.env["HOME"])

    # -- first paint ---------------------------------------------------------------------------------------
    def first_paint(self, launch: Callable[[], PtyProc], expect: str | re.Pattern[str], runs: int) -> list[float]:
        """Seconds from exec to ``expect`` drawn, per start; the first output byte's go to ``first_bytes``."""
        times = []
        for i in range(runs + 1):  # the first start warms the venv's files in the page cache: not counted
            tui = launch()
            try:
                shown = tui.wait_text(expect, timeout=60)
                if i:
                    times.append(shown - tui.started)
                    self.first_bytes.append(tui.chunks()[0][0] - tui.started)
            finally:
                tui.close()
        return times

    # -- keys ----------------------------------------------------------------------------------------------
    def keys_to_screen(self, tui: PtyProc, samples: int) -> dict[str, Any]:
        """Each key ``samples`` times (letters: once per filter round), waiting for the screen to settle
        and a pause between (an operator's pace, not a key-repeat storm)."""
        got: dict[str, list[tuple[float, float]]] = {}
        missed: dict[str, int] = {}

        def press(label: str, key: str, quiet: float = QUIET) -> tuple[float, float] | None:
            when, mark = tui.key(key)
            timing = tui.settle(when, mark, quiet, timeout=2.0)
            if timing is None:
                missed[label] = missed.get(label, 0) + 1
            else:
                got.setdefault(label, []).append(timing)
            time.sleep(0.05)
            return timing

        for _ in range(samples):
            press("j", "j")
        for _ in range(samples):
            press("k", "k")
        for _ in range(max(3, samples // 3)):
            press("down", "\x1b[B")
        reached = {"G": 0, "g": 0}
        last, first = f"bulk-{self.args.models:05d}", "bulk-00001"
        for _ in range(max(3, samples // 3)):
            press("G", "G")
            reached["G"] += last in tui.screen().text()
            press("g", "g")
            reached["g"] += first in tui.screen().text()
        for _ in range(max(3, samples // 6)):
            press("End", "\x1b[F")
            press("Home", "\x1b[H")
        filters: list[tuple[float, float]] = []
        shows_only_matches = True
        for _ in range(max(3, samples // 6)):
            press("/", "/")
            for letter in FILTER_TEXT[:-1]:
                press("letters", letter)
            when, mark = tui.key(FILTER_TEXT[-1])
            timing = tui.settle(when, mark, FILTER_QUIET)
            if timing is not None:
                filters.append(timing)
                got.setdefault("letters", []).append(timing)
            shown = NAME.findall(tui.screen().text())
            shows_only_matches &= bool(shown) and all(FILTER_TEXT in n for n in shown)
            press("esc", "\x1b", 0.1)
            press("esc", "\x1b", 0.1)
        # esc is reported on its own: a lone ESC byte waits out Textual's ESCDELAY (100 ms) before it is a key.
        every = [t[1] for label, ts in got.items() for t in ts if label != "esc"]
        return {
            "per_key": {label: summary(ts) for label, ts in got.items()},
            "missed": missed,
            "all": summary_values(every),
            "filter": summary(filters),
            "filter_shows_only_matches": shows_only_matches,
            "G_shows_last_model": f"{reached['G']} of {max(3, samples // 3)}",
            "g_shows_first_model": f"{reached['g']} of {max(3, samples // 3)}",
        }

    def navigate(self, tui: PtyProc, remote: bool) -> dict[str, Any]:
        tui.wait_text(NAME, timeout=60)
        time.sleep(1.0)  # the first answers, the footer
        return self.keys_to_screen(tui, self.args.samples)

    # -- idle ----------------------------------------------------------------------------------------------
    def deploy(self, count: int) -> list[str]:
        model = python_model(self.work / "dbl", name="dbl")
        done = self.daemon.cli("push", str(model))
        assert done.returncode == 0, done.stderr

        async def go() -> list[str]:
            client = await connect(self.daemon.socket, client_name="bench-tui")
            names: list[str] = []
            gate = asyncio.Semaphore(4)

            async def one(i: int) -> None:
                async with gate:
                    for attempt in (1, 2):  # a free port the daemon picked can be taken before the runtime binds
                        try:
                            await client.call(q.Deploy(ref="dbl:1", name=f"svc-{i:02d}", wait=True,
                                                       timeout_seconds=120))  # fmt: skip
                            names.append(f"svc-{i:02d}")
                            return
                        except Exception as exc:  # the report says how many were deployed
                            print(f"  deploy svc-{i:02d} (attempt {attempt}): {exc}", flush=True)

            try:
                await asyncio.gather(*(one(i) for i in range(count)))
            finally:
                await client.close()
            return sorted(names)

        return asyncio.run(go())

    def idle(self, names: list[str], seconds: float, churn: float) -> dict[str, Any]:
        """One TUI per view (over SSH, and the peer), all measured over the same window while the
        deployments are restarted one at a time every ``churn`` seconds."""
        tuis: dict[str, PtyProc] = {}
        try:
            for view in VIEWS:
                tui = self.over_ssh(tui_argv(), tag=view.name) if self.sshd else self.local(tui_argv())
                tuis[view.name] = tui
            if not self.args.skip_peer:
                launch = self.over_ssh if self.sshd else (lambda argv, tag="": self.local(argv))
                tuis["peer DataTable"] = launch([PY, str(PEER), str(self.args.models)], tag="peer")
            unreachable: dict[str, str] = {}
            for view in VIEWS:
                tui = tuis[view.name]
                tui.wait_text(NAME, timeout=90)
                # An older tree (--source, before issue 16) has no ``:`` commands: its own keys, where it had them.
                keys, shows = (view.old_keys, view.old_shows) if self.args.source else (view.keys, view.shows)
                if not view.keys:
                    continue
                mark = tui.mark()
                if not keys:
                    unreachable[view.name] = "no such view"
                    tuis.pop(view.name).close()
                    continue
                if keys.startswith(":"):
                    tui.key(":")
                    time.sleep(0.3)  # the command line opens
                    keys = keys[1:]
                tui.key(keys)
                try:
                    tui.wait_text(shows, mark, timeout=20)
                except TimeoutError:
                    unreachable[view.name] = f"{keys!r} did not show {shows!r}"
                    tuis.pop(view.name).close()
            if "peer DataTable" in tuis:
                tuis["peer DataTable"].wait_text(NAME, timeout=90)
            time.sleep(5)  # settle: first answers, learned refresh intervals
            pids = {name: self.tui_pid(name, tui) for name, tui in tuis.items()}
            cpu0 = {name: proc_cpu(pid) for name, pid in pids.items() if pid}
            restarts = 0
            start = time.monotonic()
            end = start + seconds
            next_churn = start + churn / 2
            while time.monotonic() < end:
                if names and time.monotonic() >= next_churn:
                    self.restart(names[restarts % len(names)])
                    restarts += 1
                    next_churn += churn
                time.sleep(0.2)
            end = time.monotonic()
            cpu1 = {name: proc_cpu(pid) for name, pid in pids.items() if pid}
            span = end - start
            return {
                "window_s": span,
                "restarts": restarts,
                "deployments": len(names),
                "bytes_per_min": {n: t.bytes_between(start, end) * 60 / span for n, t in tuis.items()},
                "cpu_percent": {n: (cpu1[n] - cpu0[n]) / span * 100 for n in cpu1},
                "over_ssh": self.sshd is not None,
                "unreachable": unreachable,
            }
        finally:
            for tui in tuis.values():
                tui.close()

    def restart(self, name: str) -> None:
        async def go() -> None:
            client = await connect(self.daemon.socket, client_name="bench-tui")
            try:
                await client.call(q.RestartDeployment(name=name))
            except Exception as exc:
                print(f"  restart {name}: {exc}", flush=True)
            finally:
                await client.close()

        asyncio.run(go())

    def tui_pid(self, tag: str, tui: PtyProc) -> int | None:
        """The TUI's own process: the child itself locally; over SSH the process sshd started with our tag."""
        if self.sshd is None:
            return tui.proc.pid
        want = f"BENCH_TUI_TAG={'peer' if tag.startswith('peer') else tag}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if want in (entry / "environ").read_bytes().split(b"\0") and b"python" in (
                    entry / "cmdline"
                ).read_bytes():
                    return int(entry.name)
        return None

    def stop(self) -> None:
        if self.sshd is not None:
            self.sshd.stop()
        self.daemon.stop(timeout=30)
        self.daemon.kill_deployments()


def summary(timings: list[tuple[float, float]]) -> dict[str, Any]:
    return {
        "n": len(timings),
        "first_byte_p50": pct([t[0] for t in timings], 50) if timings else None,
        "settled_p50": pct([t[1] for t in timings], 50) if timings else None,
        "settled_p95": pct([t[1] for t in timings], 95) if timings else None,
    }


def summary_values(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50": pct(values, 50) if values else None, "p95": pct(values, 95) if values else None}


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "load": os.getloadavg(),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


@contextlib.contextmanager
def section(title: str, out: dict[str, Any]) -> Iterator[None]:
    """One part of the run: a failure is recorded (and reported) and the next part still runs."""
    print(f"== {title}", flush=True)
    t = time.monotonic()
    try:
        yield
    except Exception as exc:
        out["errors"][title] = f"{type(exc).__name__}: {str(exc)[-1500:]}"
        print(f"   FAILED: {out['errors'][title]}", flush=True)
    print(f"   ({time.monotonic() - t:.0f} s)", flush=True)


# -- the run ---------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-tui-") as tmp:
        os.chdir(tmp)  # `python -m` puts the working directory first on sys.path: not this checkout's
        bench = Bench(args, Path(tmp))
        out = bench.out
        out["errors"] = {}
        try:
            if not args.skip_ssh:
                sshd = sshd_binary()
                if sshd is None:
                    raise SystemExit("no sshd: apt-get install openssh-server (or --skip-ssh)")
                bench.sshd = start_sshd(Path(tmp) / "ssh", sshd)
            if "paint" in args.parts:
                paints: dict[str, Any] = {}
                out["first_paint"] = paints
                with section("import modeltui.app", out):
                    out["import_s"] = import_seconds(bench.env, args.paints)
                with section("first paint", out):
                    paints["empty"] = bench.first_paint(lambda: bench.local(tui_argv()), EMPTY, args.paints)
                asyncio.run(load_models(bench.daemon.socket, 3))
                with section("first paint, a few models", out):
                    paints["few"] = bench.first_paint(lambda: bench.local(tui_argv()), NAME, args.paints)
                out["load_models_s"] = asyncio.run(load_models(bench.daemon.socket, args.models))  # 1-3: no-ops
                with section(f"first paint, {args.models} models", out):
                    paints["10k"] = bench.first_paint(lambda: bench.local(tui_argv()), NAME, args.paints)
                out["first_byte"] = list(bench.first_bytes)
                if not args.skip_peer:
                    peer = [PY, str(PEER), str(args.models)]
                    with section("first paint, peer", out):
                        paints["peer_10k"] = bench.first_paint(lambda: bench.local(peer), NAME, args.paints)
            else:
                out["load_models_s"] = asyncio.run(load_models(bench.daemon.socket, args.models))
            if "keys" in args.parts:
                keys: dict[str, Any] = {}
                out["keys"] = keys
                places = [("local", False)] + ([] if args.skip_ssh else [("ssh", True)])
                for place, remote in places:
                    for who, argv in [("modeltui", tui_argv())] + (
                        [] if args.skip_peer else [("peer", [PY, str(PEER), str(args.models)])]
                    ):
                        with section(f"keys {who} {place}", out):
                            tui = bench.over_ssh(argv, tag=f"keys-{who}") if remote else bench.local(argv)
                            try:
                                keys[f"{who}_{place}"] = bench.navigate(tui, remote)
                            finally:
                                tui.close()
            names: list[str] = []
            if "idle" in args.parts:
                with section(f"deploy {args.deployments}", out):
                    names = bench.deploy(args.deployments) if args.deployments else []
                    out["serving_pss_mb"] = serving_pss(bench.daemon) / 2**20
                with section(f"idle {args.idle_seconds:.0f} s", out):
                    out["idle"] = bench.idle(names, args.idle_seconds, args.churn_seconds)
        finally:
            bench.stop()
            os.chdir(ROOT)
    return out


def import_seconds(env: dict[str, str], runs: int) -> list[float]:
    """``python -c 'import modeltui.app'`` minus ``python -c pass``, each the median of ``runs``: the part of
    a first paint spent importing before anything can be drawn."""

    def median_run(code: str) -> float:
        times = []
        for _ in range(runs + 1):  # the first one warms the page cache, as for the first paints
            t = time.monotonic()
            subprocess.run([PY, "-c", code], env=env, check=True)
            times.append(time.monotonic() - t)
        return statistics.median(times[1:])

    return [median_run("import modeltui.app"), median_run("pass")]


def serving_pss(daemon: DaemonProcess) -> int:
    """Bytes the serving processes hold, shared pages (the zygote's preloaded modules) divided among them."""
    total = 0
    for pid in daemon.serving_pids():
        with contextlib.suppress(OSError, ValueError, StopIteration):
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
            total += int(next(line for line in rollup if line.startswith("Pss:")).split()[1]) * 1024
    return total


# -- the report ------------------------------------------------------------------------------------------
def report(out: dict[str, Any], args: argparse.Namespace) -> str:
    fp = out.get("first_paint", {})
    med = {k: statistics.median(v) for k, v in fp.items() if v}
    keys = out.get("keys", {})
    idle = out.get("idle")
    rows: list[tuple[str, str, str, str]] = []

    def ratio(a: float | None, b: float | None) -> str:
        return f"{a / b:.2f}x" if a and b else "-"

    many = (TARGETS["first_paint_10k"][0].replace("--models", f"{args.models:,}"), TARGETS["first_paint_10k"][1])
    for key, what, target in (("empty", "first paint, empty registry", "<= 0.5 s"),
                              ("few", *TARGETS["first_paint_few"]), ("10k", *many)):  # fmt: skip
        if key in med:
            rows.append((what, ms(med[key]), target, ratio(med[key], med.get("peer_10k")) if key == "10k" else "-"))
    if out.get("first_byte"):
        rows.append(("  of which: exec to the first byte written", ms(statistics.median(out["first_byte"])), "", ""))
    if "import_s" in out:
        app, bare = out["import_s"]
        rows.append(("  of which: `import modeltui.app` (python alone)", f"{ms(app)} ({ms(bare)})", "", ""))
    if "peer_10k" in med:
        rows.append(("  peer: first paint, same rows", ms(med["peer_10k"]), "", ""))
    for place, target in (("local", "key_local"), ("ssh", "key_ssh")):
        mine = keys.get(f"modeltui_{place}")
        if not mine:
            continue
        peer = keys.get(f"peer_{place}")
        rows.append((TARGETS[target][0] + " (all keys but esc)",
                     f"{ms(mine['all']['p95'])} (p50 {ms(mine['all']['p50'])})",
                     TARGETS[target][1], ratio(mine["all"]["p95"], peer and peer["all"]["p95"])))  # fmt: skip
        for label, s in mine["per_key"].items():
            ps = peer and peer["per_key"].get(label)
            rows.append((f"  {label!r} {place}", f"{ms(s['settled_p95'])} (p50 {ms(s['settled_p50'])}, "
                         f"first byte {ms(s['first_byte_p50'])}, n={s['n']})", "",
                         ratio(s["settled_p95"], ps and ps["settled_p95"])))  # fmt: skip
        f = mine["filter"]
        if f["n"]:
            pf = peer and peer["filter"]
            what = TARGETS["filter"][0].replace("--models", f"{args.models:,}")
            rows.append((f"{what} ({place}), p50 (p95 {ms(f['settled_p95'])})", ms(f["settled_p50"]) +
                         ("" if mine["filter_shows_only_matches"] else " (NOT only matches)"),
                         TARGETS["filter"][1], ratio(f["settled_p50"], pf and pf["settled_p50"])))  # fmt: skip
        rows.append((f"  G shows the last model / g the first ({place})",
                     f"{mine.get('G_shows_last_model', '-')} / {mine.get('g_shows_first_model', '-')}", "", ""))
        if mine["missed"]:
            rows.append((f"  keys with no redraw within 5 s ({place})", json.dumps(mine["missed"]), "", ""))
    if idle:
        where = "over ssh" if idle["over_ssh"] else "local"
        peer_bytes = idle["bytes_per_min"].get("peer DataTable")
        for view, rate in idle["bytes_per_min"].items():
            rows.append((f"idle {view} ({where})", f"{rate / 1024:.2f} KB/min", TARGETS["idle_bytes"][1],
                         ratio(rate, peer_bytes) if view != "peer DataTable" else "-"))  # fmt: skip
        for view, cpu in idle["cpu_percent"].items():
            rows.append((f"idle CPU {view}", f"{cpu:.2f} %", TARGETS["idle_cpu"][1], "-"))
        for view, why in idle.get("unreachable", {}).items():
            rows.append((f"idle {view}", f"not measured: {why}", "", ""))
    lines = [f"models: {args.models:,}" + (f" (loaded in {out['load_models_s']:.0f} s)" if "load_models_s" in out
                                           else "")]  # fmt: skip
    if idle:
        lines[0] += (f"; deployments: {idle['deployments']} "
                     f"(serving PSS {out.get('serving_pss_mb', 0):.0f} MB), "
                     f"restarted one at a time every {args.churn_seconds:.0f} s ({idle['restarts']} restarts in the "
                     f"{idle['window_s']:.0f} s idle window)")  # fmt: skip
    lines[0] += f"; source: {args.source or 'this checkout'}; machine: {json.dumps(out['machine'])}"
    lines += ["", "| figure | modeltui | target | ratio to peer |", "|---|---|---|---|",
              *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows)]  # fmt: skip
    for part, error in out.get("errors", {}).items():
        lines.append(f"\nFAILED {part}: `{error.splitlines()[-1] if error.splitlines() else error}`")
    return "\n".join(lines) + "\n"


def write_results(path: Path, table: str) -> None:
    """The new table on top; the one it replaces moves under "Earlier runs"."""
    head = "# bench/tui results\n\n"
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    old = path.read_text() if path.exists() else ""
    notes, _, earlier = old.partition("\n## Earlier runs\n")
    latest = notes.split("\n## Latest run", 1)
    prefix = latest[0] if old.strip() else head
    previous = ("\n## Latest run" + latest[1]).replace("## Latest run", "### Run", 1) if len(latest) > 1 else ""
    path.write_text(f"{prefix.rstrip()}\n\n## Latest run ({stamp})\n\n{table}\n## Earlier runs\n"
                    f"{previous}{earlier}")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=int, default=10_000)
    p.add_argument("--samples", type=int, default=30, help="presses of each navigation key")
    p.add_argument("--paints", type=int, default=5, help="timed starts per first-paint case")
    p.add_argument("--deployments", type=int, default=50)
    p.add_argument("--idle-seconds", type=float, default=60.0)
    p.add_argument("--churn-seconds", type=float, default=10.0, help="restart one deployment this often")
    p.add_argument("--source", type=Path, help="run the daemon and the TUI from this source tree instead: "
                   "`git archive` of a commit before issue 16, for a before/after comparison (views reached with "
                   "that TUI's own keys)")
    p.add_argument("--parts", type=lambda v: set(v.split(",")), default={"paint", "keys", "idle"},
                   help="which parts run, comma-separated: paint,keys,idle (default: all)")
    p.add_argument("--skip-ssh", action="store_true")
    p.add_argument("--skip-peer", action="store_true")
    p.add_argument("--results", type=Path, default=ROOT / "bench" / "tui" / "RESULTS.md")
    p.add_argument("--no-results", action="store_true", help="print only")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    out = run(args)
    table = report(out, args)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))
    if not args.no_results:
        write_results(args.results, table)


if __name__ == "__main__":
    main()
