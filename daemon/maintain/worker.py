"""Worker processes for maintenance: evaluating a model on holdout data and running its training command.

The daemon never loads a model nor runs training code itself. Each job runs as a child process in its own
session (so its process group can be killed as a whole), under ``RLIMIT_AS`` (inherited by everything it
starts) and a wall-clock timeout. The calls block; the daemon runs them in a thread.

The memory limit is set by a tiny launcher (``python -c``) that calls ``setrlimit`` and then ``exec``s the
real command, rather than by ``preexec_fn``, which is unsafe in a process with threads.

How a failure is classified (:class:`WorkerError` ``kind``):

- ``timeout``: the wall-clock limit passed; the whole process group was killed with SIGKILL.
- ``memory``: the job failed and its output (this run's part of the log) names an allocation failure
  (``MemoryError``, numpy's "Unable to allocate", ``std::bad_alloc``, "Cannot allocate memory", "out of
  memory") — which is how ``RLIMIT_AS`` shows itself, since it makes allocations fail rather than killing —
  or it was killed by SIGKILL that this module did not send (most likely the kernel's OOM killer under a
  cgroup limit; another process sending SIGKILL would be misread as memory). It is a heuristic on the text.
- ``garbage``: the job exited 0 but its result is unusable (no or an invalid model directory, or no
  readable result line from the evaluation worker).
- ``cancelled``: :meth:`Cancel.cancel` killed the process group (an operator's ``maintain cancel``).
- ``failed``: any other non-zero exit status or death by a signal.
"""

from __future__ import annotations

import json
import math
import os
import select
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import daemon
from daemon import workload
from daemon.protocol.manifest import MANIFEST_FILE, parse_manifest

from .space import SearchSpec, search_argv

WorkerKind = Literal["failed", "timeout", "memory", "garbage", "cancelled"]

#: The metrics :func:`evaluate` computes, each mapped to whether a greater value is better.
METRICS: dict[str, bool] = {
    "accuracy": True,
    "precision": True,
    "recall": True,
    "f1": True,
    "roc_auc": True,
    "mae": False,
    "rmse": False,
    "r2": True,
}

#: Lines the evaluation worker prints (to stderr) before exiting 2 to say why it could not evaluate.
REASON_PREFIX = "modeltui-evaluate: "
#: The same for the search worker.
SEARCH_PREFIX = "modeltui-search: "
#: The search fits with ``n_jobs=1``; the numeric libraries would still start a thread per core each, which
#: on a serving host takes CPU from the deployments (and on 2 cores made one fit 15× slower). These are set
#: to 1 for the search unless the daemon's own environment sets them.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
#: How a training command reaches the network the way the daemon's host does: proxies (both spellings), the
#: CA bundles of OpenSSL, requests and curl, and pip's index settings.
NETWORK_VARIABLES = (
    "http_proxy", "https_proxy", "no_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_CERT", "PIP_FIND_LINKS", "PIP_NO_INDEX",
)  # fmt: skip
#: The only variables of the daemon's environment a worker gets (an allow-list: the daemon's environment may
#: hold credentials, and an operator's training command runs whatever the model's author wrote).
WORKER_ENV = (
    "PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "HOME", "TMPDIR", "CUDA_VISIBLE_DEVICES",
    *THREAD_VARIABLES, *NETWORK_VARIABLES,
)  # fmt: skip
#: How much of this run's log a WorkerError carries.
TAIL_CHARS = 4000
MEMORY_MARKERS = ("MemoryError", "Unable to allocate", "std::bad_alloc", "Cannot allocate memory", "out of memory")
PYTHON_NAMES = ("python", "python3")

# Runs with -I -S: no site, no environment; sets the address-space limit (and, run as the workload account,
# a umask that lets the daemon's group read what the worker writes), then becomes the real command.
_LAUNCHER = """\
import json, os, resource, sys
limit = int(sys.argv[1])
if sys.argv[2] != "-":
    os.umask(int(sys.argv[2], 8))
for made in json.loads(sys.argv[3]):  # output directories, made as the worker's own
    os.makedirs(made, exist_ok=True)
del sys.argv[2:4]
_, hard = resource.getrlimit(resource.RLIMIT_AS)
if hard != resource.RLIM_INFINITY:
    limit = min(limit, hard)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except OSError as exc:
    sys.stderr.write("modeltui-worker: cannot run %r: %s\\n" % (sys.argv[2], exc.strerror or exc))
    sys.exit(127)
"""


class WorkerError(Exception):
    """A worker failed: its exit status or signal, whether it timed out / ran out of memory, and the tail of
    its output.

    ``kind`` is "failed", "timeout", "memory" or "garbage" (see the module docstring); ``log_tail`` is the end
    of what this run wrote to the log; ``returncode`` is the exit status (negative: the signal that killed
    it; None when it never ran); ``pid`` is the worker's pid, which was also its process group id.
    ``str()`` is the message alone, without the log tail."""

    def __init__(
        self,
        message: str,
        *,
        kind: WorkerKind,
        log_tail: str = "",
        returncode: int | None = None,
        pid: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind: WorkerKind = kind
        self.log_tail = log_tail
        self.returncode = returncode
        self.pid = pid


@dataclass(frozen=True)
class Limits:
    timeout_seconds: float = 600.0
    memory_mb: int = 4096
    """``RLIMIT_AS`` of the worker (and its children): address space, which is more than resident memory."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.timeout_seconds) and self.timeout_seconds > 0):
            raise ValueError(f"timeout_seconds must be a positive number, not {self.timeout_seconds!r}")
        if self.memory_mb < 16:
            raise ValueError(f"memory_mb must be at least 16, not {self.memory_mb!r}")


class Cancel:
    """Lets another thread stop a job: :meth:`cancel` kills the process group of the worker running now
    (and refuses to start any later one). The pid is only killed while it is unreaped, so it cannot name a
    recycled process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self.cancelled = False
        self.reason = ""

    def cancel(self, reason: str) -> None:
        with self._lock:
            self.cancelled, self.reason = True, reason
            if self._pid is not None:
                with suppress(ProcessLookupError, PermissionError):
                    os.killpg(self._pid, signal.SIGKILL)

    def attach(self, pid: int) -> None:
        with self._lock:
            self._pid = pid
            if self.cancelled:
                with suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)

    def detach(self) -> None:
        with self._lock:
            self._pid = None


@dataclass(frozen=True)
class _Outcome:
    returncode: int
    timed_out: bool
    output: str
    """What this run appended to the log."""
    pid: int
    cancelled: bool = False


# ---- the public calls -----------------------------------------------------------------------------------


def evaluate(
    model_dir: Path,
    data: Path,
    target: str,
    metrics: list[str],
    limits: Limits,
    log: Path,
    cancel: Cancel | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, float]:
    """Score the model in ``model_dir`` on ``data`` and return ``{metric: value}`` for ``metrics``.

    ``data`` is a CSV file with a header; ``target`` is the label column, the inputs are the manifest's
    signature inputs (by name, in signature order) or, without a signature, the other columns in file order.
    The model is loaded and fed exactly as the serving runtime does it, in a worker process
    (``python -m daemon.maintain.evaluate``); the worker's stderr is appended to ``log``.

    Classification metrics ("accuracy", "precision", "recall", "f1") are macro averages over the labels seen
    in the targets or the predictions, with zero_division=0, like the live metrics; "roc_auc" needs a binary
    classifier with ``predict_proba`` (the positive class is ``classes_[1]``); "mae", "rmse", "r2" compare
    numeric predictions with the target. Raises ValueError for an unknown metric (before starting anything)
    and :class:`WorkerError` when the worker fails.
    """
    _check_metrics(metrics)
    model_dir, data = model_dir.resolve(), data.resolve()
    argv = [
        sys.executable,
        "-m",
        "daemon.maintain.evaluate",
        "--model-dir",
        str(model_dir),
        "--data",
        str(data),
        "--target",
        target,
        "--metrics",
        ",".join(metrics),
    ]
    # The directory that holds the daemon package: ``-m`` finds this very code there, whatever the cwd would
    # have shadowed (a model directory could hold a "daemon" package of its own).
    root = Path(daemon.__path__[0]).resolve().parent
    with tempfile.TemporaryFile() as result:
        outcome = _run(argv, cwd=root, limits=limits, log=log, stdout=result, what="evaluate", title=str(model_dir),
                       cancel=cancel, reads=(model_dir, data), env=env)  # fmt: skip
        if outcome.returncode != 0 or outcome.timed_out or outcome.cancelled:
            raise _failure("evaluating " + str(model_dir), outcome, limits)
        result.seek(0)
        raw = result.read(1024 * 1024)
    return _parse_result(raw, metrics, outcome)


def train(
    command: str,
    model_dir: Path,
    data: Path | None,
    output: Path,
    limits: Limits,
    log: Path,
    cancel: Cancel | None = None,
) -> Path:
    """Run the model's training command (``[training] command`` of its manifest) to make a challenger.

    Placeholders, replaced inside each shlex word (no shell is involved): ``{data}`` (absolute path of the
    training data; ValueError when the command uses it and ``data`` is None), ``{output}`` (absolute path of
    an empty directory, created here, to write the challenger in) and ``{model_dir}``. A first word "python"
    or "python3" becomes this interpreter (the daemon's environment has the model's libraries). The command
    runs with cwd=``model_dir``, in its own session, under the limits; stdout and stderr are appended to
    ``log``. After exit status 0, ``output`` must be a model directory: a valid ``modeltui.toml`` whose model
    file exists — else :class:`WorkerError` kind "garbage". Returns ``output``.
    """
    model_dir = model_dir.resolve()
    output = output.resolve()
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise ValueError(f"the training command cannot be split into words: {exc}") from None
    if not words:
        raise ValueError("the training command is empty")
    if data is None and "{data}" in command:
        raise ValueError("the training command uses {data}, but no training data was given")
    values = {"{data}": str(data.resolve()) if data is not None else "", "{output}": str(output)}
    values["{model_dir}"] = str(model_dir)
    argv = []
    for word in words:
        for key, value in values.items():
            word = word.replace(key, value)
        argv.append(word)
    if argv[0] in PYTHON_NAMES:
        argv[0] = sys.executable
    if not model_dir.is_dir():
        raise ValueError(f"{model_dir} is not a directory")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ValueError(f"{output} exists and is not an empty directory")
    output.mkdir(parents=True, exist_ok=True)
    title = shlex.join(argv)
    outcome = _run(argv, cwd=model_dir, limits=limits, log=log, stdout=None, what="train", title=title, cancel=cancel,
                   reads=(model_dir, data), writes=(output,))  # fmt: skip
    if outcome.returncode != 0 or outcome.timed_out or outcome.cancelled:
        raise _failure("the training command", outcome, limits)
    problem = check_model_dir(output)
    if problem is not None:
        raise WorkerError(
            f"the training command exited 0 but did not write a model directory: {problem}",
            kind="garbage",
            log_tail=_tail(outcome.output),
            returncode=0,
            pid=outcome.pid,
        )
    return output


def search(
    spec: SearchSpec,
    model_dir: Path,
    data: Path,
    target: str,
    metric: str,
    output: Path,
    limits: Limits,
    log: Path,
    cancel: Cancel | None = None,
) -> dict[str, Any]:
    """Make a challenger by the built-in hyper-parameter search (``python -m daemon.maintain.search``) over
    the champion in ``model_dir`` (or ``spec.estimator``), trained on ``data``, written to ``output`` (an
    empty directory, created here). Returns the worker's result: ``best_params``, ``cv_score``,
    ``candidates``, ``fits``, ``seconds``. Raises :class:`WorkerError` like :func:`train`."""
    output = output.resolve()
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ValueError(f"{output} exists and is not an empty directory")
    output.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, *search_argv(model_dir, data, target, metric, spec, output)]
    root = Path(daemon.__path__[0]).resolve().parent
    title = f"{spec.method} search of {model_dir}"
    with tempfile.TemporaryFile() as result:
        outcome = _run(argv, cwd=root, limits=limits, log=log, stdout=result, what="search", title=title,
                       cancel=cancel, env={name: os.environ.get(name, "1") for name in THREAD_VARIABLES},
                       reads=(model_dir, data), writes=(output,))  # fmt: skip
        if outcome.returncode != 0 or outcome.timed_out or outcome.cancelled:
            raise _failure("the search", outcome, limits)
        result.seek(0)
        raw = result.read(1024 * 1024)
    lines = [line for line in raw.decode("utf-8", "replace").splitlines() if line.strip()]
    try:
        got = json.loads(lines[-1]) if lines else None
    except ValueError:
        got = None
    problem = check_model_dir(output)
    if not isinstance(got, dict) or not isinstance(got.get("cv_score"), int | float) or problem is not None:
        why = problem or "printed no result"
        raise WorkerError(f"the search exited 0 but {why}", kind="garbage", log_tail=_tail(outcome.output),
                          returncode=0, pid=outcome.pid)  # fmt: skip
    return got


def check_model_dir(path: Path) -> str | None:
    """None when ``path`` holds a valid manifest and the model file it names, else what is wrong."""
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        return f"no {MANIFEST_FILE} in {path}"
    try:
        manifest = parse_manifest(manifest_path.read_bytes())
    except ValueError as exc:
        return f"{manifest_path} is invalid: {exc}"
    except OSError as exc:
        return f"cannot read {manifest_path}: {exc.strerror or exc}"
    model_file = path / manifest.model_path
    if not model_file.is_file():
        return f"{MANIFEST_FILE} names model_file {manifest.model_path!r}, which is not a file in {path}"
    return None


# ---- running a worker -----------------------------------------------------------------------------------


def _check_metrics(metrics: list[str]) -> None:
    if not metrics:
        raise ValueError("no metrics asked for")
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}; the metrics are {', '.join(METRICS)}")
    if len(set(metrics)) != len(metrics):
        raise ValueError("a metric is named twice")


def _run(
    argv: list[str],
    *,
    cwd: Path,
    limits: Limits,
    log: Path,
    stdout: IO[bytes] | None,
    what: str,
    title: str,
    cancel: Cancel | None = None,
    env: dict[str, str] | None = None,
    reads: tuple[Path | None, ...] = (),
    writes: tuple[Path, ...] = (),
) -> _Outcome:
    """Run ``argv`` under the limits; stderr (and stdout unless given) is appended to ``log``. It runs as the
    workload account when the daemon has one (:mod:`daemon.workload`), which is then given ``reads``
    to read and ``writes`` to write in."""
    if cancel is not None and cancel.cancelled:
        raise WorkerError(f"{what} not started: cancelled ({cancel.reason})", kind="cancelled")
    identity = workload.current()
    umask, made = "-", list[str]()
    if identity is not None:
        try:
            identity.check()
        except workload.WorkloadError as exc:
            raise WorkerError(f"{what} not started: {exc}", kind="failed") from None
        identity.share([p for p in reads if p is not None])
        made = [str(w) for w in writes if identity.make_room(w)]  # the worker makes them: they are its own
        umask = "007" if identity.switches else "-"
    memory = str(limits.memory_mb * 1024 * 1024)
    launcher = [sys.executable, "-I", "-S", "-c", _LAUNCHER, memory, umask, json.dumps(made)]
    if identity is not None:
        launcher = identity.wrap(launcher)
    env = worker_env(os.environ) | (env or {})
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as fh:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        header = f"=== {stamp} {what}: {title} (timeout {limits.timeout_seconds:g} s, memory {limits.memory_mb} MB)\n"
        fh.write(header.encode())
        fh.flush()
        start = fh.tell()
        proc = subprocess.Popen(
            [*launcher, *argv],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout if stdout is not None else fh,
            stderr=fh,
            start_new_session=True,
            close_fds=True,
        )
        if cancel is not None:
            cancel.attach(proc.pid)
        try:
            exited = _wait_exited(proc.pid, limits.timeout_seconds)
        finally:
            # The leader is a zombie now (or still running), so its pid still names its group: kill the group —
            # on a timeout the whole job, after an exit any stragglers it left behind — then reap the leader.
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            if cancel is not None:
                cancel.detach()
            returncode = proc.wait()
        cancelled = cancel is not None and cancel.cancelled
        with log.open("rb") as rf:
            rf.seek(start)
            output = rf.read().decode("utf-8", "replace")
        sep = "" if not output or output.endswith("\n") else "\n"
        if cancelled:
            end = "cancelled: process group killed"
        else:
            end = _status(returncode) if exited else "timed out: process group killed"
        fh.write(f"{sep}=== {end}\n".encode())
    if identity is not None:
        for path in made:
            identity.take_back(Path(path))  # the daemon's own copy of what the worker wrote (no link followed)
    return _Outcome(returncode, not exited, output, proc.pid, cancelled)


def worker_env(environ: Mapping[str, str]) -> dict[str, str]:
    """What a worker's environment starts from: :data:`WORKER_ENV` of ``environ``, nothing else."""
    return {name: environ[name] for name in WORKER_ENV if name in environ} | {"PYTHONUNBUFFERED": "1"}


def _wait_exited(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` (our child) has exited, without reaping it; False when ``timeout`` passed first."""
    deadline = time.monotonic() + timeout
    pidfd: int | None
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    try:
        while True:
            try:
                if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                    return True
            except ChildProcessError:  # someone else reaped it
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if pidfd is not None:
                select.select([pidfd], [], [], left)
            else:
                time.sleep(min(0.05, left))
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _status(returncode: int) -> str:
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"killed by {name}"


def _tail(text: str) -> str:
    if len(text) <= TAIL_CHARS:
        return text
    cut = text[-TAIL_CHARS:]
    return "…" + cut[cut.find("\n") + 1 :] if "\n" in cut else "…" + cut


def _failure(what: str, outcome: _Outcome, limits: Limits) -> WorkerError:
    tail = _tail(outcome.output)
    common: dict[str, Any] = {"log_tail": tail, "returncode": outcome.returncode, "pid": outcome.pid}
    if outcome.cancelled:
        return WorkerError(f"{what} was cancelled; its process group was killed", kind="cancelled", **common)
    if outcome.timed_out:
        return WorkerError(
            f"{what} ran longer than {limits.timeout_seconds:g} s; its process group was killed",
            kind="timeout",
            **common,
        )
    reasons = [
        line.split(": ", 1)[1]
        for line in outcome.output.splitlines()
        if line.startswith((REASON_PREFIX, SEARCH_PREFIX))
    ]
    status = _status(outcome.returncode)
    if any(marker in outcome.output for marker in MEMORY_MARKERS):
        return WorkerError(
            f"{what} ran out of memory (the limit is {limits.memory_mb} MB of address space): {status}",
            kind="memory",
            **common,
        )
    if outcome.returncode == -signal.SIGKILL:
        return WorkerError(
            f"{what} was killed by SIGKILL, not by the timeout: most likely the kernel's out-of-memory killer",
            kind="memory",
            **common,
        )
    detail = f": {reasons[-1]}" if reasons else ""
    return WorkerError(f"{what} failed ({status}){detail}", kind="failed", **common)


def _parse_result(raw: bytes, metrics: list[str], outcome: _Outcome) -> dict[str, float]:
    def garbage(why: str) -> WorkerError:
        return WorkerError(
            f"the evaluation worker exited 0 but {why}",
            kind="garbage",
            log_tail=_tail(outcome.output),
            returncode=0,
            pid=outcome.pid,
        )

    lines = [line for line in raw.decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines:
        raise garbage("printed no result")
    try:
        obj = json.loads(lines[-1])
    except ValueError:
        raise garbage(f"printed no JSON result: {lines[-1][:200]!r}") from None
    values = obj.get("metrics") if isinstance(obj, dict) else None
    if not isinstance(values, dict):
        raise garbage(f"printed no metrics: {lines[-1][:200]!r}")
    out: dict[str, float] = {}
    for name in metrics:
        value = values.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise garbage(f"gave no number for {name}: {value!r:.80}")
        out[name] = float(value)
    return out
