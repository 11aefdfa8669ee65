"""The daemon's logging: a rotating file in the state directory, and stderr (unless detached).

``[daemon] log_format`` picks ``text`` (``TIME LEVEL LOGGER: MESSAGE``) or ``json`` (one object per line:
``time`` ISO 8601, ``level``, ``logger``, ``message``, and ``exc_info`` as text when there is one). Under
systemd, when ``$JOURNAL_STREAM`` names the stream stderr is, each stderr line starts with its syslog
priority (``<3>`` error … ``<7>`` debug) and carries no timestamp: journald records both.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from daemon.settings import Settings

Format = Literal["text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"
LOG_FILE_BYTES = 10 * 1024 * 1024
LOG_FILE_BACKUPS = 3


def syslog_priority(levelno: int) -> int:
    """The syslog priority of a logging level: 2 critical, 3 error, 4 warning, 6 info, 7 debug."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


class JsonFormatter(logging.Formatter):
    """One JSON object per line; no timestamp when ``timestamps`` is false (journald adds its own)."""

    def __init__(self, *, timestamps: bool = True) -> None:
        super().__init__()
        self.timestamps = timestamps

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {}
        if self.timestamps:
            obj["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        obj |= {"level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            record.exc_text = record.exc_text or self.formatException(record.exc_info)
        if record.exc_text:
            obj["exc_info"] = record.exc_text
        if record.stack_info:
            obj["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(obj, ensure_ascii=False, default=str)


class JournalFormatter(logging.Formatter):
    """Prefixes every line of a record (a traceback too) with its syslog priority, for journald."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in self.inner.format(record).split("\n"))


class RoutineSchedulerLines(logging.Filter):
    """APScheduler logs every job run at INFO ("Running job", "executed successfully"): two lines on every
    scrape. Its INFO lines are routine, so they become DEBUG (kept only when the daemon logs at debug); its
    warnings and errors (a missed run, a job that raised) pass unchanged. A handler filter, because the
    records come from several ``apscheduler.*`` loggers."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO or not record.name.startswith("apscheduler"):
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def make_formatter(fmt: Format, *, timestamps: bool = True) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter(timestamps=timestamps)
    return logging.Formatter(TEXT_FORMAT if timestamps else JOURNAL_TEXT_FORMAT)


def stream_is_journal(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """True when ``stream`` is the journald stream systemd connected (``$JOURNAL_STREAM`` = ``DEV:INODE``)."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    dev, sep, ino = value.partition(":")
    if not sep or not dev.isdigit() or not ino.isdigit():
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # closed, or not backed by a descriptor
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def stream_handler(
    stream: TextIO, fmt: Format = "text", environ: Mapping[str, str] | None = None
) -> logging.StreamHandler[TextIO]:
    """A handler for ``stream``: journald's form when it is the journal stream, else ``fmt`` as it is."""
    handler = logging.StreamHandler(stream)
    if stream_is_journal(stream, environ):
        handler.setFormatter(JournalFormatter(make_formatter(fmt, timestamps=False)))
    else:
        handler.setFormatter(make_formatter(fmt))
    return handler


def setup_logging(settings: Settings, *, to_stderr: bool) -> None:
    """Root logger at ``settings.log_level``: the rotating ``daemon.log`` in the state dir (0600), and
    stderr unless the daemon runs detached."""
    settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    root = logging.getLogger()
    root.setLevel(settings.log_level)
    old_umask = os.umask(0o077)
    try:
        file_handler = logging.handlers.RotatingFileHandler(
            settings.log_file, maxBytes=LOG_FILE_BYTES, backupCount=LOG_FILE_BACKUPS
        )
    finally:
        os.umask(old_umask)
    file_handler.setFormatter(make_formatter(settings.log_format))
    handlers: list[logging.Handler] = [file_handler]
    if to_stderr:
        handlers.append(stream_handler(sys.stderr, settings.log_format))
    for handler in handlers:
        handler.addFilter(RoutineSchedulerLines())
        root.addHandler(handler)
