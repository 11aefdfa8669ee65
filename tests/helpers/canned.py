"""A small registry as the fake client answers it: three models, two deployments, a firing alert and two
maintenance runs. Times are fixed; what a screen shows relative to now (a deployment's uptime, how long an
alert has been active) starts ten days and a half hour before now, so its text (``10d00h``) stays the same."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from daemon.protocol import deploy, requests
from daemon.protocol import results as r

from .fake_client import FakeClient

NOW = datetime(2026, 11, 27, 14, 0, 5, tzinfo=UTC)
SHA = "c" * 64


def long_ago() -> datetime:
    """Ten days and a half hour before now: an uptime of ``10d00h`` for the next half hour."""
    return datetime.now(UTC) - timedelta(days=10, minutes=30)


def model(name: str, versions: int, aliases: dict[str, int], description: str = "") -> r.ModelSummary:
    return r.ModelSummary(name=name, description=description, created_at=NOW - timedelta(days=3), updated_at=NOW,
                          versions=versions, latest=versions, aliases=aliases)


MODELS = [
    model("churn", 3, {"production": 2, "staging": 3}, "customer churn, gradient boosting"),
    model("fraud", 1, {"production": 1}, "card fraud scores"),
    model("iris", 2, {}, ""),
]


def deployment(name: str, ref: str, version: int, port: int, *, state: str = "running") -> deploy.DeploymentInfo:
    running = state == "running"
    instance = deploy.InstanceInfo(id=f"{port:x}", version=version, key=f"{port}:1",
                                   admin_url=f"http://127.0.0.1:{port + 1}", started_at=long_ago())
    return deploy.DeploymentInfo(
        name=name, ref=ref, model=ref.split("@")[0].split(":")[0], version=version, backend="process",
        desired="running" if running else "stopped", state=state, health="healthy" if running else "unknown",
        endpoint=f"http://127.0.0.1:{port}" if running else None, port=port, restarts=1 if running else 0,
        message="", env={}, options=deploy.ContainerOptions(), instance=instance if running else None,
        created_at=NOW, updated_at=NOW, started_at=long_ago() if running else None,
    )


def deployments() -> list[deploy.DeploymentInfo]:
    return [
        deployment("churn-production", "churn@production", 2, 8081),
        deployment("fraud-production", "fraud@production", 1, 8083, state="stopped"),
    ]


def alerts() -> r.AlertList:
    return r.AlertList(
        items=[r.AlertStateInfo(deployment="churn-production", rule="low-f1", severity="warning", state="firing",
                                value=0.81, since=long_ago(), active_since=long_ago(), expr="f1 < 0.85 for 10m")],
        history=[r.AlertTransitionInfo(deployment="churn-production", rule="low-f1", severity="warning",
                                       state="firing", value=0.81, at=NOW,
                                       message="churn-production: low-f1 is firing")],
    )


RUNS = [
    r.MaintainRunInfo(id=2, model="churn", state="awaiting_approval", trigger="alert:low-f1", started_at=NOW,
                      finished_at=NOW + timedelta(minutes=4), champion=2, challenger=3, metric="f1",
                      champion_score=0.81, challenger_score=0.88, reason="better by 0.07",
                      steps=[r.MaintainStep(name="train", state="done", started_at=NOW,
                                            finished_at=NOW + timedelta(minutes=3), message="trained",
                                            figures={})],
                      log="/var/lib/modeltui/maintain/2.log"),
    r.MaintainRunInfo(id=1, model="churn", state="rejected", trigger="manual", started_at=NOW - timedelta(days=1),
                      finished_at=NOW - timedelta(days=1) + timedelta(minutes=5), champion=2, challenger=None,
                      metric="f1", champion_score=0.86, challenger_score=0.84, reason="not better by 0.01"),
]


def run(request: requests.BaseRequest[r.MaintainRunInfo]) -> r.MaintainRunInfo:
    """The run a MaintainShow asks for."""
    assert isinstance(request, requests.MaintainShow)
    return next(x for x in RUNS if x.id == request.run)


def canned_client() -> FakeClient:
    """A fake client that answers what the models, deployments, alerts and maintenance views ask."""
    client = FakeClient()
    client.answer(requests.ListModels, r.ModelList(items=MODELS, total=len(MODELS)))
    client.answer(requests.ListDeployments, r.DeploymentList(items=deployments()))
    client.answer(requests.AlertsListRequest, alerts())
    client.answer(requests.MaintainRuns, r.MaintainRunList(items=RUNS))
    client.answer(requests.MaintainShow, run)
    return client
