"""The daemon's Prometheus exporter: promtool-clean exposition, one computation per monitor cycle, the
shipped Prometheus/Grafana files, and a real Prometheus scraping a real daemon with a real deployment."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal, cast

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from daemon.monitor.derive import MIN_DRIFT_OBSERVATIONS, Drift
from daemon.monitor.exporter import METRIC_NAMES, Exporter, Snapshot, render
from daemon.monitor.service import CycleReport, Monitor, feature_drift
from daemon.protocol import results as r
from daemon.protocol.alerts import Severity
from daemon.protocol.deploy import DeploymentInfo
from daemon.settings import ExporterSection
from tests.helpers.daemon import DaemonProcess, cli_json
from tests.helpers.endpoints import free_port, post
from tests.helpers.models import classifier
from tests.helpers.paths import REPO
from tests.helpers.prerequisites import need
from tests.helpers.waiting import wait_for

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
CONFIG = REPO / "config"


def info(name: str, state: str = "running", restarts: int = 0) -> DeploymentInfo:
    return DeploymentInfo.model_validate(
        {
            "name": name, "ref": f"{name}@production", "model": name, "version": 3, "backend": "process",
            "desired": "running", "state": state, "health": "healthy", "endpoint": "http://127.0.0.1:8000",
            "port": 8000, "restarts": restarts, "message": "", "env": {}, "options": {}, "instance": None,
            "created_at": NOW, "updated_at": NOW, "started_at": NOW,
        }
    )


def full_metrics(name: str, classes: int = 3, features: int = 2, observations: float = 500) -> r.DeploymentMetrics:
    """Every field set, class and feature names that need escaping included."""
    names = ['a"b', "back\\slash", "new\nline", *[f"c{i}" for i in range(classes)]][:classes]
    return r.DeploymentMetrics(
        deployment=name, window_seconds=300, start=NOW, end=NOW, up=True, last_scrape=NOW, requests=30,
        request_rate=0.1, error_rate=0.02, client_error_rate=0.01, latency_p50_seconds=0.002,
        latency_p95_seconds=0.01, latency_p99_seconds=0.05, labelled=20, accuracy=0.8, precision=0.75,
        recall=0.7, f1=0.72,
        per_class={
            c: r.ClassMetrics(precision=0.5, recall=0.6, f1=0.55, support=float(i)) for i, c in enumerate(names)
        },
        drift={f"x{i}": feature_drift(Drift(psi=0.1 * i, ks=0.05 * i, count=observations)) for i in range(features)},
        step_seconds=60,
    )


def alert(deployment: str, rule: str, severity: Severity, state: Literal["pending", "firing"]) -> r.AlertStateInfo:
    """One state as the alerts engine reports it (``Alerts.states()``)."""
    return r.AlertStateInfo(
        deployment=deployment, rule=rule, severity=severity, state=state, value=0.5, since=NOW, active_since=NOW
    )


def snapshot(alerts: list[r.AlertStateInfo] | None = None) -> Snapshot:
    from daemon.monitor.exporter import _convert

    return Snapshot(
        window_seconds=300,
        deployments=[info("churn", restarts=2), info("idle", state="crashloop")],
        metrics={"churn": full_metrics("churn"), "idle": full_metrics("idle").model_copy(
            update={"up": False, "error_rate": None, "latency_p99_seconds": None, "f1": None}
        )},
        alerts=None if alerts is None else _convert(alerts),
        computed_at=1e9, compute_seconds=0.01, last_cycle=1e9, targets=2, targets_up=1,
    )


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def promtool() -> str:
    path = shutil.which("promtool")
    need(path is not None, "promtool (Debian's prometheus package)")
    assert path is not None
    return path


def promtool_check_metrics(text: bytes) -> None:
    res = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, timeout=30, check=False)
    assert res.returncode == 0, (res.stdout + res.stderr).decode()
    assert not res.stdout.strip(), res.stdout.decode()


# -- exposition --------------------------------------------------------------------------------------------


def test_exposition_is_promtool_clean_and_holds_the_derived_values() -> None:
    alerts = [
        alert("churn", "f1 < 0.85 for 10m", "critical", "firing"),
        alert("idle", "p99", "warning", "pending"),
    ]
    body = render(snapshot(alerts))
    promtool_check_metrics(body)
    got = samples(body.decode())
    assert got[("modeltui_deployment_up", (("deployment", "churn"),))] == 1
    assert got[("modeltui_deployment_up", (("deployment", "idle"),))] == 0
    assert got[("modeltui_deployment_info", (("backend", "process"), ("deployment", "idle"), ("model", "idle"),
                                             ("state", "crashloop"), ("version", "3")))] == 1
    assert got[("modeltui_deployment_restarts_total", (("deployment", "churn"),))] == 2
    assert got[("modeltui_deployment_requests_per_second", (("deployment", "churn"),))] == 0.1
    assert got[("modeltui_deployment_error_ratio", (("deployment", "churn"),))] == 0.02
    assert got[("modeltui_deployment_latency_p99_seconds", (("deployment", "churn"),))] == 0.05
    assert got[("modeltui_deployment_f1", (("deployment", "churn"),))] == 0.72
    assert got[("modeltui_deployment_class_f1", (("class", 'a"b'), ("deployment", "churn")))] == 0.55
    assert got[("modeltui_deployment_class_support", (("class", "new\nline"), ("deployment", "churn")))] == 2
    assert got[("modeltui_deployment_drift_psi", (("deployment", "churn"), ("feature", "x1")))] == pytest.approx(0.1)
    assert got[("modeltui_deployment_drift_observations", (("deployment", "churn"), ("feature", "x1")))] == 500
    assert got[("modeltui_alert_firing", (("deployment", "churn"), ("rule", "f1 < 0.85 for 10m"),
                                          ("severity", "critical")))] == 1
    assert got[("modeltui_alert_firing", (("deployment", "idle"), ("rule", "p99"), ("severity", "warning")))] == 0
    # Values the monitor could not derive have no series (not NaN).
    assert ("modeltui_deployment_f1", (("deployment", "idle"),)) not in got
    assert ("modeltui_deployment_error_ratio", (("deployment", "idle"),)) not in got
    assert ("modeltui_deployment_latency_p99_seconds", (("deployment", "idle"),)) not in got


def test_metric_names_lists_exactly_what_a_full_exposition_emits() -> None:
    body = render(snapshot([alert("churn", "r", "warning", "firing")])).decode()
    emitted = {fam.name + ("_total" if fam.type == "counter" else "") for fam in text_string_to_metric_families(body)}
    assert emitted == set(METRIC_NAMES)


def test_no_alert_series_without_an_alerts_engine() -> None:
    body = render(snapshot(None)).decode()
    assert "modeltui_alert_firing" not in body


def test_drift_of_too_few_observations_is_not_exported() -> None:
    """Below the minimum sample PSI and KS mean nothing: no series (a dashboard or Prometheus rule on
    ``drift_psi > 0.2`` claims nothing), only the observation count."""
    few = full_metrics("churn", features=3, observations=MIN_DRIFT_OBSERVATIONS - 1)
    snap = Snapshot(window_seconds=300, deployments=[info("churn")], metrics={"churn": few}, alerts=None)
    got = samples(render(snap).decode())
    names = {k[0] for k in got}
    assert "modeltui_deployment_drift_psi" not in names
    assert "modeltui_deployment_drift_ks" not in names
    key = ("modeltui_deployment_drift_observations", (("deployment", "churn"), ("feature", "x2")))
    assert got[key] == MIN_DRIFT_OBSERVATIONS - 1


def test_labels_stay_bounded() -> None:
    snap = snapshot()
    snap.metrics["churn"] = full_metrics("churn", classes=200, features=300)
    got = samples(render(snap).decode())
    def values(metric: str, label: str) -> set[str]:
        return {dict(k[1])[label] for k in got if k[0] == metric and dict(k[1])["deployment"] == "churn"}

    classes = values("modeltui_deployment_class_f1", "class")
    features = values("modeltui_deployment_drift_psi", "feature")
    assert len(classes) == 50
    assert "c196" in classes  # the classes with most support are kept
    assert 'a"b' not in classes
    assert len(features) == 100


# -- the exporter: caching and HTTP ------------------------------------------------------------------------


class FakeMonitor:
    """The parts of Monitor the exporter uses, counting the (blocking) metrics computations."""

    def __init__(self) -> None:
        self.settings = SimpleNamespace(scrape_interval_seconds=3600.0)
        self.last_cycle: CycleReport | None = CycleReport(t=100.0, targets=1, up=1, samples=3, seconds=0.01)
        self.calls = 0

    def metrics(self, deployment: str, window_seconds: int, *, points: bool = True) -> r.DeploymentMetrics:
        assert not points  # the exporter needs no plot points
        self.calls += 1
        time.sleep(0.05)  # a slow computation: concurrent scrapes must share it
        return full_metrics(deployment)


async def fetch(url: str, method: str = "GET") -> tuple[int, bytes]:
    parts = urllib.parse.urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(f"{method} {parts.path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


async def test_one_computation_per_monitor_cycle_whatever_the_scrapes() -> None:
    monitor = FakeMonitor()
    exporter = Exporter(
        ExporterSection(address="127.0.0.1:0"), cast(Monitor, monitor), lambda: [info("churn"), info("idle")]
    )
    url = await exporter.start()
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/metrics", url)
        assert not url.endswith(":0/metrics")
        results = await asyncio.gather(*(fetch(url) for _ in range(8)))
        assert {status for status, _ in results} == {200}
        assert len({body for _, body in results}) == 1
        assert exporter.computations == 1
        assert monitor.calls == 2  # one per deployment
        assert (await fetch(url))[0] == 200
        assert exporter.computations == 1
        monitor.last_cycle = CycleReport(t=115.0, targets=1, up=1, samples=3, seconds=0.01)  # the next cycle
        status, body = await fetch(url)
        assert status == 200
        assert exporter.computations == 2
        assert b'modeltui_monitor_last_cycle_timestamp_seconds 115.0' in body
        assert (await fetch(url, "HEAD"))[1] == b""
        assert (await fetch(url.replace("/metrics", "/"), "GET"))[0] == 404
        assert (await fetch(url, "POST"))[0] == 405
    finally:
        await exporter.stop()
    with pytest.raises(ConnectionRefusedError):
        await fetch(url)


async def test_a_failing_alerts_engine_or_deployment_does_not_break_the_exposition() -> None:
    monitor = FakeMonitor()

    def broken_metrics(deployment: str, window_seconds: int, *, points: bool = True) -> r.DeploymentMetrics:
        if deployment == "bad":
            raise RuntimeError("boom")
        return full_metrics(deployment)

    def states() -> list[object]:
        raise RuntimeError("engine broke")

    monitor.metrics = broken_metrics  # type: ignore[method-assign]
    monitor.alerts = SimpleNamespace(states=states)  # type: ignore[attr-defined]
    exporter = Exporter(ExporterSection(), cast(Monitor, monitor), lambda: [info("bad"), info("good")])
    body = await exporter.exposition()
    got = samples(body.decode())
    assert got[("modeltui_deployment_up", (("deployment", "good"),))] == 1
    assert got[("modeltui_deployment_up", (("deployment", "bad"),))] == 0
    assert "modeltui_alert_firing" not in body.decode()


def test_exporter_settings() -> None:
    assert ExporterSection().address == "127.0.0.1:9464"
    assert ExporterSection(address="[::1]:0").host == "::1"
    assert ExporterSection(address="localhost:9000").port == 9000
    for bad in ("0.0.0.0:9464", "10.0.0.1:9464", "127.0.0.1", "127.0.0.1:99999", "example.com:80"):
        with pytest.raises(ValidationError):
            ExporterSection(address=bad)


# -- shipped configuration -----------------------------------------------------------------------------------

NAME = re.compile(r"\bmodeltui_[a-z0-9_]+\b")


def test_prometheus_config_and_rules_pass_promtool() -> None:
    tool = promtool()
    for args in (["check", "config", str(CONFIG / "prometheus.yml")],
                 ["check", "rules", str(CONFIG / "prometheus-alerts.yml")]):
        res = subprocess.run([tool, *args], capture_output=True, text=True, timeout=30, check=False)
        assert res.returncode == 0, res.stdout + res.stderr
    rules = (CONFIG / "prometheus-alerts.yml").read_text()
    used = {m for line in rules.splitlines() if line.strip().startswith("expr:") for m in NAME.findall(line)}
    assert used
    assert used <= set(METRIC_NAMES), used - set(METRIC_NAMES)
    config = (CONFIG / "prometheus.yml").read_text()
    assert '"127.0.0.1:9464"' in config
    assert "file_sd_configs" in config


def test_grafana_dashboard_queries_only_exported_names() -> None:
    dash = json.loads((CONFIG / "grafana-dashboard.json").read_text())
    titles = []
    for panel in dash["panels"]:
        titles.append(panel["title"])
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(NAME.findall(target["expr"]))
            assert names, target["expr"]
            assert names <= set(METRIC_NAMES), (panel["title"], names - set(METRIC_NAMES))
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            assert set(NAME.findall(var["definition"])) <= set(METRIC_NAMES)
    needed = ("modeltui_deployment_requests_per_second", "modeltui_deployment_latency_p95_seconds",
              "modeltui_deployment_f1", "modeltui_deployment_drift_psi", "modeltui_deployment_up")
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    for piece in needed:
        assert piece in exprs, piece
    assert len({p["id"] for p in dash["panels"]}) == len(titles)


# -- a real Prometheus scraping a real daemon ----------------------------------------------------------------


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


@contextlib.contextmanager
def prometheus(tmp: Path, target: str) -> Iterator[str]:
    """A real Prometheus on loopback scraping ``target`` every second; killed on exit. Yields its base URL."""
    binary = shutil.which("prometheus")
    need(binary is not None, "prometheus (Debian's prometheus package)")
    assert binary is not None
    tmp.mkdir()
    config = tmp / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: modeltui\n    static_configs:\n      - targets: ['{target}']\n"
    )
    port = free_port()
    log = (tmp / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    log.close()
    base = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"prometheus exited: {(tmp / 'prometheus.log').read_text()}")
            try:
                with urllib.request.urlopen(base + "/-/ready", timeout=2) as resp:
                    return resp.status == 200
            except urllib.error.HTTPError as exc:  # 503 while starting: close its response
                exc.close()
                return False
            except OSError:
                return False

        wait_for(ready, "prometheus to be ready", timeout=20)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def query(base: str, promql: str) -> dict[str, float]:
    """An instant query: deployment label → value."""
    got = get_json(base + "/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    assert got["status"] == "success", got
    return {item["metric"].get("deployment", ""): float(item["value"][1]) for item in got["data"]["result"]}


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_real_prometheus_scrapes_what_modeltui_computed(daemon_factory: Any, tmp_path: Path) -> None:
    d: DaemonProcess = daemon_factory()
    Path(d.env["MODELTUI_CONFIG"]).write_text(
        "[monitor]\nscrape_interval_seconds = 1\n\n[exporter]\naddress = \"127.0.0.1:0\"\nwindow_seconds = 300\n"
    )
    d.start()
    url = cli_json(d, "daemon", "status")["exporter"]
    assert url, "the exporter's URL in daemon status"
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/metrics", url)
    assert d.cli("push", str(classifier(tmp_path / "sign")), "--alias", "production").returncode == 0
    dep = cli_json(d, "deploy", "sign@production")["deployment"]
    name, endpoint = dep["name"], dep["endpoint"]
    xs = [-2.0, -1.0, 1.0, 2.0, 3.0, -3.0]
    status, body = post(endpoint + "/predict", {"inputs": [[x] for x in xs]})
    assert status == 200, body
    truth = [int(x > 0) for x in xs[:-1]] + [1]  # the last prediction is wrong
    items = [{"id": i, "label": t} for i, t in zip(body["ids"], truth, strict=True)]
    status, _ = post(endpoint + "/feedback", {"items": items})
    assert status == 200
    m = wait_for(lambda: (m := cli_json(d, "metrics", name, "--window", "5m"))["labelled"] == len(xs) and m, "a scrape")
    assert m["accuracy"] == pytest.approx(5 / 6)

    # The alerts engine (monitor.alerts) fires this rule on the next cycle: its state is exported too.
    add = d.cli("alerts", "add", name, "accuracy < 0.9", "--severity", "critical", "--name", "acc_low")
    assert add.returncode == 0, add.stderr

    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        exposition = resp.read()
    promtool_check_metrics(exposition)

    target = urllib.parse.urlsplit(url).netloc
    with prometheus(tmp_path / "prom", target) as base:
        up = wait_for(lambda: query(base, "modeltui_deployment_up"), "prometheus to scrape the exporter")
        assert up == {name: 1.0}
        accuracy = wait_for(lambda: query(base, "modeltui_deployment_accuracy"), "the accuracy series")
        rate = wait_for(lambda: query(base, "modeltui_deployment_requests_per_second"), "the request rate series")
        p95 = wait_for(lambda: query(base, "modeltui_deployment_latency_p95_seconds"), "p95")
        again = cli_json(d, "metrics", name, "--window", "5m")
        assert again["up"] is True
        assert accuracy[name] == pytest.approx(again["accuracy"]) == pytest.approx(5 / 6)
        # Every request of the test is inside both windows: the same count over the same 300 s.
        assert rate[name] == pytest.approx(again["request_rate"], rel=1e-6)
        assert rate[name] == pytest.approx(again["requests"] / 300)
        assert p95[name] == pytest.approx(again["latency_p95_seconds"])
        assert query(base, 'up{job="modeltui"}') == {"": 1.0}
        firing = wait_for(
            lambda: query(base, 'modeltui_alert_firing{rule="acc_low",severity="critical"} == 1'), "the alert series"
        )
        assert firing == {name: 1.0}
        assert any(a["rule"] == "acc_low" and a["state"] == "firing" for a in cli_json(d, "alerts")["items"])
