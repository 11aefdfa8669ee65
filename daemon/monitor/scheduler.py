"""The monitor's periodic jobs on an APScheduler 3 ``AsyncIOScheduler``: the scrape (every
``scrape_interval_seconds``) and rollups + retention (every minute). Both run at most one at a time and
coalesce missed runs, so a slow cycle delays the next one instead of piling up."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from .service import Monitor

log = logging.getLogger("modeltuid.monitor")

MAINTENANCE_SECONDS = 60.0


class MonitorScheduler:
    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.scheduler = AsyncIOScheduler(timezone=UTC)

    def start(self) -> None:
        s = self.monitor.settings
        now = datetime.now(UTC)
        self.scheduler.add_job(
            self.monitor.scrape_cycle,
            IntervalTrigger(seconds=s.scrape_interval_seconds, timezone=UTC),
            id="monitor.scrape",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(s.scrape_interval_seconds)),
            next_run_time=now + timedelta(seconds=min(1.0, s.scrape_interval_seconds)),
        )
        self.scheduler.add_job(
            self.monitor.maintain,
            IntervalTrigger(seconds=MAINTENANCE_SECONDS, timezone=UTC),
            id="monitor.maintain",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=int(MAINTENANCE_SECONDS),
            next_run_time=now + timedelta(seconds=5),
        )
        self.scheduler.start()
        log.info("monitoring: scraping every %g s", s.scrape_interval_seconds)

    async def shutdown(self) -> None:
        """Stop scheduling, then wait for a job in flight (its writes finish before the store closes)."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        await self.monitor.wait_idle()
