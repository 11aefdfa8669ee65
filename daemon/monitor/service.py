"""The monitor: one scrape cycle (targets → samples), rollups and retention, and the metrics query.

Time comes from ``clock`` (seconds since the epoch), so tests drive it without sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from daemon.protocol import results as r
from daemon.settings import MonitorSection

from .derive import KEPT, MIN_DRIFT_OBSERVATIONS, Drift, WindowData, stepped_data, summarize
from .expo import Reader
from .scrape import Target, scrape_all
from .store import MonitorStore

if TYPE_CHECKING:
    from daemon.deploy.manager import DeploymentManager

    from .alerts import Alerts

log = logging.getLogger("modeltuid.monitor")

#: Retention runs at most this often (rollups run every maintenance tick).
RETENTION_EVERY = 600.0
#: Windows up to this long (and within the raw retention) get 1-minute points; longer ones 1-hour points.
MINUTE_POINTS_UP_TO = 6 * 3600


def deployment_targets(manager: DeploymentManager) -> list[Target]:
    """The deployment manager's scrape targets as the scraper takes them (no instance: recorded as down)."""
    return [
        Target(name, "127.0.0.1", None)
        if inst is None
        else Target(
            name,
            "127.0.0.1",
            inst.admin_port,
            f"{inst.instance_id}/{inst.key}",
            inst.started_at.timestamp(),
            manager.admin_token(name),
        )
        for name, inst in manager.scrape_targets()
    ]


@dataclass(frozen=True)
class CycleReport:
    t: float
    targets: int
    up: int
    samples: int
    seconds: float


def feature_drift(d: Drift) -> r.FeatureDrift:
    """One feature's figures and the state clients show (never a verdict on too few observations)."""
    return r.FeatureDrift(psi=d.psi, ks=d.ks, count=d.count, state=d.state, min_count=MIN_DRIFT_OBSERVATIONS)


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


class Monitor:
    def __init__(
        self,
        settings: MonitorSection,
        store: MonitorStore,
        targets: Callable[[], Sequence[Target]],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.targets = targets
        self.clock = clock
        self.last_cycle: CycleReport | None = None
        self._last_retention = 0.0
        self._busy: set[asyncio.Task[object]] = set()
        self._reader = Reader(KEPT)
        #: The alert engine, evaluated after each cycle (set by the composition root; see alerts.py).
        self.alerts: Alerts | None = None

    async def scrape_cycle(self) -> CycleReport:
        """Scrape every target once and store the results in one transaction."""
        task = asyncio.current_task()
        if task is not None:
            self._busy.add(task)
        try:
            t = self.clock()
            started = time.monotonic()
            targets = list(self.targets())
            s = self.settings
            results = await scrape_all(
                targets, concurrency=s.scrape_concurrency, timeout_s=s.timeout_seconds, reader=self._reader
            )
            written = await asyncio.to_thread(self.store.write_cycle, t, results)
            report = CycleReport(t, len(results), sum(x.up for x in results), written, time.monotonic() - started)
            self.last_cycle = report
            for res in results:
                if not res.up:
                    log.debug("%s is down: %s", res.deployment, res.error)
            if self.alerts is not None:
                try:
                    await self.alerts.evaluate([res.deployment for res in results])
                except Exception:  # alerts never stop the scraping
                    log.exception("evaluating alerts failed")
            return report
        finally:
            if task is not None:
                self._busy.discard(task)

    async def maintain(self) -> None:
        """Compact frames into chunks, roll up completed hours; apply retention every ten minutes."""
        task = asyncio.current_task()
        if task is not None:
            self._busy.add(task)
        try:
            now = self.clock()
            s = self.settings
            # Lag a cycle behind, so a cycle that started before a boundary has been written.
            settled = now - s.scrape_interval_seconds - s.timeout_seconds - 1
            await asyncio.to_thread(self.store.compact, settled)
            await asyncio.to_thread(self.store.rollup, settled)
            if now - self._last_retention >= RETENTION_EVERY:
                self._last_retention = now
                await asyncio.to_thread(
                    self.store.retention,
                    now,
                    raw_seconds=s.raw_retention_hours * 3600,
                    hour_seconds=s.rollup_retention_days * 86400,
                )
        finally:
            if task is not None:
                self._busy.discard(task)

    async def wait_idle(self, limit_s: float = 30.0) -> None:
        """Wait for a cycle or maintenance run in flight (before the store is closed)."""
        busy = [t for t in self._busy if t is not asyncio.current_task()]
        if busy:
            await asyncio.wait(busy, timeout=limit_s)

    # -- query -----------------------------------------------------------------------------------------------

    def metrics(self, deployment: str, window_seconds: int, *, points: bool = True) -> r.DeploymentMetrics:
        """Blocking (SQLite): run it in a thread. Without ``points`` (alerts, the exporter), a window inside
        the raw retention is summed in one vectorised pass and no plot points are made."""
        end = self.clock()
        start = end - window_seconds
        raw = window_seconds <= self.settings.raw_retention_hours * 3600
        step = 60 if raw and window_seconds <= MINUTE_POINTS_UP_TO else 3600
        steps: dict[float, WindowData]
        if raw and not points:
            steps = {start: self.store.window(deployment, start, end)}
        elif raw:
            steps = stepped_data(self.store.raw_series(deployment, start, end), start, end, step)
        else:
            rolled = self.store.rolled_until() or start
            boundary = min(max(rolled, start), end)
            steps = self.store.rollups(deployment, start, boundary)
            tail = stepped_data(self.store.raw_series(deployment, boundary, end), boundary, end, step)
            for t, data in tail.items():
                steps.setdefault(t, WindowData()).add(data)
        total = WindowData()
        for t in sorted(steps):
            total.add(steps[t])
        summary = summarize(total, window_seconds)
        target = self.store.target(deployment)
        shown = []
        for t in sorted(steps) if points else ():
            # Each step against the window's reference (gauges are stored once, not in every step).
            part = summarize(WindowData(steps[t].counters, total.gauges), step)
            shown.append(
                r.MetricsPoint(
                    t=_dt(t),
                    request_rate=part.request_rate,
                    p95_seconds=part.latency[0.95],
                    f1=part.quality.f1 if part.quality else None,
                    drift_psi=max((d.psi for d in part.drift.values() if d.judged), default=None),
                )
            )
        q = summary.quality
        return r.DeploymentMetrics(
            deployment=deployment,
            window_seconds=window_seconds,
            start=_dt(start),
            end=_dt(end),
            up=target.up if target else None,
            last_scrape=_dt(target.last_scrape) if target else None,
            scrape_error=target.error if target else "",
            requests=summary.requests,
            request_rate=summary.request_rate,
            error_rate=summary.error_rate,
            client_error_rate=summary.client_error_rate,
            latency_p50_seconds=summary.latency[0.5],
            latency_p95_seconds=summary.latency[0.95],
            latency_p99_seconds=summary.latency[0.99],
            labelled=q.labelled if q else 0.0,
            accuracy=q.accuracy if q else None,
            precision=q.precision if q else None,
            recall=q.recall if q else None,
            f1=q.f1 if q else None,
            per_class={
                c: r.ClassMetrics(precision=s.precision, recall=s.recall, f1=s.f1, support=s.support)
                for c, s in (q.per_class.items() if q else ())
            },
            drift={f: feature_drift(d) for f, d in summary.drift.items()},
            step_seconds=step,
            points=shown,
        )

    def known(self, deployment: str) -> bool:
        return self.store.target(deployment) is not None

    def up(self, deployment: str) -> bool | None:
        """Whether the last scrape of ``deployment`` succeeded (None: never scraped). Blocking."""
        target = self.store.target(deployment)
        return None if target is None else target.up
