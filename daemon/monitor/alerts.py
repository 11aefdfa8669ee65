"""Alerts: rules evaluated after every scrape cycle, with Prometheus' ``for`` semantics.

- Which rules apply to a deployment: its own (``alerts.add`` / ``alerts.rm``); with none, the ``[[alerts]]`` of
  the deployed version's manifest; with none there either, ``BUILTIN_RULES``. The first edit of a deployment's
  rules copies the ones it inherited into its own, so adding a rule never silently drops the defaults.
- A rule is inactive, pending (its condition holds, for less than ``for``) or firing (it has held for at
  least ``for``; ``for 0`` fires at once). When the condition stops holding, a firing alert is resolved and a
  pending one goes back to inactive. A metric without data (no scrape yet, no requests, no feedback, a
  feature not seen) makes the condition undefined, which does not hold; ``up`` is 0 when there is no data.
- Time comes from ``clock`` (seconds since the epoch), so tests drive it without sleeping.
- Rules, current states and transitions live in the registry database (migration v6). Every method that
  touches it blocks; ``evaluate`` and the async helpers run it in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from daemon.protocol import results as r
from daemon.protocol.alerts import BUILTIN_RULES, AlertSpec, Condition, TransitionName, format_duration
from daemon.protocol.events import AlertEvent
from daemon.protocol.manifest import parse_manifest
from daemon.protocol.requests import Show
from daemon.store.db import Db
from daemon.store.engine import make_engine
from daemon.store.migrations import migrate

if TYPE_CHECKING:
    from daemon.registry.service import Registry

log = logging.getLogger("modeltuid.monitor.alerts")

Source = Literal["deployment", "manifest", "builtin"]
#: (model, version) of what a deployment runs, or None when unknown.
Describe = Callable[[str], "tuple[str, int] | None"]
#: The ``[[alerts]]`` of a version's manifest (blocking), or None when it has none.
ManifestRules = Callable[[str, int], "Sequence[AlertSpec] | None"]
#: Transitions kept in the history (oldest dropped first).
MAX_HISTORY = 100_000
MANIFEST_CACHE = 1024


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


@dataclass(frozen=True)
class Rule:
    """A rule as it applies to one deployment."""

    name: str
    cond: Condition
    severity: str
    window_seconds: int
    source: Source

    @classmethod
    def of(cls, spec: AlertSpec, source: Source) -> Rule:
        return cls(spec.rule_name, spec.condition, spec.severity, spec.window, source)

    def spec(self) -> AlertSpec:
        return AlertSpec(rule=self.cond.expr, severity=self.severity, name=self.name, window=self.window_seconds)

    def info(self, deployment: str) -> r.AlertRuleInfo:
        c = self.cond
        return r.AlertRuleInfo(
            deployment=deployment,
            name=self.name,
            expr=c.expr,
            metric=c.metric,
            feature=c.feature,
            op=c.op,
            threshold=c.threshold,
            for_seconds=c.for_seconds,
            severity=self.severity,
            window_seconds=self.window_seconds,
            source=self.source,
        )


@dataclass(frozen=True)
class State:
    """A rule whose condition holds: ``pending`` or ``firing``. ``since``: entered this state;
    ``active_since``: the condition started to hold."""

    severity: str
    expr: str
    state: Literal["pending", "firing"]
    value: float | None
    active_since: float
    since: float


@dataclass(frozen=True)
class Transition:
    deployment: str
    rule: str
    severity: str
    state: TransitionName
    value: float | None
    t: float
    message: str
    expr: str = ""

    def info(self) -> r.AlertTransitionInfo:
        return r.AlertTransitionInfo(
            deployment=self.deployment,
            rule=self.rule,
            severity=self.severity,
            state=self.state,
            value=self.value,
            at=_dt(self.t),
            message=self.message,
        )

    def event(self) -> AlertEvent:
        return AlertEvent(
            deployment=self.deployment,
            rule=self.rule,
            severity=self.severity,
            state=self.state,
            value=self.value,
            message=self.message,
            expr=self.expr,
            at=_dt(self.t),
        )


def step(
    prev: State | None, holds: bool, value: float | None, now: float, rule: Rule
) -> tuple[State | None, TransitionName | None]:
    """One evaluation of one rule: the next state (None = inactive) and the transition made, if any."""
    expr = rule.cond.expr
    if not holds:
        if prev is None:
            return None, None
        return None, "resolved" if prev.state == "firing" else "inactive"
    if prev is None:
        if rule.cond.for_seconds <= 0:
            return State(rule.severity, expr, "firing", value, now, now), "firing"
        return State(rule.severity, expr, "pending", value, now, now), "pending"
    if prev.state == "pending" and now - prev.active_since >= rule.cond.for_seconds:
        return State(rule.severity, expr, "firing", value, prev.active_since, now), "firing"
    return replace(prev, value=value, severity=rule.severity, expr=expr), None


def metric_value(cond: Condition, m: r.DeploymentMetrics | None, up: bool | None) -> float | None:
    """The value a condition compares, or None when undefined (no data)."""
    if cond.metric == "up":
        return 1.0 if up else 0.0
    if m is None or m.up is None:
        return None
    simple = {
        "f1": m.f1,
        "accuracy": m.accuracy,
        "precision": m.precision,
        "recall": m.recall,
        "error_rate": m.error_rate,
        "client_error_rate": m.client_error_rate,
        "p50_latency_seconds": m.latency_p50_seconds,
        "p95_latency_seconds": m.latency_p95_seconds,
        "p99_latency_seconds": m.latency_p99_seconds,
        "request_rate": m.request_rate,
    }
    if cond.metric in simple:
        return simple[cond.metric]
    attr = "psi" if cond.metric == "drift_psi" else "ks"
    # Too few observations say nothing about drift: such a feature has no value (as if it had no data).
    judged = {f: d for f, d in m.drift.items() if d.state != "not_enough_data"}
    if cond.feature is not None:
        d = judged.get(cond.feature)
        return None if d is None else float(getattr(d, attr))
    values = [float(getattr(d, attr)) for d in judged.values()]
    return max(values) if values else None


def _fmt(v: float | None) -> str:
    return "no data" if v is None else f"{v:.6g}"


def _message(dep: str, rule: str, expr: str, state: TransitionName, value: float | None, why: str = "") -> str:
    what = {
        "pending": "holds; pending",
        "firing": "is firing",
        "resolved": "resolved",
        "inactive": "stopped holding before firing",
    }[state]
    text = f"{dep}: {rule} ({expr}) {what} (value {_fmt(value)})"
    return f"{text}: {why}" if why else text


# -- storage ---------------------------------------------------------------------------------------------------


class AlertStore:
    """Rules, states and history in the registry database (tables of migration v6), in plain SQL."""

    def __init__(self, state_dir: Path, *, busy_timeout_s: float = 5.0) -> None:
        self._engine = make_engine(Path(state_dir), busy_timeout_s=busy_timeout_s)
        migrate(self._engine)
        self._db = Db(self._engine)

    def close(self) -> None:
        self._db.close()
        self._engine.dispose()

    def rules(self) -> dict[str, list[AlertSpec]]:
        out: dict[str, list[AlertSpec]] = {}
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT deployment, name, expr, severity, window_seconds FROM alert_rules ORDER BY deployment, "
                "created_at, name"
            ).fetchall()
        for dep, name, expr, severity, window in rows:
            try:
                out.setdefault(dep, []).append(AlertSpec(rule=expr, severity=severity, name=name, window=window))
            except ValueError as exc:  # pragma: no cover - written by this code after validation
                log.warning("ignoring stored alert rule %s/%s: %s", dep, name, exc)
        return out

    def set_rules(self, deployment: str, specs: Sequence[AlertSpec], now: float) -> None:
        with self._db.write() as conn:
            conn.execute("DELETE FROM alert_rules WHERE deployment = ?", (deployment,))
            conn.executemany(
                "INSERT INTO alert_rules (deployment, name, expr, severity, window_seconds, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(deployment, s.rule_name, s.rule, s.severity, s.window, now + i * 1e-6) for i, s in enumerate(specs)],
            )

    def states(self) -> dict[tuple[str, str], State]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT deployment, rule, severity, expr, state, value, active_since, since FROM alert_states"
            ).fetchall()
        return {(row[0], row[1]): State(*row[2:]) for row in rows}

    def write(
        self, upsert: dict[tuple[str, str], State], delete: Iterable[tuple[str, str]], log_: list[Transition]
    ) -> None:
        with self._db.write() as conn:
            conn.executemany("DELETE FROM alert_states WHERE deployment = ? AND rule = ?", list(delete))
            conn.executemany(
                "INSERT OR REPLACE INTO alert_states (deployment, rule, severity, expr, state, value, active_since, "
                "since) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(d, n, s.severity, s.expr, s.state, s.value, s.active_since, s.since) for (d, n), s in upsert.items()],
            )
            conn.executemany(
                "INSERT INTO alert_history (deployment, rule, severity, state, value, t, message) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(x.deployment, x.rule, x.severity, x.state, x.value, x.t, x.message) for x in log_],
            )
            if log_:
                conn.execute(
                    "DELETE FROM alert_history WHERE id <= (SELECT MAX(id) FROM alert_history) - ?", (MAX_HISTORY,)
                )

    def history(self, deployment: str | None, limit: int) -> list[Transition]:
        where, args = ("WHERE deployment = ?", (deployment,)) if deployment else ("", ())
        with self._db.read() as conn:
            rows = conn.execute(
                f"SELECT deployment, rule, severity, state, value, t, message FROM alert_history {where} "
                "ORDER BY id DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [Transition(*row) for row in rows]


# -- the engine ------------------------------------------------------------------------------------------------


class Alerts:
    """The alert engine attached to the monitor as ``monitor.alerts``."""

    def __init__(
        self,
        store: AlertStore,
        *,
        metrics: Callable[[str, int], r.DeploymentMetrics],
        up: Callable[[str], bool | None],
        describe: Describe = lambda name: None,
        manifest_rules: ManifestRules = lambda model, version: None,
        publish: Callable[[AlertEvent], None] = lambda event: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._metrics = metrics
        self._up = up
        self.describe = describe
        self._manifest_rules = manifest_rules
        self.publish = publish
        self.clock = clock
        self._own: dict[str, list[AlertSpec]] = {}
        self._states: dict[tuple[str, str], State] = {}
        self._manifests: dict[tuple[str, int], list[AlertSpec]] = {}
        self._lock = threading.Lock()  # one evaluation or rule edit at a time
        self._loaded = False

    def load(self) -> None:
        """Read rules and states (blocking; done on first use otherwise)."""
        with self._lock:
            self._load()

    def _load(self) -> None:
        if not self._loaded:
            self._own = self.store.rules()
            self._states = self.store.states()
            self._loaded = True

    # -- which rules apply -----------------------------------------------------------------------------------

    def _manifest(self, model: str, version: int) -> list[AlertSpec]:
        key = (model, version)
        cached = self._manifests.get(key)
        if cached is None:
            try:
                cached = list(self._manifest_rules(model, version) or ())
            except Exception as exc:  # a removed version, an unreadable manifest: the built-ins apply
                log.info("no manifest alert rules for %s:%d: %s", model, version, exc)
                cached = []
            if len(self._manifests) >= MANIFEST_CACHE:
                self._manifests.clear()
            self._manifests[key] = cached
        return cached

    def _rules(self, deployment: str, described: tuple[str, int] | None) -> list[Rule]:
        own = self._own.get(deployment)
        if own:
            return [Rule.of(s, "deployment") for s in own]
        if described is not None:
            specs = self._manifest(*described)
            if specs:
                return [Rule.of(s, "manifest") for s in specs]
        return [Rule.of(s, "builtin") for s in BUILTIN_RULES]

    # -- evaluation ------------------------------------------------------------------------------------------

    async def evaluate(self, deployments: Sequence[str]) -> list[AlertEvent]:
        """Evaluate every rule of ``deployments`` (the monitored ones; states of others are dropped), store
        the changes and publish one event per transition."""
        described = {d: self.describe(d) for d in deployments}  # on the loop: reads the deployment manager
        transitions = await asyncio.to_thread(self.evaluate_now, described)
        events = [t.event() for t in transitions]
        for event in events:
            try:
                self.publish(event)
            except Exception:  # pragma: no cover - a broken subscriber never stops evaluation
                log.exception("publishing an alert event failed")
        return events

    def evaluate_now(self, deployments: dict[str, tuple[str, int] | None]) -> list[Transition]:
        """Blocking: evaluate, store, and return the transitions (in order)."""
        with self._lock:
            self._load()
            now = self.clock()
            states = dict(self._states)
            upsert: dict[tuple[str, str], State] = {}
            delete: set[tuple[str, str]] = set()
            out: list[Transition] = []
            seen: set[tuple[str, str]] = set()
            for dep, described in deployments.items():
                rules = self._rules(dep, described)
                by_window: dict[int, r.DeploymentMetrics | None] = {}
                up: bool | None = None
                if any(rule.cond.metric == "up" for rule in rules):
                    up = self._up(dep)
                for rule in rules:
                    key = (dep, rule.name)
                    seen.add(key)
                    m = None
                    if rule.cond.metric != "up":
                        if rule.window_seconds not in by_window:
                            try:
                                by_window[rule.window_seconds] = self._metrics(dep, rule.window_seconds)
                            except Exception:
                                log.exception("metrics of %s for alerts failed", dep)
                                by_window[rule.window_seconds] = None
                        m = by_window[rule.window_seconds]
                    value = metric_value(rule.cond, m, up)
                    holds = value is not None and rule.cond.holds(value)
                    prev = states.get(key)
                    new, change = step(prev, holds, value, now, rule)
                    if new is None:
                        if prev is not None:
                            delete.add(key)
                            states.pop(key, None)
                    elif new != prev:
                        states[key] = upsert[key] = new
                    if change is not None:
                        msg = _message(dep, rule.name, rule.cond.expr, change, value)
                        out.append(Transition(dep, rule.name, rule.severity, change, value, now, msg, rule.cond.expr))
            for key in [k for k in states if k not in seen]:  # rule removed, deployment gone or not monitored
                prev = states.pop(key)
                delete.add(key)
                upsert.pop(key, None)
                change = "resolved" if prev.state == "firing" else "inactive"
                why = "the deployment is not monitored any more" if key[0] not in deployments else "rule removed"
                msg = _message(key[0], key[1], prev.expr, change, None, why)
                out.append(Transition(key[0], key[1], prev.severity, change, None, now, msg, prev.expr))
            if upsert or delete or out:
                self.store.write(upsert, delete, out)
            self._states = states  # swapped whole: states() reads it from the event loop without the lock
            return out

    # -- queries (states() is cheap and non-blocking; the rest block) ---------------------------------------

    def states(self) -> list[r.AlertStateInfo]:
        """Alerts pending or firing now (for the exporter and ``alerts.list``)."""
        return [
            r.AlertStateInfo(
                deployment=dep,
                rule=name,
                severity=s.severity,
                state=s.state,
                value=s.value,
                since=_dt(s.since),
                active_since=_dt(s.active_since),
                expr=s.expr,
            )
            for (dep, name), s in sorted(self._states.items())
        ]

    def list(self, deployment: str | None, history: int) -> r.AlertList:
        items = [s for s in self.states() if deployment is None or s.deployment == deployment]
        past = [t.info() for t in self.store.history(deployment, history)] if history else []
        return r.AlertList(items=items, history=past)

    def rules(self, deployments: dict[str, tuple[str, int] | None]) -> r.AlertRuleList:
        """The rules that apply to each of ``deployments`` (plus deployments with rules of their own)."""
        with self._lock:
            self._load()
            names = sorted(set(deployments) | set(self._own))
            return r.AlertRuleList(items=[rule.info(d) for d in names for rule in self._rules(d, deployments.get(d))])

    def add(self, deployment: str, described: tuple[str, int] | None, spec: AlertSpec) -> r.AlertRuleList:
        """Add ``spec`` to the deployment's own rules (replacing a rule of the same name)."""
        with self._lock:
            self._load()
            current = [rule.spec() for rule in self._rules(deployment, described)]
            specs = [s for s in current if s.rule_name != spec.rule_name] + [spec]
            self.store.set_rules(deployment, specs, self.clock())
            self._own = {**self._own, deployment: specs}
            return r.AlertRuleList(items=[rule.info(deployment) for rule in self._rules(deployment, described)])

    def remove(self, deployment: str, described: tuple[str, int] | None, name: str) -> r.AlertRuleList:
        """Remove a rule; KeyError when the deployment has no rule of that name. Removing the last rule of
        its own brings the inherited rules back."""
        with self._lock:
            self._load()
            current = [rule.spec() for rule in self._rules(deployment, described)]
            if not any(s.rule_name == name for s in current):
                raise KeyError(name)
            specs = [s for s in current if s.rule_name != name]
            self.store.set_rules(deployment, specs, self.clock())
            own = dict(self._own)
            if specs:
                own[deployment] = specs
            else:
                own.pop(deployment, None)
            self._own = own
            return r.AlertRuleList(items=[rule.info(deployment) for rule in self._rules(deployment, described)])


# -- wiring ----------------------------------------------------------------------------------------------------


def manifest_rules_from(registry: Registry) -> ManifestRules:
    """The ``[[alerts]]`` of a stored version's manifest (blocking)."""

    def manifest_rules(model: str, version: int) -> Sequence[AlertSpec] | None:
        detail = registry.show(Show(ref=f"{model}:{version}"))
        return parse_manifest(detail.manifest.encode("utf-8")).alerts

    return manifest_rules


__all__ = ["AlertStore", "Alerts", "Rule", "State", "Transition", "format_duration", "metric_value", "step"]
