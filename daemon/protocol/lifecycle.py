"""What a client can learn about a daemon that does not answer: its last start's output, and when and why it
last stopped.

Both files live beside the socket, the one path the daemon and its clients both know before any connection:

* ``SOCKET.start.log``: the output (stderr) of the last embedded start. The client that starts a daemon
  sends its stderr there, so whatever kills the daemon before it can log (a missing package, a bad config,
  an unwritable state directory) reaches the user, with a file to read.
* ``SOCKET.last-run.json``: :class:`LastRun`, written by the daemon once it holds the socket's lock
  (``running``), again when it stops cleanly (``stopped``, with the signal or request that stopped it) or
  dies of an exception (``crashed``, with the exception's last line). A record still saying ``running``
  while nothing answers means the daemon was killed without a chance to write (SIGKILL, out of memory, the
  host going down).

Standard library and pydantic only: both sides import this.
"""

from __future__ import annotations

import contextlib
import os
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

START_LOG_SUFFIX = ".start.log"
RECORD_SUFFIX = ".last-run.json"
#: How much of the start log is read for its last line (a traceback's last line is the exception).
TAIL_BYTES = 16 * 1024


class LastRun(BaseModel):
    """The daemon's own account of its last run on a socket."""

    model_config = ConfigDict(extra="ignore")

    pid: int
    state: Literal["running", "stopped", "crashed"]
    started_at: datetime
    stopped_at: datetime | None = None
    #: what stopped it: "SIGTERM", "a daemon stop request", or an exception's last line
    reason: str = ""
    #: the daemon's own log file
    log_file: str = ""


def start_log_path(socket: Path) -> Path:
    return socket.with_name(socket.name + START_LOG_SUFFIX)


def record_path(socket: Path) -> Path:
    return socket.with_name(socket.name + RECORD_SUFFIX)


def write_record(socket: Path, record: LastRun) -> None:
    """Replace the record atomically (a reader sees the old one or the new one, never half of either)."""
    path = record_path(socket)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(record.model_dump_json() + "\n")
    os.replace(tmp, path)


def read_record(socket: Path) -> LastRun | None:
    """The last record, or None when there is none or it cannot be read."""
    try:
        return LastRun.model_validate_json(record_path(socket).read_bytes())
    except (OSError, ValidationError, ValueError):
        return None


def last_line(path: Path) -> str:
    """What a text file's end says went wrong ("" when it holds nothing): the exception line of its last
    traceback (``Type: message``, as Python prints it after the frames), else its last non-blank line."""
    try:
        with path.open("rb") as fh:
            with contextlib.suppress(OSError):
                fh.seek(-TAIL_BYTES, os.SEEK_END)
            tail = fh.read()
    except OSError:
        return ""
    return error_line(tail.decode("utf-8", errors="replace"))


def error_line(text: str) -> str:
    """The exception line of the last traceback in ``text``, else its last non-blank line."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last):")]
    if starts:
        for line in lines[starts[-1] + 1 :]:
            if not line[0].isspace():
                return line
    return lines[-1].strip() if lines else ""


def exception_line(exc: BaseException) -> str:
    """``Type: message`` (the message's first line), as a traceback's exception line starts."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs (it may belong to another user); a zombie (dead, not yet reaped
    by its parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: the signal's answer is all there is
    return stat.rpartition(")")[2].split()[:1] != ["Z"]
