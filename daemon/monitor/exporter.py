"""The daemon's own Prometheus endpoint: ``GET /metrics`` on a loopback address (``[exporter]`` settings).

Every deployment's health, restarts, request rate, error ratio, latency quantiles, quality, drift and (when
an alerts engine is attached to the monitor) alert state, as the monitor derives them over
``window_seconds``. The derived values cost SQLite reads, so they are computed in a thread, at most once
per monitor scrape cycle (or per scrape interval when no cycle ran), and shared by every scrape in between;
concurrent scrapes wait for the one computation in flight. Rendering uses ``prometheus_client``'s
exposition code; the HTTP side is a minimal GET-only server on ``asyncio.start_server``
(one request per connection, answered with ``Connection: close``).

Names and labels are documented in docs/monitoring.md ("Exporter and Prometheus"). Labels are bounded:
``deployment`` (the deployments the daemon manages), ``class`` (at most :data:`MAX_CLASSES` per deployment,
the ones with most support) and ``feature`` (at most :data:`MAX_FEATURES`, the serving runtime's caps).
A value the monitor cannot derive (no requests, no feedback, no reference) has no series rather than NaN.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest

from daemon.protocol import results as r
from daemon.protocol.deploy import DeploymentInfo
from daemon.settings import ExporterSection

from .derive import MIN_DRIFT_OBSERVATIONS
from .service import Monitor

if TYPE_CHECKING:
    from .alerts import Alerts

log = logging.getLogger("modeltuid.exporter")

#: The serving runtime's caps (daemon/serving/metrics.py MAX_CLASSES, drift.py MAX_FEATURES).
MAX_CLASSES = 50
MAX_FEATURES = 100
#: Latency quantiles, one gauge each, named like ``modeltui metrics --json`` fields. Not one family with a
#: ``quantile`` label: that label belongs to summaries (promtool rejects it elsewhere), and a summary's
#: ``_sum``/``_count`` counters cannot be made from windowed quantiles.
QUANTILES = (("p50", "0.5"), ("p95", "0.95"), ("p99", "0.99"))
#: Alert series: at most this many (a rules engine gone wild cannot grow the exposition without bound).
MAX_ALERT_SERIES = 10_000

#: The classic text format, what ``generate_latest`` writes (whatever newer default the library advertises).
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
MAX_REQUEST_HEAD = 8192
REQUEST_TIMEOUT = 5.0

#: Every metric family the exporter can emit (the dashboard and alert-rule tests check against this).
METRIC_NAMES = (
    "modeltui_deployment_up",
    "modeltui_deployment_info",
    "modeltui_deployment_restarts_total",
    "modeltui_deployment_requests_per_second",
    "modeltui_deployment_error_ratio",
    "modeltui_deployment_client_error_ratio",
    "modeltui_deployment_latency_p50_seconds",
    "modeltui_deployment_latency_p95_seconds",
    "modeltui_deployment_latency_p99_seconds",
    "modeltui_deployment_labelled",
    "modeltui_deployment_accuracy",
    "modeltui_deployment_precision",
    "modeltui_deployment_recall",
    "modeltui_deployment_f1",
    "modeltui_deployment_class_precision",
    "modeltui_deployment_class_recall",
    "modeltui_deployment_class_f1",
    "modeltui_deployment_class_support",
    "modeltui_deployment_drift_psi",
    "modeltui_deployment_drift_ks",
    "modeltui_deployment_drift_observations",
    "modeltui_alert_firing",
    "modeltui_exporter_window_seconds",
    "modeltui_exporter_compute_seconds",
    "modeltui_exporter_computed_timestamp_seconds",
    "modeltui_monitor_last_cycle_timestamp_seconds",
    "modeltui_monitor_targets",
    "modeltui_monitor_targets_up",
)


@dataclass(frozen=True)
class AlertState:
    deployment: str
    rule: str
    severity: str
    firing: bool


@dataclass
class Snapshot:
    """What one computation saw: the deployments, their derived metrics, the alert states."""

    window_seconds: int
    deployments: list[DeploymentInfo]
    metrics: dict[str, r.DeploymentMetrics]
    alerts: list[AlertState] | None
    computed_at: float = 0.0
    compute_seconds: float = 0.0
    last_cycle: float | None = None
    targets: int | None = None
    targets_up: int | None = None


def alert_states(alerts: Alerts | None) -> list[AlertState] | None:
    """The alerts engine's current states, one per (deployment, rule), at most :data:`MAX_ALERT_SERIES`; None
    when the monitor has no engine (then the exposition has no alert family at all)."""
    if alerts is None:
        return None
    return _convert(alerts.states())


def _convert(items: Iterable[r.AlertStateInfo]) -> list[AlertState]:
    return [
        AlertState(item.deployment, item.rule, item.severity, item.state == "firing")
        for item in itertools.islice(items, MAX_ALERT_SERIES)
    ]


def _families(snap: Snapshot) -> Iterator[Metric]:
    """The exposition of one snapshot, family by family (each family's HELP says what it means)."""
    deployments = _DeploymentFamilies(snap.window_seconds)
    for dep in snap.deployments:
        deployments.add(dep, snap.metrics.get(dep.name))
    yield from deployments.families()
    if snap.alerts is not None:
        yield _alert_family(snap.alerts)
    yield from _exporter_families(snap)


class _DeploymentFamilies:
    """The per-deployment families of one exposition; :meth:`add` puts in one deployment's series."""

    def __init__(self, window_seconds: int) -> None:
        over = f" over the last {window_seconds} s"
        self.up = GaugeMetricFamily(
            "modeltui_deployment_up", "1 if the monitor's last scrape of the deployment succeeded",
            labels=["deployment"],
        )
        self.info = GaugeMetricFamily(
            "modeltui_deployment_info",
            "Always 1: what a deployment serves and its state",
            labels=["deployment", "model", "version", "backend", "state"],
        )
        self.restarts = CounterMetricFamily(
            "modeltui_deployment_restarts", "Restarts of the deployment's instance by its supervisor",
            labels=["deployment"],
        )
        self.rate = GaugeMetricFamily(
            "modeltui_deployment_requests_per_second", f"Model requests (/predict, /invocations) per second{over}",
            labels=["deployment"],
        )
        self.errors = GaugeMetricFamily(
            "modeltui_deployment_error_ratio", f"Share of model requests answered with status >= 500{over}",
            labels=["deployment"],
        )
        self.client_errors = GaugeMetricFamily(
            "modeltui_deployment_client_error_ratio", f"Share of model requests answered with status 4xx{over}",
            labels=["deployment"],
        )
        self.latency = {
            p: GaugeMetricFamily(
                f"modeltui_deployment_latency_{p}_seconds",
                f"The {q} quantile of model request latency{over}, from the runtime's histogram buckets",
                labels=["deployment"],
            )
            for p, q in QUANTILES
        }
        self.labelled = GaugeMetricFamily(
            "modeltui_deployment_labelled", f"Predictions that received a feedback label{over}",
            labels=["deployment"],
        )
        self.macro = {
            k: GaugeMetricFamily(
                f"modeltui_deployment_{k}", f"{desc} from labelled feedback{over}", labels=["deployment"]
            )
            for k, desc in (
                ("accuracy", "Accuracy"),
                ("precision", "Macro-averaged precision"),
                ("recall", "Macro-averaged recall"),
                ("f1", "Macro-averaged F1 score"),
            )
        }
        self.per_class = {
            k: GaugeMetricFamily(
                f"modeltui_deployment_class_{k}", f"{desc}{over}", labels=["deployment", "class"]
            )
            for k, desc in (
                ("precision", "Precision of one class"),
                ("recall", "Recall of one class"),
                ("f1", "F1 score of one class"),
                ("support", "Labelled predictions whose actual class is this one"),
            )
        }
        self.psi = GaugeMetricFamily(
            "modeltui_deployment_drift_psi",
            f"Population stability index of an input feature against its reference{over}",
            labels=["deployment", "feature"],
        )
        self.ks = GaugeMetricFamily(
            "modeltui_deployment_drift_ks",
            f"Kolmogorov-Smirnov statistic of an input feature against its reference{over}",
            labels=["deployment", "feature"],
        )
        self.observations = GaugeMetricFamily(
            "modeltui_deployment_drift_observations",
            f"Live observations of an input feature{over}; PSI and KS are exported only from "
            f"{MIN_DRIFT_OBSERVATIONS} on (fewer say nothing about drift)",
            labels=["deployment", "feature"],
        )

    def families(self) -> Iterator[Metric]:
        yield from (self.up, self.info, self.restarts, self.rate, self.errors, self.client_errors)
        yield from (*self.latency.values(), self.labelled, *self.macro.values(), *self.per_class.values())
        yield from (self.psi, self.ks, self.observations)

    def add(self, dep: DeploymentInfo, m: r.DeploymentMetrics | None) -> None:
        name = dep.name
        version = "" if dep.version is None else str(dep.version)
        self.info.add_metric([name, dep.model, version, dep.backend, dep.state], 1.0)
        self.restarts.add_metric([name], float(dep.restarts))
        self.up.add_metric([name], 1.0 if m is not None and m.up else 0.0)
        if m is None:
            return
        self._add_traffic(name, m)
        self._add_quality(name, m)
        self._add_drift(name, m)

    def _add_traffic(self, name: str, m: r.DeploymentMetrics) -> None:
        self.rate.add_metric([name], m.request_rate)
        if m.error_rate is not None:
            self.errors.add_metric([name], m.error_rate)
        if m.client_error_rate is not None:
            self.client_errors.add_metric([name], m.client_error_rate)
        for p, fam in self.latency.items():
            v = getattr(m, f"latency_{p}_seconds")
            if v is not None:
                fam.add_metric([name], v)

    def _add_quality(self, name: str, m: r.DeploymentMetrics) -> None:
        self.labelled.add_metric([name], m.labelled)
        for k, fam in self.macro.items():
            v = getattr(m, k)
            if v is not None:
                fam.add_metric([name], v)
        top = sorted(m.per_class.items(), key=lambda kv: (-kv[1].support, kv[0]))[:MAX_CLASSES]
        for cls, cm in sorted(top):
            for k, fam in self.per_class.items():
                fam.add_metric([name, cls], getattr(cm, k))

    def _add_drift(self, name: str, m: r.DeploymentMetrics) -> None:
        for feature, d in sorted(m.drift.items())[:MAX_FEATURES]:
            self.observations.add_metric([name, feature], d.count)
            if d.state != "not_enough_data":
                self.psi.add_metric([name, feature], d.psi)
                self.ks.add_metric([name, feature], d.ks)


def _alert_family(alerts: list[AlertState]) -> Metric:
    firing = GaugeMetricFamily(
        "modeltui_alert_firing", "1 while the alert rule fires, 0 while it is pending or resolved",
        labels=["deployment", "rule", "severity"],
    )
    seen: set[tuple[str, str, str]] = set()
    for a in alerts:
        key = (a.deployment, a.rule, a.severity)
        if key not in seen:  # one series per key: a duplicate would make the exposition invalid
            seen.add(key)
            firing.add_metric(list(key), 1.0 if a.firing else 0.0)
    return firing


def _exporter_families(snap: Snapshot) -> Iterator[Metric]:
    """The exporter's and the monitor's own state."""
    yield GaugeMetricFamily(
        "modeltui_exporter_window_seconds", "The window the derived deployment metrics cover",
        value=float(snap.window_seconds),
    )
    yield GaugeMetricFamily(
        "modeltui_exporter_compute_seconds", "How long the last computation of this exposition took",
        value=snap.compute_seconds,
    )
    yield GaugeMetricFamily(
        "modeltui_exporter_computed_timestamp_seconds", "When this exposition was computed (Unix time)",
        value=snap.computed_at,
    )
    if snap.last_cycle is not None:
        yield GaugeMetricFamily(
            "modeltui_monitor_last_cycle_timestamp_seconds", "When the monitor's last scrape cycle started",
            value=snap.last_cycle,
        )
    if snap.targets is not None and snap.targets_up is not None:
        yield GaugeMetricFamily("modeltui_monitor_targets", "Deployments scraped in the last cycle", value=snap.targets)
        yield GaugeMetricFamily(
            "modeltui_monitor_targets_up", "Deployments that answered in the last cycle", value=snap.targets_up
        )


class _Collector:
    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterable[Metric]:
        return [f for f in _families(self.snap) if f.samples]  # no HELP/TYPE lines for empty families


def render(snap: Snapshot) -> bytes:
    """The Prometheus text exposition (format 0.0.4) of a snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(snap))
    return generate_latest(registry)


class Exporter:
    """Computes and caches the exposition; serves it over HTTP between :meth:`start` and :meth:`stop`."""

    def __init__(
        self,
        settings: ExporterSection,
        monitor: Monitor,
        deployments: Callable[[], Sequence[DeploymentInfo]],
        *,
        max_age_seconds: float | None = None,
    ) -> None:
        self.settings = settings
        self.monitor = monitor
        self.deployments = deployments
        #: without a new monitor cycle, a cached exposition is recomputed after this long (the window slides)
        self.max_age_seconds = (
            monitor.settings.scrape_interval_seconds if max_age_seconds is None else max_age_seconds
        )
        self.computations = 0
        self._cache: tuple[object, float, bytes] | None = None
        self._lock = asyncio.Lock()
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    # -- the exposition --------------------------------------------------------------------------------------

    def _cycle_key(self) -> object:
        cycle = self.monitor.last_cycle
        return None if cycle is None else cycle.t

    async def exposition(self) -> bytes:
        """The current exposition: cached while the monitor has not completed another cycle."""
        async with self._lock:  # concurrent scrapes share one computation
            key = self._cycle_key()
            now = time.monotonic()
            if self._cache is not None:
                cached_key, at, body = self._cache
                if cached_key == key and now - at < self.max_age_seconds:
                    return body
            body = await self._compute()
            self._cache = (key, now, body)
            return body

    async def _compute(self) -> bytes:
        started = time.monotonic()
        deployments = list(self.deployments())  # on the loop: the manager's records are the loop's
        try:
            alerts = alert_states(self.monitor.alerts)
        except Exception:  # the alerts engine must not take the exporter down with it
            log.exception("alert states unavailable")
            alerts = None
        cycle = self.monitor.last_cycle
        window = self.settings.window_seconds
        names = [d.name for d in deployments]
        metrics = await asyncio.to_thread(self._derive, names, window)
        snap = Snapshot(
            window_seconds=window,
            deployments=deployments,
            metrics=metrics,
            alerts=alerts,
            computed_at=time.time(),
            last_cycle=cycle.t if cycle else None,
            targets=cycle.targets if cycle else None,
            targets_up=cycle.up if cycle else None,
        )
        snap.compute_seconds = time.monotonic() - started
        self.computations += 1
        return await asyncio.to_thread(render, snap)

    def _derive(self, names: list[str], window: int) -> dict[str, r.DeploymentMetrics]:
        """Blocking (SQLite), in a thread."""
        out: dict[str, r.DeploymentMetrics] = {}
        for name in names:
            try:
                out[name] = self.monitor.metrics(name, window, points=False)
            except Exception:  # one deployment's bad data must not hide the others
                log.exception("metrics of %s unavailable", name)
        return out

    # -- HTTP ------------------------------------------------------------------------------------------------

    @property
    def url(self) -> str | None:
        """``http(s)://HOST:PORT/metrics`` with the bound port, while serving."""
        if self._server is None or not self._server.sockets:
            return None
        host, port = self._server.sockets[0].getsockname()[:2]
        scheme = "https" if self.settings.tls_cert is not None else "http"
        return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}/metrics"

    async def start(self) -> str:
        """Bind and serve (HTTPS with ``tls_cert``/``tls_key``); returns the URL (port 0 in the settings: the
        port the system chose). A certificate that cannot be loaded raises (``ssl.SSLError`` is an OSError)."""
        s = self.settings
        tls = None
        if s.tls_cert is not None and s.tls_key is not None:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.minimum_version = ssl.TLSVersion.TLSv1_2
            await asyncio.to_thread(tls.load_cert_chain, s.tls_cert, s.tls_key)
        self._server = await asyncio.start_server(self._connection, s.host, s.port, limit=MAX_REQUEST_HEAD, ssl=tls)
        url = self.url
        assert url is not None
        return url

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._conns):
            task.cancel()
        if self._conns:
            await asyncio.wait(list(self._conns), timeout=5)
        await self._server.wait_closed()
        self._server = None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        try:
            await self._serve_one(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, asyncio.LimitOverrunError):
            pass
        except Exception:
            log.exception("exporter request failed")
        finally:
            if task is not None:
                self._conns.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
        except asyncio.LimitOverrunError:
            await _respond(writer, 431, b"request head too large\n")
            return
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            await _respond(writer, 400, b"malformed request line\n")
            return
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if target != b"/metrics":
            await _respond(writer, 404, b"not found: the exporter serves GET /metrics\n")
        elif method not in (b"GET", b"HEAD"):
            await _respond(writer, 405, b"method not allowed\n", extra=b"Allow: GET, HEAD\r\n")
        else:
            try:
                body = await self.exposition()
            except Exception:
                log.exception("computing the exposition failed")
                await _respond(writer, 500, b"the exposition could not be computed; see the daemon log\n")
                return
            await _respond(writer, 200, body, ctype=CONTENT_TYPE, head_only=method == b"HEAD")


_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed",
            431: b"Request Header Fields Too Large", 500: b"Internal Server Error"}


async def _respond(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    *,
    ctype: bytes = b"text/plain; charset=utf-8",
    extra: bytes = b"",
    head_only: bool = False,
) -> None:
    writer.write(
        b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n%s\r\n"
        % (status, _REASONS[status], ctype, len(body), extra)
    )
    if not head_only:
        writer.write(body)
    await writer.drain()
