"""Maintenance runs: evaluate the champion, make a challenger, evaluate it on the same holdout, gate, push it
as a new version whose parent is the champion, promote the alias and watch the rollout.

Each step is recorded (with timestamps, figures and its message) in the run's row as it happens, so a run is
always readable, including one cut short: a daemon that starts marks runs it finds ``running`` as
``interrupted`` (nothing half-promoted: the alias moves in one transaction, as the last step but the
rollout). Training and evaluation run in worker processes with time and memory limits
(``daemon/maintain/worker.py``). One run per model at a time; in a cluster only the model's elected leader
runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import time
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from daemon.protocol import requests as q
from daemon.protocol import results as r
from daemon.protocol.errors import ErrorCode, ProtocolError, conflict, invalid, not_found
from daemon.protocol.events import AlertEvent
from daemon.protocol.manifest import MANIFEST_FILE, Manifest, parse_manifest
from daemon.registry.codepolicy import CodePolicy
from daemon.registry.service import Registry
from daemon.registry.signing import SigningPolicy
from daemon.store.db import Db
from daemon.store.engine import make_engine

from . import feedback as fb
from . import policy as pol
from .worker import Cancel, Limits, WorkerError, evaluate, search, train

log = logging.getLogger("modeltuid.maintain")

#: Who the registry records for a run's push and alias move.
USER = "maintenance"
#: How long a rollout may take before the run says it did not finish.
ROLLOUT_TIMEOUT_S = 300.0
#: How long ``maintain cancel`` waits for the run to stop before answering with its state then.
CANCEL_WAIT_S = 30.0
#: The global pause switch's row in ``maintain_policies`` (no model can be named so).
ALL = "*"
#: Alert rules every deployment has (daemon/monitor/alerts.py).
BUILTIN_ALERTS = frozenset({"down", "errors"})
#: Metrics any classifier / any regressor can be scored on: a searched challenger records those of them the
#: champion's ``[metrics]`` has (roc_auc only as the gate's metric: it needs a binary ``predict_proba``).
RECORDABLE = (frozenset({"accuracy", "precision", "recall", "f1"}), frozenset({"mae", "rmse", "r2"}))


def _dt(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, UTC)


def recorded_metrics(gate: str, champion_dir: Path) -> list[str]:
    """What a searched challenger is scored on: the gate's metric, and the champion's ``[metrics]`` of its kind
    (so ``diff`` compares the same figures)."""
    champion = parse_manifest((champion_dir / MANIFEST_FILE).read_bytes()).metrics
    kind = next((k for k in RECORDABLE if gate in k), frozenset())
    return [gate, *sorted(m for m in champion if m in kind and m != gate)]


def record_metrics(model_dir: Path, values: dict[str, float]) -> None:
    """The challenger's own ``[metrics]``, measured on the run's holdout, in place of the champion's copied
    by the search."""
    import tomli_w

    path = model_dir / MANIFEST_FILE
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    raw["metrics"] = {k: round(v, 6) for k, v in values.items()}
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")


class RunStore:
    """Policies' overrides and runs (tables from migration v9). Blocking: call through a thread."""

    def __init__(self, state_dir: Path, busy_timeout_s: float = 5.0) -> None:
        self._engine = make_engine(state_dir, busy_timeout_s=busy_timeout_s)
        self._db = Db(self._engine)

    def close(self) -> None:
        self._db.close()
        self._engine.dispose()

    def overrides(self, model: str) -> dict[str, Any]:
        with self._db.read() as conn:
            row = conn.execute("SELECT overrides FROM maintain_policies WHERE model = ?", (model,)).fetchone()
        return {} if row is None else dict(json.loads(row[0]))

    def set_overrides(self, model: str, overrides: dict[str, Any], by: str) -> None:
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO maintain_policies (model, overrides, updated_at, updated_by) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (model) DO UPDATE SET overrides = excluded.overrides, updated_at = excluded.updated_at, "
                "updated_by = excluded.updated_by",
                (model, json.dumps(overrides), time.time(), by),
            )

    def insert(self, run: r.MaintainRunInfo) -> int:
        with self._db.write() as conn:
            cur = conn.execute(
                "INSERT INTO maintain_runs (model, state, trigger, started_at, finished_at, record) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (run.model, run.state, run.trigger, run.started_at.timestamp(), None, run.model_dump_json()),
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    def save(self, run: r.MaintainRunInfo) -> None:
        finished = run.finished_at.timestamp() if run.finished_at else None
        with self._db.write() as conn:
            conn.execute(
                "UPDATE maintain_runs SET state = ?, finished_at = ?, record = ? WHERE id = ?",
                (run.state, finished, run.model_dump_json(), run.id),
            )

    def get(self, run_id: int) -> r.MaintainRunInfo | None:
        with self._db.read() as conn:
            row = conn.execute("SELECT record FROM maintain_runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else r.MaintainRunInfo.model_validate_json(row[0])

    def list(self, model: str | None, limit: int) -> list[r.MaintainRunInfo]:
        with self._db.read() as conn:
            if model is None:
                rows = conn.execute("SELECT record FROM maintain_runs ORDER BY id DESC LIMIT ?", (limit,))
            else:
                rows = conn.execute(
                    "SELECT record FROM maintain_runs WHERE model = ? ORDER BY id DESC LIMIT ?", (model, limit)
                )
            return [r.MaintainRunInfo.model_validate_json(text) for (text,) in rows]

    def all_paused(self) -> bool:
        """The global switch, kept as the overrides of the pseudo-model ``*`` (not a valid model name)."""
        return bool(self.overrides(ALL).get("paused"))

    # -- labelled feedback (daemon/maintain/feedback.py) ----------------------------------------------------

    def feedback_cursor(self, deployment: str) -> tuple[str, int] | None:
        with self._db.read() as conn:
            sql = "SELECT instance, seq FROM feedback_cursors WHERE deployment = ?"
            row = conn.execute(sql, (deployment,)).fetchone()
        return None if row is None else (str(row[0]), int(row[1]))

    def add_feedback(self, model: str, source: fb.Source, page: fb.Page) -> None:
        """The page's rows and the deployment's new cursor, in one transaction; then the oldest rows past
        :data:`~daemon.maintain.feedback.KEEP_ROWS` of the model go."""
        rows = [(model, source.deployment, source.version, *fb.encode(x)) for x in fb.to_labelled(page)]
        seq = page.rows[-1][0] if page.rows else page.last
        with self._db.write() as conn:
            conn.executemany(
                "INSERT INTO feedback_rows (model, deployment, version, at, inputs, label) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.execute(
                "INSERT INTO feedback_cursors (deployment, instance, seq) VALUES (?, ?, ?) ON CONFLICT (deployment) "
                "DO UPDATE SET instance = excluded.instance, seq = excluded.seq",
                (source.deployment, page.instance, seq),
            )
            conn.execute(
                "DELETE FROM feedback_rows WHERE model = ? AND id <= (SELECT id FROM feedback_rows WHERE model = ? "
                "ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (model, model, fb.KEEP_ROWS),
            )

    def feedback(self, model: str, limit: int) -> fb.Rows:
        """The model's newest ``limit`` labelled rows, oldest first."""
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT at, inputs, label FROM feedback_rows WHERE model = ? ORDER BY id DESC LIMIT ?", (model, limit)
            ).fetchall()
        return [fb.decode(*row) for row in reversed(rows)]

    def interrupt_running(self) -> int:
        """Runs left ``running`` by a daemon that stopped: interrupted (their steps say how far they got)."""
        now = datetime.now(UTC)
        fixed = 0
        for run in [x for x in self.list(None, 1_000_000) if x.state == "running"]:
            steps = [s.model_copy(update={"state": "failed", "finished_at": now, "message": "daemon stopped"})
                     if s.state == "running" else s for s in run.steps]  # fmt: skip
            self.save(run.model_copy(update={"state": "interrupted", "finished_at": now, "steps": steps,
                                             "reason": "the daemon stopped during the run"}))  # fmt: skip
            fixed += 1
        return fixed


class Maintenance:
    """The maintenance service (composition root: ``daemon/app.py``)."""

    def __init__(
        self,
        registry: Registry,
        store: RunStore,
        state_dir: Path,
        *,
        notify: Callable[[str, str, int | None, str | None], None],
        deployments: Callable[[str | None], list[Any]],
        alert_names: Callable[[str], set[str]],
        leader: Callable[[str], str | None] | None = None,
        sources: Callable[[str], list[fb.Source]] | None = None,
        feedback_inputs: bool = True,
        signing: SigningPolicy | None = None,
        code_policy: CodePolicy | None = None,
    ) -> None:
        self.registry = registry
        self.code_policy = code_policy
        """``[policy] run_code``: no run (scheduled ones too) evaluates or trains unapproved code."""
        self.signing = signing
        """``[signing] require``: a challenger is promoted only with a verified signature under "promote"."""
        self.store = store
        self.root = state_dir / "maintenance"
        self.notify = notify
        """Registry events for the push and the alias move (clients refresh, deployments roll out)."""
        self.deployments = deployments
        """The deployments of a model (None: all), as the deployment manager lists them."""
        self.alert_names = alert_names
        self.leader = leader
        """In a cluster: the id of the model's elected leader when it is not this daemon (None: run here)."""
        self.feedback_inputs = feedback_inputs
        """The runtimes keep their predictions' inputs (``[deploy] feedback_inputs``): feedback can be data."""
        self.sources = sources
        """The runtimes serving a model's deployments now (their labelled feedback); on the loop."""
        self._feedback_models: set[str] = set()
        """Models whose policy trains or evaluates on ``feedback``: their runtimes are pulled periodically."""
        self._running: dict[str, asyncio.Task[None]] = {}
        self._cancels: dict[int, Cancel] = {}
        """Runs going on in this daemon: what stops their worker (``maintain cancel``)."""
        self._current: dict[int, str] = {}
        """The step each of those runs is at (a run cannot be cancelled once it promotes)."""
        self._triggered_tasks: set[asyncio.Task[None]] = set()
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        """Cron triggers, one job per model with a ``schedule``."""

    # -- triggers --------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Schedule every model whose policy has a ``schedule`` (policies that cannot run are logged), and the
        periodic pull of labelled feedback."""
        self.scheduler.start()
        self.scheduler.add_job(self._pull_all, "interval", seconds=fb.PULL_SECONDS, id="maintain.feedback",
                               max_instances=1, coalesce=True)  # fmt: skip
        models: list[str] = []
        offset = 0
        while True:
            page = await asyncio.to_thread(self.registry.list_models, q.ListModels(limit=1000, offset=offset))
            models += [m.name for m in page.items]
            offset += len(page.items)
            if not page.items or offset >= page.total:
                break
        for model in models:
            try:
                info = await asyncio.to_thread(self.policy, model)
            except ProtocolError as exc:
                log.warning("maintenance policy of %s not usable: %s", model, exc.message)
                continue
            self.reschedule(info)

    def reschedule(self, info: r.MaintainPolicyInfo) -> None:
        """(Re)place the model's cron job after its policy changed; on the event loop."""
        if pol.FEEDBACK in (info.policy.get("data"), info.policy.get("holdout")):
            self._feedback_models.add(info.model)
        else:
            self._feedback_models.discard(info.model)
        job = f"maintain.{info.model}"
        if self.scheduler.get_job(job) is not None:
            self.scheduler.remove_job(job)
        schedule = info.policy.get("schedule")
        if schedule and not info.policy.get("paused") and info.champion is not None:
            trigger = CronTrigger.from_crontab(schedule, timezone=UTC)
            self.scheduler.add_job(self._trigger, trigger, args=(info.model, "schedule"), id=job,
                                   max_instances=1, coalesce=True, misfire_grace_time=3600)  # fmt: skip

    async def _pull_all(self) -> None:
        for model in sorted(self._feedback_models):
            await self.pull_feedback(model)

    async def pull_feedback(self, model: str) -> int:
        """Pull the new labelled rows of every runtime serving ``model``; how many arrived. A runtime that
        cannot be read is logged and skipped (its rows wait for the next pull)."""
        sources = self.sources(model) if self.sources is not None else []
        return await asyncio.to_thread(lambda: sum(self._pull_source(model, source) for source in sources))

    def _pull_source(self, model: str, source: fb.Source) -> int:
        """Blocking. Pages from the deployment's cursor on; a new runtime process is read from its start."""
        cursor = self.store.feedback_cursor(source.deployment)
        after = cursor[1] if cursor is not None else 0
        got = 0
        try:
            for _ in range(fb.MAX_PAGES):
                page = fb.fetch(source, after)
                if cursor is not None and page.instance != cursor[0] and after:
                    after = 0
                    page = fb.fetch(source, after)
                if page.first > after + 1:
                    log.warning("%s: %d labelled rows were dropped by its runtime before they were pulled",
                                source.deployment, page.first - after - 1)  # fmt: skip
                if not page.rows and cursor == (page.instance, after):
                    break
                self.store.add_feedback(model, source, page)
                got += len(page.rows)
                after = page.rows[-1][0] if page.rows else after
                cursor = (page.instance, after)
                if len(page.rows) < fb.PAGE_ROWS:
                    break
        except (OSError, ValueError) as exc:
            log.warning("labelled feedback of %s not pulled: %s", source.deployment, exc)
        return got

    def on_alert(self, event: AlertEvent) -> None:
        """An alert fired: start a run of the deployment's model if its policy names that alert."""
        if event.state != "firing":
            return
        models = {d.model for d in self.deployments_named(event.deployment)}
        for model in models:
            task = asyncio.create_task(self._alert(model, event.rule), name=f"maintain-alert-{model}")
            self._triggered_tasks.add(task)
            task.add_done_callback(self._triggered_tasks.discard)

    async def _alert(self, model: str, rule: str) -> None:
        try:
            info = await asyncio.to_thread(self.policy, model)
        except ProtocolError:
            return
        if rule in info.policy.get("alerts", []):
            await self._trigger(model, f"alert:{rule}")

    async def _trigger(self, model: str, trigger: str) -> None:
        """A scheduled or alert-triggered run; what prevents it (running already, paused, not the leader,
        a policy problem) is logged, not raised: nobody is waiting for an answer."""
        try:
            run = await self.run_now(model, trigger=trigger)
        except ProtocolError as exc:
            log.info("maintenance of %s (%s) not started: %s", model, trigger, exc.message)
            return
        log.info("maintenance run %d of %s started (%s)", run.id, model, trigger)

    # -- policy ----------------------------------------------------------------------------------------------

    def _champion(self, model: str, alias: str) -> tuple[int, Manifest, set[str]]:
        _, number, _ = self.registry.resolve(f"{model}@{alias}")
        detail = self.registry.show(q.Show(ref=f"{model}:{number}"))
        try:
            manifest = parse_manifest(detail.manifest.encode())
        except ValueError as exc:
            raise invalid(f"{model}:{number} has no readable manifest: {exc}") from None
        return number, manifest, {f.path for f in detail.files}

    def policy(self, model: str, overrides: dict[str, Any] | None = None) -> r.MaintainPolicyInfo:
        """Blocking. The effective policy and what would make a run fail."""
        over = self.store.overrides(model) if overrides is None else overrides
        alias = str(over.get("alias", "production"))
        try:
            number, manifest, files = self._champion(model, alias)
        except ProtocolError as exc:
            if exc.code != ErrorCode.NOT_FOUND:
                raise
            self.registry.get_model(q.GetModel(name=model))  # an unknown model is NOT_FOUND
            missing = f"{model}@{alias} does not exist: no champion to maintain"
            return r.MaintainPolicyInfo(model=model, policy=over, overrides=over, champion=None, problems=[missing])
        try:
            effective = pol.effective(manifest, over)
        except ValueError as exc:
            raise invalid(f"maintenance policy of {model}: {exc}") from None
        names = BUILTIN_ALERTS | {a.rule_name for a in manifest.alerts or ()} | self.alert_names(model)
        return r.MaintainPolicyInfo(
            model=model,
            policy=effective.model_dump(),
            overrides=over,
            champion=number,
            problems=pol.check_usable(effective, manifest, files, names, feedback_inputs=self.feedback_inputs),
        )

    def set_policy(self, req: q.MaintainSet, user: str) -> r.MaintainPolicyInfo:
        """Blocking. Refused (INVALID, nothing stored) when the resulting policy is not valid or not usable."""
        over = self.store.overrides(req.name)
        try:
            for key, text in req.set.items():
                value = pol.parse_value(key, text)
                if value == "" or value == []:
                    over.pop(key, None)
                else:
                    over[key] = value
            for key in req.unset:
                pol.parse_value(key, "")
                over.pop(key, None)
        except ValueError as exc:
            raise invalid(str(exc)) from None
        info = self.policy(req.name, over)
        if info.problems and not over.get("paused"):
            raise invalid(f"maintenance policy of {req.name}: " + "; ".join(info.problems))
        self.store.set_overrides(req.name, over, user)
        return info

    # -- runs ------------------------------------------------------------------------------------------------

    async def run_now(self, model: str, trigger: str = "manual") -> r.MaintainRunInfo:
        if self.leader is not None and (other := self.leader(model)) is not None:
            raise conflict(f"{model} is maintained by its elected leader, {other}: run it there")
        task = self._running.get(model)
        if task is not None and not task.done():
            raise conflict(f"a maintenance run of {model} is already running")
        info = await asyncio.to_thread(self.policy, model)
        if info.problems:
            raise invalid(f"cannot maintain {model}: " + "; ".join(info.problems))
        effective = pol.Policy.model_validate(info.policy)
        if effective.paused:
            raise conflict(f"maintenance of {model} is paused (maintain resume {model})")
        if await asyncio.to_thread(self.store.all_paused):
            raise conflict("maintenance of every model is paused (maintain resume)")
        run = r.MaintainRunInfo(id=0, model=model, state="running", trigger=trigger, started_at=datetime.now(UTC),
                                champion=info.champion, metric=effective.metric)  # fmt: skip
        run_id = await asyncio.to_thread(self.store.insert, run)
        workdir = self.root / f"run-{run_id}"
        run = run.model_copy(update={"id": run_id, "log": str(workdir / "run.log")})
        await asyncio.to_thread(self.store.save, run)
        self._cancels[run_id] = Cancel()
        self._running[model] = asyncio.create_task(self._run(run, effective, workdir), name=f"maintain-{model}")
        return run

    async def _step(self, run: r.MaintainRunInfo, name: str, fn: Callable[[], Any]) -> tuple[r.MaintainRunInfo, Any]:
        token = self._cancels.get(run.id)
        if token is not None and token.cancelled:
            raise _StepFailed(run, token.reason)
        self._current[run.id] = name  # on the loop, like cancel(): no step starts after a cancel was accepted
        step = r.MaintainStep(name=name, state="running", started_at=datetime.now(UTC))
        run = run.model_copy(update={"steps": [*run.steps, step]})
        await asyncio.to_thread(self.store.save, run)
        try:
            result = await asyncio.to_thread(fn)
        except (WorkerError, ProtocolError, ValueError, OSError) as exc:
            message = f"{exc}"
            if isinstance(exc, WorkerError) and exc.log_tail:
                message += f"\n{exc.log_tail}"
            done = step.model_copy(update={"state": "failed", "finished_at": datetime.now(UTC), "message": message})
            run = run.model_copy(update={"steps": [*run.steps[:-1], done]})
            if token is not None and token.cancelled:
                raise _StepFailed(run, token.reason) from None
            raise _StepFailed(run, f"{name} failed: {exc}") from None
        message, figures = result[1] if isinstance(result, tuple) and len(result) == 2 else ("", {})
        done = step.model_copy(update={"state": "done", "finished_at": datetime.now(UTC), "message": message,
                                       "figures": figures})  # fmt: skip
        run = run.model_copy(update={"steps": [*run.steps[:-1], done]})
        await asyncio.to_thread(self.store.save, run)
        return run, result[0] if isinstance(result, tuple) else result

    async def _run(self, run: r.MaintainRunInfo, p: pol.Policy, workdir: Path) -> None:
        token = self._cancels[run.id]
        try:
            run = await self._steps(run, p, workdir, token)
        except _StepFailed as failed:
            state = "cancelled" if token.cancelled else "failed"
            run = failed.run.model_copy(update={"state": state, "reason": failed.reason})
        except Exception as exc:  # never let a run die silently
            log.exception("maintenance run %d of %s failed", run.id, run.model)
            run = run.model_copy(update={"state": "failed", "reason": f"internal error: {exc}"})
        finally:
            self._cancels.pop(run.id, None)
            self._current.pop(run.id, None)
        if run.state != "awaiting_approval":
            run = run.model_copy(update={"finished_at": run.finished_at or datetime.now(UTC)})
        await asyncio.to_thread(self.store.save, run)
        log.info("maintenance run %d of %s: %s %s", run.id, run.model, run.state, run.reason)

    async def _steps(self, run: r.MaintainRunInfo, p: pol.Policy, workdir: Path, token: Cancel) -> r.MaintainRunInfo:
        model, champion = run.model, run.champion
        assert champion is not None
        assert p.holdout is not None
        assert p.target is not None
        if self.code_policy is not None:  # [policy] run_code (docs/security.md)
            refusal = await asyncio.to_thread(self.code_policy.start_refusal, model, champion, p.command)
            if refusal is not None:
                raise _StepFailed(run, refusal)
        champ_env = (
            None if self.code_policy is None else await asyncio.to_thread(self.code_policy.pickle_env, model, champion)
        )
        await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
        logfile = workdir / "run.log"
        limits = Limits(timeout_seconds=p.timeout_seconds, memory_mb=p.memory_mb)
        champ_dir = await asyncio.to_thread(self.registry.materialize, model, champion, workdir / "versions")
        holdout = champ_dir / p.holdout
        data = None if p.data is None else champ_dir / p.data
        target = p.target or ""
        if pol.FEEDBACK in (p.data, p.holdout):
            await self.pull_feedback(model)
            run, (target, train_csv, holdout_csv) = await self._step(
                run, "collect_feedback", lambda: self._feedback_data(model, p, champ_dir, workdir)
            )
            data = train_csv if p.data == pol.FEEDBACK else data
            holdout = holdout_csv if p.holdout == pol.FEEDBACK else holdout

        def score(model_dir: Path, metrics: list[str] | None = None) -> tuple[float, tuple[str, dict[str, float]]]:
            allow = champ_env if model_dir == champ_dir else None  # an approved champion's refused pickle globals
            got = evaluate(model_dir, holdout, target, metrics or [p.metric], limits, logfile, token, allow)
            return got[p.metric], (f"{p.metric} {got[p.metric]:.6f} on {p.holdout}", got)

        def score_searched(model_dir: Path) -> tuple[float, tuple[str, dict[str, float]]]:
            got = score(model_dir, recorded_metrics(p.metric, champ_dir))
            record_metrics(model_dir, got[1][1])
            return got

        run, champ_score = await self._step(run, "evaluate_champion", lambda: score(champ_dir))
        run = run.model_copy(update={"champion_score": champ_score})
        output = workdir / "challenger"
        shutil.rmtree(output, ignore_errors=True)

        def make() -> tuple[Path, tuple[str, dict[str, float]]]:
            got = train(p.command or "", champ_dir, data, output, limits, logfile, token)
            return got, (f"challenger written to {got}", {})

        def searched() -> tuple[Path, tuple[str, dict[str, float]]]:
            assert p.search is not None
            assert data is not None
            got = search(p.search, champ_dir, data, target, p.metric, output, limits, logfile, token)
            best = ", ".join(f"{k}={v!r}" for k, v in sorted(got.get("best_params", {}).items()))
            message = f"{p.search.method} search: cv {p.metric} {got['cv_score']:.6f} with {best}"
            figures: dict[str, float] = {
                k: float(got[k]) for k in ("cv_score", "candidates", "fits", "seconds") if k in got
            }
            return output, (message, figures)

        if p.search is not None:
            run, chal_dir = await self._step(run, "search", searched)
        else:
            run, chal_dir = await self._step(run, "train", make)
        score_challenger = score_searched if p.search is not None else score
        run, chal_score = await self._step(run, "evaluate_challenger", lambda: score_challenger(chal_dir))
        run = run.model_copy(update={"challenger_score": chal_score})
        better, verdict = gate(p, champ_score, chal_score)

        def judged() -> tuple[bool, tuple[str, dict[str, float]]]:
            return better, (verdict, {"champion": champ_score, "challenger": chal_score})

        run, _ = await self._step(run, "gate", judged)
        if not better:
            return run.model_copy(update={"state": "rejected", "reason": verdict})

        def push() -> tuple[int, tuple[str, dict[str, float]]]:
            number = self._push(model, chal_dir, champion, run.id, p.metric, chal_score)
            return number, (f"pushed as {model}:{number} (parent {champion})", {})

        run, number = await self._step(run, "push", push)
        if self.code_policy is not None:  # the challenger of an approved champion's run is approved with it
            await asyncio.to_thread(self.code_policy.inherit, model, number, champion, f"maintenance run {run.id}")
        self.notify("version", model, number, None)
        run = run.model_copy(update={"challenger": number, "reason": verdict})
        if p.promote == "approve":
            return run.model_copy(update={"state": "awaiting_approval"})
        return await self._promote(run, p, f"maintenance run {run.id}: {verdict}")

    def _feedback_data(
        self, model: str, p: pol.Policy, champ_dir: Path, workdir: Path
    ) -> tuple[tuple[str, Path, Path], tuple[str, dict[str, float]]]:
        """Blocking. The model's newest labelled rows as CSV: the newest ``holdout_fraction`` as the holdout
        (when it is ``feedback``), the rest as training data (all of them when only ``data`` is)."""
        manifest = parse_manifest((champ_dir / MANIFEST_FILE).read_bytes())
        inputs = [c.name for c in manifest.signature.inputs] if manifest.signature else []
        target = fb.target_name(p.target, inputs)
        rows = [x for x in self.store.feedback(model, p.feedback_rows) if fb.complete(x, inputs)]
        if len(rows) < p.feedback_min_rows:
            raise ValueError(
                f"only {len(rows)} labelled feedback rows with every input of {model}'s signature; the policy "
                f"needs at least {p.feedback_min_rows} (feedback_min_rows)"
            )
        held = max(1, round(len(rows) * p.holdout_fraction)) if p.holdout == pol.FEEDBACK else 0
        train_rows, holdout_rows = rows[: len(rows) - held], rows[len(rows) - held :]
        if p.data == pol.FEEDBACK and not train_rows:
            raise ValueError("no labelled feedback rows are left for training after the holdout")
        train_csv, holdout_csv = workdir / "feedback-train.csv", workdir / "feedback-holdout.csv"
        fb.write_csv(train_rows, inputs, target, train_csv)
        fb.write_csv(holdout_rows, inputs, target, holdout_csv)
        first, last = (datetime.fromtimestamp(x.at, UTC) for x in (rows[0], rows[-1]))
        span = f"{first:%Y-%m-%d %H:%M} – {last:%Y-%m-%d %H:%M} UTC"
        message = f"{len(rows)} labelled rows ({span}): {len(train_rows)} for training, {len(holdout_rows)} held out"
        figures = {"rows": float(len(rows)), "train_rows": float(len(train_rows)), "holdout_rows": float(held)}
        return (target, train_csv, holdout_csv), (message, figures)

    async def _check_signed(self, model: str, number: int, alias: str) -> None:
        """``[signing] require``: "promote" refuses the alias move; "deploy" refuses it too when a deployment
        follows the alias (its rollout would be refused, and the run would wait for it in vain)."""
        if self.signing is None:
            return
        await self.signing.require(model, number, "promote")
        if any(d.ref == f"{model}@{alias}" for d in self.deployments(model)):
            await self.signing.require(model, number, "deploy")

    async def _promote(self, run: r.MaintainRunInfo, p: pol.Policy, reason: str) -> r.MaintainRunInfo:
        model, number = run.model, run.challenger
        assert number is not None
        try:
            await self._check_signed(model, number, p.alias)
        except ProtocolError as exc:
            raise _StepFailed(run, f"promote refused: {exc.message}") from None

        def promote() -> tuple[None, tuple[str, dict[str, float]]]:
            self.registry.alias_set(q.AliasSet(name=model, alias=p.alias, version=number, reason=reason[:1000]), USER)
            return None, (f"{model}@{p.alias} → {number}", {})

        run, _ = await self._step(run, "promote", promote)
        self.notify("alias", model, number, p.alias)
        run, _ = await self._step_async(run, "rollout", self._rollout(model, p.alias, number))
        return run.model_copy(update={"state": "promoted"})

    async def _step_async(self, run: r.MaintainRunInfo, name: str, work: Any) -> tuple[r.MaintainRunInfo, Any]:
        """A step that waits on the event loop (the rollout), recorded like the others."""
        step = r.MaintainStep(name=name, state="running", started_at=datetime.now(UTC))
        run = run.model_copy(update={"steps": [*run.steps, step]})
        await asyncio.to_thread(self.store.save, run)
        ok, message = await work
        done = step.model_copy(update={"state": "done" if ok else "failed", "finished_at": datetime.now(UTC),
                                       "message": message})  # fmt: skip
        return run.model_copy(update={"steps": [*run.steps[:-1], done]}), ok

    async def _rollout(self, model: str, alias: str, number: int) -> tuple[bool, str]:
        """Wait until every deployment following ``model@alias`` serves ``number`` (health-gated by the
        deployment manager, which keeps the old version serving when the new one fails)."""
        deadline = time.monotonic() + ROLLOUT_TIMEOUT_S
        while True:
            following = [d for d in self.deployments(model) if d.ref == f"{model}@{alias}" and d.desired == "running"]
            if not following:
                return True, "no deployment follows the alias"
            done = [d for d in following if d.version == number and d.state == "running"]
            failed = [d for d in following if d.state in ("failed", "crashloop")]
            if len(done) == len(following):
                return True, f"{len(done)} deployment(s) serve {model}:{number}"
            if failed or time.monotonic() > deadline:
                names = ", ".join(f"{d.name} ({d.state}: {d.message})" for d in following if d not in done)
                return False, f"not rolled out everywhere: {names}; the previous version keeps serving"
            await asyncio.sleep(0.2)

    def _push(self, model: str, directory: Path, parent: int, run_id: int, metric: str, score: float) -> int:
        files = []
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            rel = path.relative_to(directory).as_posix()
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                got = self.registry.ingest(fd, os.fstat(fd).st_size)
            finally:
                os.close(fd)
            files.append(q.PushFile(path=rel, sha256=got.sha256, size=got.size,
                                    executable=os.access(path, os.X_OK)))  # fmt: skip
        if not any(f.path == MANIFEST_FILE for f in files):
            raise invalid(f"the challenger has no {MANIFEST_FILE}")
        req = q.Push(files=files, name=model, message=f"maintenance run {run_id}: {metric} {score:.6f}",
                     tags={"maintenance.run": str(run_id)})  # fmt: skip
        return self.registry.push(req, USER, parent=parent).version.number

    def pause(self, req: q.MaintainPause, user: str) -> r.MaintainPauseInfo:
        """Blocking. The global switch, or one model's ``paused`` key (checked like ``maintain set``)."""
        if req.name is None:
            self.store.set_overrides(ALL, {"paused": True} if req.paused else {}, user)
            return r.MaintainPauseInfo(all_paused=req.paused)
        info = self.set_policy(q.MaintainSet(name=req.name, set={"paused": str(req.paused).lower()}), user)
        return r.MaintainPauseInfo(all_paused=self.store.all_paused(), model=req.name,
                                   model_paused=bool(info.policy.get("paused")))  # fmt: skip

    async def decide(self, req: q.MaintainDecide, user: str) -> r.MaintainRunInfo:
        run = await asyncio.to_thread(self.store.get, req.run)
        if run is None:
            raise not_found(f"no maintenance run {req.run}")
        if run.state != "awaiting_approval":
            raise conflict(f"run {req.run} is {run.state}, not awaiting approval")
        reason = req.reason or ("approved" if req.approve else "rejected")
        if not req.approve:
            run = run.model_copy(update={"state": "rejected", "finished_at": datetime.now(UTC),
                                         "reason": f"rejected by {user}: {reason}"})  # fmt: skip
            await asyncio.to_thread(self.store.save, run)
            return run
        info = await asyncio.to_thread(self.policy, run.model)
        p = pol.Policy.model_validate(info.policy)
        if run.challenger is not None:  # [signing] require: refused, the run still awaits approval
            await self._check_signed(run.model, run.challenger, p.alias)
        try:
            run = await self._promote(run, p, f"maintenance run {run.id} approved by {user}: {reason}")
        except _StepFailed as failed:
            run = failed.run.model_copy(update={"state": "failed", "reason": failed.reason})
        run = run.model_copy(update={"finished_at": datetime.now(UTC)})
        await asyncio.to_thread(self.store.save, run)
        return run

    async def cancel(self, req: q.MaintainCancel, user: str) -> r.MaintainRunInfo:
        """Stop a run: a running one at once (its worker's process group is killed; no later step starts), or
        one awaiting approval (its pushed challenger stays a version, never promoted). Refused once the run
        has started to promote: the alias has moved, and ``alias rollback`` is the way back."""
        run = await asyncio.to_thread(self.store.get, req.run)
        if run is None:
            raise not_found(f"no maintenance run {req.run}")
        why = f"cancelled by {user}" + (f": {req.reason}" if req.reason else "")
        if run.state == "awaiting_approval":
            run = run.model_copy(update={"state": "cancelled", "finished_at": datetime.now(UTC), "reason": why})
            await asyncio.to_thread(self.store.save, run)
            return run
        if run.state != "running":
            raise conflict(f"run {req.run} is {run.state}: there is nothing to cancel")
        token = self._cancels.get(req.run)
        if token is None:
            raise conflict(f"run {req.run} is not running in this daemon (in a cluster, cancel it on its leader)")
        step = self._current.get(req.run, "")
        if step in ("promote", "rollout"):
            raise conflict(f"run {req.run} is at {step}: too late to cancel; move the alias back with alias rollback")
        token.cancel(why)
        task = self._running.get(run.model)
        if task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), CANCEL_WAIT_S)
        got = await asyncio.to_thread(self.store.get, req.run)
        assert got is not None
        return got

    def deployments_named(self, name: str) -> list[Any]:
        return [d for d in self.deployments(None) if d.name == name]

    async def close(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        for task in [*self._running.values(), *self._triggered_tasks]:
            task.cancel()
        for task in [*self._running.values(), *self._triggered_tasks]:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def gate(p: pol.Policy, champion: float, challenger: float) -> tuple[bool, str]:
    """Better by the asked margin (absolute and relative), in the metric's direction; the reason either way."""
    gain = challenger - champion if p.higher_is_better else champion - challenger
    relative = gain / abs(champion) if champion else (float("inf") if gain > 0 else 0.0)
    figures = f"{p.metric} {champion:.6f} → {challenger:.6f} ({gain:+.6f}, {relative:+.2%})"
    if gain <= 0:
        return False, f"not better: {figures}"
    if gain < p.min_improvement:
        return False, f"better by less than {p.min_improvement:g}: {figures}"
    if relative < p.min_relative_improvement:
        return False, f"better by less than {p.min_relative_improvement:.2%}: {figures}"
    return True, f"better: {figures}"


class _StepFailed(Exception):
    def __init__(self, run: r.MaintainRunInfo, reason: str) -> None:
        super().__init__(reason)
        self.run = run
        self.reason = reason
