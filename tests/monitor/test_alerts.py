"""Alert rules: the parser (accepts, refuses with clear messages), manifest defaults, and the engine's state
machine driven by a fake clock (pending → firing exactly when ``for`` has elapsed, resolved when the condition
stops, history and states persisted)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from daemon.monitor.alerts import Alerts, AlertStore
from daemon.monitor.derive import MIN_DRIFT_OBSERVATIONS, Drift
from daemon.monitor.service import feature_drift
from daemon.protocol import results as r
from daemon.protocol.alerts import AlertSpec, parse_duration, parse_rule
from daemon.protocol.events import AlertEvent
from daemon.protocol.manifest import parse_manifest

T0 = 1_800_000_000.0


@pytest.mark.parametrize(
    ("text", "expr"),
    [
        ("f1 < 0.85 for 10m", "f1 < 0.85 for 10m"),
        ("  p99_latency_seconds>0.2   for   5m ", "p99_latency_seconds > 0.2 for 5m"),
        ("error_rate > 0.01", "error_rate > 0.01"),
        ("drift_psi > 0.2", "drift_psi > 0.2"),
        ('drift_psi{feature="age"} >= 0.25 for 1h', 'drift_psi{feature="age"} >= 0.25 for 1h'),
        ('drift_ks{ feature = "x y" } > .1', 'drift_ks{feature="x y"} > 0.1'),
        ("up == 0 for 60s", "up == 0 for 1m"),
        ("up != 1 for 0", "up != 1"),
        ("request_rate <= 1e-3 for 2d", "request_rate <= 0.001 for 2d"),
        ("accuracy < -1", "accuracy < -1"),
    ],
)
def test_rules_parse_to_a_canonical_form(text: str, expr: str) -> None:
    cond = parse_rule(text)
    assert cond.expr == expr
    assert parse_rule(cond.expr) == cond


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("f2 < 0.85", "unknown metric 'f2'"),
        ("latency > 1", "unknown metric 'latency'"),
        ("f1 < abc", "bad number 'abc'"),
        ("f1 < nan", "bad number 'nan'"),
        ("f1 < 0.8.5", "bad number"),
        ("f1 < 0.85 for 10", "bad duration '10'"),
        ("f1 < 0.85 for 5x", "bad duration '5x'"),
        ("f1 < 0.85 for -5m", "bad duration"),
        ("f1 < 0.85 for", "'for' takes one duration"),
        ("f1 < 0.85 during 5m", "only 'for DURATION' may follow"),
        ("f1 = 0.85", "use =="),
        ("f1 0.85", "a comparison"),
        ("f1 <", "a number must follow"),
        ("", "empty alert rule"),
        ('f1{feature="x"} < 1', "takes no {…} selector"),
        ("drift_psi{col=x} > 1", "bad selector"),
        ("up == 0 for 31d", "longer than the limit"),
    ],
)
def test_bad_rules_are_refused_with_the_problem_named(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("{", r"\{").replace("(", r"\(")):
        parse_rule(text)


def test_durations() -> None:
    assert [parse_duration(x) for x in ("30s", "5m", "1h", "2d", "0")] == [30, 300, 3600, 172_800, 0]
    for bad in ("", "5", "1.5m", "m", "5 m5"):
        with pytest.raises(ValueError, match="bad duration"):
            parse_duration(bad)


def test_spec_window_and_default_name() -> None:
    spec = AlertSpec(rule="f1 < 0.85 for 10m", window="15m")
    assert spec.window == 900
    assert spec.severity == "warning"
    assert spec.rule_name == "f1_lt_0.85"
    with pytest.raises(ValueError, match="bad window"):
        AlertSpec(rule="f1 < 0.85", window="soon")


MANIFEST = 'name = "m"\nflavor = "sklearn"\nmodel_file = "model.skops"\n'


def test_manifest_alert_tables() -> None:
    m = parse_manifest(
        (
            MANIFEST + '[[alerts]]\nrule = "f1 < 0.85 for 10m"\nseverity = "critical"\nname = "low-f1"\n'
            '[[alerts]]\nrule = "drift_psi > 0.2"\nwindow = "1h"\n'
        ).encode()
    )
    assert m.alerts is not None
    assert [(a.rule_name, a.severity, a.window) for a in m.alerts] == [
        ("low-f1", "critical", 300),
        ("drift_psi_gt_0.2", "warning", 3600),
    ]
    assert parse_manifest(MANIFEST.encode()).alerts is None


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ('[[alerts]]\nrule = "f9 < 1"\n', "alerts.0.rule.*unknown metric 'f9'"),
        ('[[alerts]]\nrule = "f1 < 1"\nseverity = "page"\n', "alerts.0.severity"),
        ('[[alerts]]\nrule = "f1 < 1"\nwindow = "5"\n', "bad window"),
        ('[[alerts]]\nrule = "f1 < 1"\ncolour = "red"\n', "alerts.0.colour"),
        ('[[alerts]]\nrule = "f1 < 1"\n[[alerts]]\nrule = "f1 < 1 for 5m"\n', "two rules are named 'f1_lt_1'"),
    ],
)
def test_bad_manifest_alerts_are_refused(extra: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_manifest((MANIFEST + extra).encode())


# -- the engine ------------------------------------------------------------------------------------------------


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


class World:
    """Fake metrics and clock for the engine."""

    def __init__(self) -> None:
        self.now = T0
        self.values: dict[str, dict[str, Any]] = {}
        self.up: dict[str, bool | None] = {}
        self.described: dict[str, tuple[str, int] | None] = {}
        self.manifests: dict[tuple[str, int], list[AlertSpec]] = {}
        self.events: list[AlertEvent] = []
        self.metric_calls: list[tuple[str, int]] = []

    def metrics(self, dep: str, window: int) -> r.DeploymentMetrics:
        self.metric_calls.append((dep, window))
        v = self.values.get(dep, {})
        return r.DeploymentMetrics(
            deployment=dep,
            window_seconds=window,
            start=_dt(self.now - window),
            end=_dt(self.now),
            up=self.up.get(dep),
            last_scrape=None,
            requests=v.get("requests", 0.0),
            request_rate=v.get("request_rate", 0.0),
            error_rate=v.get("error_rate"),
            client_error_rate=v.get("client_error_rate"),
            latency_p50_seconds=None,
            latency_p95_seconds=None,
            latency_p99_seconds=v.get("p99"),
            labelled=0.0,
            accuracy=None,
            precision=None,
            recall=None,
            f1=v.get("f1"),
            drift={
                f: feature_drift(Drift(psi=psi, ks=psi / 2, count=v.get("observations", 500.0)))
                for f, psi in v.get("drift", {}).items()
            },
            step_seconds=60,
        )

    def engine(self, store: AlertStore) -> Alerts:
        return Alerts(
            store,
            metrics=self.metrics,
            up=lambda dep: self.up.get(dep),
            describe=lambda dep: self.described.get(dep),
            manifest_rules=lambda model, version: self.manifests.get((model, version)),
            publish=self.events.append,
            clock=lambda: self.now,
        )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AlertStore]:
    s = AlertStore(tmp_path)
    yield s
    s.close()


def _eval(alerts: Alerts, world: World, *deps: str) -> list[tuple[str, str, str]]:
    before = len(world.events)
    asyncio.run(alerts.evaluate(list(deps)))
    return [(e.deployment, e.rule, e.state) for e in world.events[before:]]


def _only(alerts: Alerts, dep: str, spec: AlertSpec) -> None:
    """Make ``spec`` the deployment's only rule."""
    for rule in alerts.rules({dep: None}).items:
        if rule.deployment == dep and rule.source == "deployment":
            alerts.remove(dep, None, rule.name)
    alerts.add(dep, None, spec)
    for rule in alerts.rules({dep: None}).items:
        if rule.name != spec.rule_name:
            alerts.remove(dep, None, rule.name)


def test_pending_fires_exactly_when_for_has_elapsed_then_resolves(store: AlertStore) -> None:
    w = World()
    alerts = w.engine(store)
    _only(alerts, "d", AlertSpec(rule="f1 < 0.85 for 10m", name="low-f1", severity="critical"))
    w.up["d"] = True
    w.values["d"] = {"f1": 0.9}
    assert _eval(alerts, w, "d") == []
    w.now += 15
    w.values["d"] = {"f1": 0.8}
    assert _eval(alerts, w, "d") == [("d", "low-f1", "pending")]
    (st,) = alerts.states()
    assert (st.state, st.value, st.since, st.severity) == ("pending", 0.8, _dt(w.now), "critical")
    started = w.now
    w.now = started + 599.9
    assert _eval(alerts, w, "d") == []
    w.now = started + 600
    assert _eval(alerts, w, "d") == [("d", "low-f1", "firing")]
    (st,) = alerts.states()
    assert (st.state, st.since, st.active_since) == ("firing", _dt(w.now), _dt(started))
    event = w.events[-1]
    assert (event.severity, event.value, event.expr) == ("critical", 0.8, "f1 < 0.85 for 10m")
    assert "low-f1" in event.message
    assert "firing" in event.message
    w.now += 60
    assert _eval(alerts, w, "d") == []
    w.now += 15
    w.values["d"] = {"f1": 0.95}
    assert _eval(alerts, w, "d") == [("d", "low-f1", "resolved")]
    assert alerts.states() == []
    hist = alerts.list("d", 10).history
    assert [h.state for h in hist] == ["resolved", "firing", "pending"]  # newest first
    assert hist[0].at == _dt(w.now)


def test_for_zero_fires_at_once_and_pending_can_go_back(store: AlertStore) -> None:
    w = World()
    alerts = w.engine(store)
    _only(alerts, "d", AlertSpec(rule="error_rate > 0.01", name="errors"))
    alerts.add("d", None, AlertSpec(rule="p99_latency_seconds > 0.2 for 5m", name="slow"))
    w.up["d"] = True
    w.values["d"] = {"error_rate": 0.5, "p99": 0.3}
    assert sorted(_eval(alerts, w, "d")) == [("d", "errors", "firing"), ("d", "slow", "pending")]
    w.now += 60
    w.values["d"] = {"error_rate": 0.5, "p99": 0.1}
    assert _eval(alerts, w, "d") == [("d", "slow", "inactive")]
    assert [(s.rule, s.state) for s in alerts.states()] == [("errors", "firing")]


def test_no_data_never_holds_except_up(store: AlertStore) -> None:
    w = World()
    alerts = w.engine(store)
    _only(alerts, "d", AlertSpec(rule="f1 < 0.85", name="f1"))
    alerts.add("d", None, AlertSpec(rule="request_rate < 1", name="idle"))
    alerts.add("d", None, AlertSpec(rule="up == 0", name="down", severity="critical"))
    # Never scraped: every metric is undefined, and up counts as 0.
    assert _eval(alerts, w, "d") == [("d", "down", "firing")]
    w.up["d"] = True
    w.now += 15
    assert sorted(_eval(alerts, w, "d")) == [("d", "down", "resolved"), ("d", "idle", "firing")]
    assert alerts.states()[0].value == 0.0


def test_drift_max_and_one_feature(store: AlertStore) -> None:
    w = World()
    alerts = w.engine(store)
    _only(alerts, "d", AlertSpec(rule="drift_psi > 0.2", name="any"))
    alerts.add("d", None, AlertSpec(rule='drift_psi{feature="a"} > 0.2', name="a"))
    alerts.add("d", None, AlertSpec(rule='drift_ks{feature="zz"} > 0', name="zz"))
    w.up["d"] = True
    w.values["d"] = {"drift": {"a": 0.1, "b": 0.4}}
    assert _eval(alerts, w, "d") == [("d", "any", "firing")]
    assert alerts.states()[0].value == 0.4
    assert len(w.metric_calls) == 1, "one metrics query per deployment and window"


def test_drift_of_too_few_observations_fires_nothing(store: AlertStore) -> None:
    """A few predictions make PSI large by chance: below the minimum sample a drift rule has no value."""
    w = World()
    alerts = w.engine(store)
    _only(alerts, "d", AlertSpec(rule="drift_psi > 0.2", name="any"))
    alerts.add("d", None, AlertSpec(rule='drift_ks{feature="a"} > 0.1', name="a"))
    w.up["d"] = True
    w.values["d"] = {"drift": {"a": 2.5, "b": 3.0}, "observations": MIN_DRIFT_OBSERVATIONS - 1}
    assert _eval(alerts, w, "d") == []
    assert all(s.value is None for s in alerts.states())
    w.values["d"]["observations"] = MIN_DRIFT_OBSERVATIONS
    assert sorted(_eval(alerts, w, "d")) == [("d", "a", "firing"), ("d", "any", "firing")]


def test_inherited_rules_builtin_then_manifest_then_own(store: AlertStore) -> None:
    w = World()
    alerts = w.engine(store)
    got = alerts.rules({"d": None}).items
    assert [(i.name, i.expr, i.severity, i.source) for i in got] == [
        ("down", "up == 0 for 1m", "critical", "builtin"),
        ("errors", "error_rate > 0.05 for 5m", "warning", "builtin"),
    ]
    w.described["d"] = ("m", 2)
    w.manifests[("m", 2)] = [AlertSpec(rule="f1 < 0.9 for 0", name="m-f1")]
    got = alerts.rules({"d": ("m", 2)}).items
    assert [(i.name, i.source) for i in got] == [("m-f1", "manifest")]
    w.up["d"] = True
    w.values["d"] = {"f1": 0.5}
    assert _eval(alerts, w, "d") == [("d", "m-f1", "firing")]
    # The first edit copies the inherited rules, so adding never drops them silently.
    out = alerts.add("d", ("m", 2), AlertSpec(rule="up == 0 for 2s", name="down"))
    assert [(i.name, i.source) for i in out.items] == [("m-f1", "deployment"), ("down", "deployment")]
    # Replacing by name.
    out = alerts.add("d", ("m", 2), AlertSpec(rule="up == 0 for 5s", name="down", severity="critical"))
    assert [(i.name, i.expr, i.severity) for i in out.items][-1] == ("down", "up == 0 for 5s", "critical")
    with pytest.raises(KeyError):
        alerts.remove("d", ("m", 2), "nope")
    alerts.remove("d", ("m", 2), "m-f1")
    w.now += 15
    assert _eval(alerts, w, "d") == [("d", "m-f1", "resolved")]  # a removed rule's alert resolves
    out = alerts.remove("d", ("m", 2), "down")
    assert [(i.name, i.source) for i in out.items] == [("m-f1", "manifest")]  # the defaults are back


def test_states_rules_and_history_survive_a_restart(store: AlertStore, tmp_path: Path) -> None:
    w = World()
    alerts = w.engine(store)
    _only(alerts, "d", AlertSpec(rule="f1 < 0.85 for 10m", name="low-f1"))
    w.up["d"] = True
    w.values["d"] = {"f1": 0.5}
    assert _eval(alerts, w, "d") == [("d", "low-f1", "pending")]
    store.close()
    again = AlertStore(tmp_path)
    try:
        w2 = World()
        w2.now, w2.up, w2.values = w.now + 600, w.up, w.values
        fresh = w2.engine(again)
        assert [(s.rule, s.state) for s in fresh.states()] == []  # not loaded yet
        fresh.load()
        assert [(s.rule, s.state) for s in fresh.states()] == [("low-f1", "pending")]
        assert [i.name for i in fresh.rules({"d": None}).items] == ["low-f1"]
        assert _eval(fresh, w2, "d") == [("d", "low-f1", "firing")]
        assert [h.state for h in fresh.list(None, 10).history] == ["firing", "pending"]
    finally:
        again.close()


def test_a_deployment_that_goes_away_resolves(store: AlertStore) -> None:
    w = World()
    alerts = w.engine(store)
    assert _eval(alerts, w, "d") == [("d", "down", "pending")]  # built-in: up == 0 for 1m
    assert [(s.rule, s.state) for s in alerts.states()] == [("down", "pending")]
    w.now += 60
    assert _eval(alerts, w, "d") == [("d", "down", "firing")]
    w.now += 15
    assert _eval(alerts, w) == [("d", "down", "resolved")]
    assert "not monitored" in w.events[-1].message
    assert alerts.states() == []
