"""APScheduler's routine lines ("Running job", "executed successfully": two on every scrape) are DEBUG, not
INFO; a job that fails still logs its error."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from daemon.logs import setup_logging
from daemon.settings import load_settings

APSCHEDULER_LINE = re.compile(r"^\S+ \S+ (?P<level>[A-Z]+) apscheduler[\w.]*: (?P<message>.*)$", re.M)


def scheduler_lines(log: str) -> list[tuple[str, str]]:
    """(level, message) of every line APScheduler logged."""
    return [(m["level"], m["message"]) for m in APSCHEDULER_LINE.finditer(log)]


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := check():
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def root_logging() -> Iterator[None]:
    """setup_logging configures the root logger: put it back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


async def run_jobs(ok_runs: int) -> int:
    """A real AsyncIOScheduler with a routine job (run ``ok_runs`` times) and one that fails once."""
    done = asyncio.Event()
    runs = 0

    async def routine() -> None:
        nonlocal runs
        runs += 1
        if runs >= ok_runs:
            done.set()

    async def broken() -> None:
        raise RuntimeError("the scrape broke")

    scheduler = AsyncIOScheduler()
    scheduler.add_job(routine, IntervalTrigger(seconds=0.05), id="routine")
    scheduler.add_job(broken, id="broken")
    scheduler.start()
    await asyncio.wait_for(done.wait(), 30)
    await asyncio.sleep(0.1)  # let the last run's "executed" line be written
    scheduler.shutdown(wait=False)
    return runs


def test_routine_job_runs_log_nothing_at_info_and_a_failing_job_still_logs_its_error(
    tmp_path: Path, root_logging: None
) -> None:
    settings = load_settings(tmp_path / "daemon.toml", state_dir=str(tmp_path / "state"), log_level="INFO",
                             socket=str(tmp_path / "s.sock"), environ={})  # fmt: skip
    setup_logging(settings, to_stderr=False)
    assert asyncio.run(run_jobs(3)) >= 3
    lines = scheduler_lines(settings.log_file.read_text())
    assert [level for level, _ in lines if level in ("INFO", "DEBUG")] == []
    assert any(level == "ERROR" and 'broken (trigger' in message and "raised an exception" in message
               for level, message in lines), lines  # fmt: skip
    assert "RuntimeError: the scrape broke" in settings.log_file.read_text()


def test_routine_job_runs_are_kept_at_debug(tmp_path: Path, root_logging: None) -> None:
    settings = load_settings(tmp_path / "daemon.toml", state_dir=str(tmp_path / "state"), log_level="DEBUG",
                             socket=str(tmp_path / "s.sock"), environ={})  # fmt: skip
    setup_logging(settings, to_stderr=False)
    asyncio.run(run_jobs(3))
    lines = scheduler_lines(settings.log_file.read_text())
    routine_runs = [m for level, m in lines if level == "DEBUG" and m.startswith('Running job "run_jobs')]
    assert routine_runs, lines
    assert [x for x in lines if x[0] == "INFO"] == []


def test_a_daemon_scraping_every_0_2_s_logs_no_scheduler_line_at_info(daemon_factory: Any) -> None:
    d = daemon_factory()
    config = "[monitor]\nscrape_interval_seconds = 0.2\n\n[exporter]\nenabled = false\n"
    Path(d.env["MODELTUI_CONFIG"]).write_text(config)
    d.env["MODELTUI_LOG_LEVEL"] = "DEBUG"  # so that the test sees the scrapes happen
    d.start()
    log = d.state_dir / "daemon.log"

    def scrapes() -> int:
        return sum("scrape_cycle" in m and "executed successfully" in m for _, m in scheduler_lines(log.read_text()))

    wait_for(lambda: scrapes() >= 3, "three scrapes")
    lines = scheduler_lines(log.read_text())
    assert [x for x in lines if x[0] == "INFO"] == []
