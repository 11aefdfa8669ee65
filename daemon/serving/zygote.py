"""A warm parent for serving processes: imports the heavy libraries once, then forks one child per instance.

A fresh ``python -m daemon.serving`` spends 1-1.5 s importing numpy, scikit-learn and skops before it
can load a model; a child forked from here starts with them imported and is ready after the model's own
load (tens of milliseconds for the example). Run by the daemon's process backend as::

    python -m daemon.serving.zygote --preload numpy,sklearn.ensemble,skops.io

Requests arrive as JSON lines on stdin, answers leave as JSON lines on stdout (each one ``os.write`` of
a whole line, so the SIGCHLD handler's lines never interleave with a reply):

* ``{"id": N, "argv": [...], "env": {...}, "log": PATH, "record": PATH, "label": {...}}`` → fork; the child
  starts its own session, appends stdout/stderr to ``log``, replaces its environment with ``env`` and
  runs the serving runtime with ``argv``. Before answering, the zygote writes ``record`` (``label`` plus
  pid and start time) so the daemon can find the child after a restart: a forked child's command line
  is the zygote's, not its own. Answer: ``{"id": N, "pid": P, "ticks": T}`` or ``{"id": N, "error": "..."}``.
  With ``"log_fd": true`` the log arrives as a descriptor on the ``--fd-socket`` datagram socket, sent
  just before the request (a zygote running as the workload account cannot open the daemon's log).
* When a child ends: ``{"exited": P, "status": S}`` (S < 0: killed by signal -S).

The zygote exits when stdin closes (the daemon went away); its children keep serving.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import signal
import socket
import sys
from typing import Any

#: the ``--fd-socket`` descriptor: closed in each child (no workload may take another one's log descriptor)
_fd_socket: int | None = None


def _say(message: dict[str, Any]) -> None:
    os.write(1, (json.dumps(message) + "\n").encode())


def _reap(signum: int, frame: object) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        with contextlib.suppress(OSError):
            _say({"exited": pid, "status": os.waitstatus_to_exitcode(status)})


def start_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return int(stat[stat.rindex(b")") + 2 :].split()[19])


def _child(req: dict[str, Any]) -> None:
    """In the forked child: become the serving process. Never returns."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        if _fd_socket is not None:
            os.close(_fd_socket)
        log = req["_log_fd"] if "_log_fd" in req else os.open(req["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        os.environ.clear()
        os.environ.update(req["env"])
        with contextlib.suppress(OSError), open("/proc/self/comm", "w") as comm:
            comm.write(str(req.get("label", {}).get("deployment", "serving"))[:15])  # what ps and top show
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - the process's own stdout
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        from .__main__ import main

        code = main(list(req["argv"]))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # report anything, then leave
        with contextlib.suppress(OSError):
            os.write(2, f"modeltui-serving: {type(exc).__name__}: {exc}\n".encode())
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _spawn(req: dict[str, Any]) -> dict[str, Any]:
    pid = os.fork()
    if pid == 0:
        _child(req)
    ticks = start_ticks(pid)
    record = {**req.get("label", {}), "pid": pid, "ticks": ticks}
    tmp = req["record"] + ".tmp"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640), "w") as f:
        os.fchmod(f.fileno(), 0o640)  # whatever the umask: the daemon reads it through the workload group
        json.dump(record, f)
    os.replace(tmp, req["record"])
    return {"id": req["id"], "pid": pid, "ticks": ticks}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m daemon.serving.zygote")
    ap.add_argument("--preload", default="numpy", help="comma-separated modules to import up front")
    ap.add_argument("--fd-socket", type=int, default=None, help="datagram socket the log descriptors come on")
    args = ap.parse_args(argv)
    global _fd_socket
    _fd_socket = args.fd_socket
    fds = socket.socket(fileno=args.fd_socket) if args.fd_socket is not None else None
    loaded = []
    for name in filter(None, args.preload.split(",")):
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception as exc:  # a missing optional library only costs its children time
            print(f"zygote: cannot preload {name}: {exc}", file=sys.stderr, flush=True)
    # Import the runtime too, so a child only loads its model.
    from . import __main__, app, batching, flavors, http, schema  # noqa: F401

    signal.signal(signal.SIGCHLD, _reap)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _say({"ready": loaded})
    for line in sys.stdin:
        req: Any = None
        try:
            req = json.loads(line)
            if req.get("log_fd") and fds is not None:
                _, got, _, _ = socket.recv_fds(fds, 16, 1)
                if not got:
                    raise ValueError("no log descriptor came with the request")
                req["_log_fd"] = got[0]
            try:
                answer = _spawn(req)
            finally:
                if "_log_fd" in req:
                    os.close(req["_log_fd"])
        except Exception as exc:  # one bad request must not end the zygote
            answer = {"id": req.get("id") if isinstance(req, dict) else None, "error": str(exc)}
        _say(answer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
