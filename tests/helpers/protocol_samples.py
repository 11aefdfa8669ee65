"""One valid sample of every request, result and event of the protocol, with fixed times (the round-trip
tests check every type has one; the access tests send every request; the fake client answers with them)."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel

from daemon.protocol import deploy, events
from daemon.protocol import requests as q
from daemon.protocol import results as r

NOW = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)
SHA = "a" * 64

SUMMARY = r.VersionSummary(
    model="m", number=2, digest=SHA, parent=1, flavor="sklearn", message="x", tags={"k": "v"},
    created_by="alice", created_at=NOW, size=10, file_count=2, aliases=["production"],
)
FILE = r.FileInfo(path="model.skops", size=5, sha256=SHA, executable=False)
MODEL = r.ModelSummary(name="m", description="d", created_at=NOW, updated_at=NOW, versions=2, latest=2,
                       aliases={"production": 2})
ALIAS_EVENT = r.AliasEventInfo(model="m", alias="production", from_version=1, to_version=2, by="alice", at=NOW,
                               reason="better")

REQUESTS: list[BaseModel] = [
    q.Ping(),
    q.DaemonStatusRequest(),
    q.DaemonStop(),
    q.Subscribe(topics=["registry"]),
    q.ListModels(query="churn", limit=10, offset=5),
    q.ListModels(pattern="!production→\\d", sort="versions", descending=True, limit=10000),
    q.GetModel(name="m"),
    q.DescribeModel(name="m", description="about\nit"),
    q.RemoveModel(name="m", force=True),
    q.Log(name="m", limit=5),
    q.Show(ref="m@production"),
    q.Diff(a="m:1", b="m"),
    q.Upload(files=[q.UploadFile(path="a/b.bin", size=3)]),
    q.PutObject(sha256=SHA, size=3, offset=0, data="YWJj"),
    q.Push(files=[q.PushFile(path="modeltui.toml", sha256=SHA, size=9, executable=True)], name="m", message="msg",
           tags={"team": "risk"}, alias="staging", source=q.Source(git_commit="f" * 40, git_dirty=True, path="/x")),
    q.PushFiles(files=[q.NewFile(path="model.skops", size=3, executable=False)], name="m", alias="production"),
    q.Checkout(ref="m:3"),
    q.Tag(ref="m:3", set={"a": "b"}, unset=["c"]),
    q.RemoveVersion(ref="m:3", force=True),
    q.AliasSet(name="m", alias="production", version=3, reason="r"),
    q.AliasRemove(name="m", alias="production"),
    q.AliasHistoryRequest(name="m", alias="production", at=NOW),
    q.Rollback(name="m", alias="production", reason="bad"),
    q.Gc(dry_run=True, grace_seconds=0),
    q.Deploy(ref="m@production", name="churn-prod", backend="docker", port=8080, env={"THREADS": "2"},
             options=deploy.ContainerOptions(cpus=1.5, memory_mb=512)),
    q.Undeploy(name="churn-prod"),
    q.ListDeployments(model="m"),
    q.ClusterStatusRequest(),
    q.MaintainSet(name="m", set={"promote": "auto"}, unset=["schedule"]),
    q.MaintainPolicyRequest(name="m"),
    q.MaintainRunNow(name="m"),
    q.MaintainRuns(name="m", limit=5),
    q.MaintainShow(run=3),
    q.MaintainDecide(run=3, approve=True, reason="looks right"),
    q.MaintainCancel(run=3, reason="wrong data"),
    q.AuditRequest(since=NOW, user="alice", limit=50),
    q.DoctorRequest(),
    q.MaintainPause(name=None, paused=True),
    q.GetDeployment(name="churn-prod", events=5),
    q.RestartDeployment(name="churn-prod"),
    q.DeploymentTokenStatus(name="churn-prod"),
    q.RotateDeploymentToken(name="churn-prod"),
    q.UseDeploymentToken(name="churn-prod"),
    q.Logs(name="churn-prod", tail=10, follow=True),
    q.MetricsRequest(name="churn-prod", window_seconds=900),
    q.AlertsListRequest(deployment="churn-prod", history=10),
    q.AlertRulesRequest(deployment="churn-prod"),
    q.AlertAdd(deployment="churn-prod", rule='drift_psi{feature="x"} > 0.2 for 10m', severity="critical",
               name="drift-x", window_seconds=600),
    q.AlertRemove(deployment="churn-prod", name="drift-x"),
    q.SignVersion(ref="m:3", digest=SHA,
                  signature="-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----\n"),
    q.ApproveCode(ref="m:3", digest=SHA, reason="reviewed predict.py"),
]
INSTANCE = deploy.InstanceInfo(id="ab12", version=2, key="123:456", admin_url="http://127.0.0.1:4000",
                               started_at=NOW)
DEPLOYMENT = deploy.DeploymentInfo(
    name="churn-prod", ref="m@production", model="m", version=2, backend="process", desired="running",
    state="running", health="healthy", endpoint="http://127.0.0.1:8080", port=8080, restarts=1, message="",
    env={"THREADS": "2"}, options=deploy.ContainerOptions(), instance=INSTANCE, rollout_to=3, created_at=NOW,
    updated_at=NOW, started_at=NOW,
)
SIGNED = r.SignatureInfo(status="verified", principal="alice@example.com", fingerprint="SHA256:" + "A" * 43,
                         key_type="ssh-ed25519", signed_by="alice", signed_at=NOW, checked_at=NOW)

RESULTS: list[r.Result] = [
    r.Ack(),
    r.Pong(daemon_version="0.1", pid=1),
    r.DaemonStatus(daemon_version="0.1", protocol=1, pid=1, mode="user", uptime_seconds=1.5, socket="/s",
                   state_dir="/d", database="/d/r.db", models=1, versions=2, objects=3, object_bytes=4, clients=1,
                   exporter="http://127.0.0.1:9464/metrics"),
    r.ModelList(items=[MODEL], total=1),
    r.ModelDetail(model=MODEL),
    r.VersionList.of([SUMMARY], 1),
    r.VersionDetail(version=SUMMARY, description="d", model_file="model.skops", manifest="name='m'",
                    params={"C": 1.0, "kernel": "rbf"}, metrics={"f1": 0.9}, signature={"inputs": []},
                    requirements=["scikit-learn"], source=r.SourceInfo(git_commit="f" * 40), files=[FILE],
                    children=[3], lineage=[1]),
    r.PushResult(version=SUMMARY, created=True),
    r.VersionDetail(version=SUMMARY, description="d", model_file="model.pkl", manifest="name='m'", params={},
                    metrics={}, signature={}, requirements=[], source=r.SourceInfo(), files=[FILE], children=[],
                    lineage=[], code=r.CodeInfo(pickle_scan="refused: posix.system in model.pkl", pickle_ok=False,
                                                runs_code=["trusted = true"], approved_by="root", approved_at=NOW)),
    r.CodeApprovalInfo(model="m", version=3, approved_by="root", approved_at=NOW, runs_code=['flavor = "python"'],
                       reason="reviewed"),
    r.SignResult(version=SUMMARY, signature=SIGNED),
    r.VersionList.model_validate({"items": [SUMMARY], "total": 1, "signed": {SUMMARY.number: SIGNED}}),
    r.UploadResult(items=[r.UploadedObject(path="a", sha256=SHA, size=1, copied=False)]),
    r.PutResult(sha256=SHA, size=3, received=3, stored=True, copied=True),
    r.CheckoutResult(version=SUMMARY, files=[FILE], total_files=1),
    r.VersionDiff(a=SUMMARY, b=SUMMARY,
                  files=[r.FileChange(path="a", status="changed", size_a=1, size_b=2, sha256_a=SHA, sha256_b=SHA)],
                  unchanged_files=1, params=[r.ValueChange(key="C", a=1.0, b=2.0)],
                  metrics=[r.MetricChange(key="f1", a=0.8, b=0.9, delta=0.1)],
                  signature=[r.ValueChange(key="inputs.x", a="double", b=None)],
                  requirements_added=["numpy"], requirements_removed=[], flavor=None),
    ALIAS_EVENT,
    SUMMARY,
    r.AliasHistory(model="m", events=[ALIAS_EVENT], at=NOW, targets_at={"production": 2}),
    r.RemoveResult(model="m", removed_versions=[3]),
    r.GcResult(objects_removed=1, bytes_removed=2, staging_removed=0, dry_run=False),
    r.DeploymentDetail(deployment=DEPLOYMENT, events=[deploy.DeploymentEventInfo(at=NOW, kind="started", version=2,
                                                                                message="pid 123")]),
    r.DeploymentList(items=[DEPLOYMENT]),
    r.ClusterStatus(
        enabled=True, zookeeper="127.0.0.1:2181", chroot="/modeltui", state="connected", since=NOW,
        staleness_seconds=0.0, session="0x1", host_id="h-1a2b", host="h", registry="127.0.0.1:5000",
        hosts=[r.ClusterHost(id="h-1a2b", host="h", pid=1, socket="/run/s", capabilities=["process"],
                             started_at=NOW, this=True)],
        deployments=[r.RemoteDeployment(name="churn-prod", host_id="h-1a2b", host="h", model="m", version=2,
                                        ref="m@production", backend="process", state="running", health="healthy",
                                        endpoint="http://127.0.0.1:8080")],
        leaders={"jobs": "h-1a2b"}, last_sync=NOW, ignored_nodes=0,
    ),
    r.MaintainPolicyInfo(model="m", policy={"promote": "auto"}, overrides={"promote": "auto"}, champion=2,
                         problems=["no holdout data"]),
    r.MaintainRunList(items=[r.MaintainRunInfo(
        id=3, model="m", state="promoted", trigger="manual", started_at=NOW, finished_at=NOW, champion=2,
        challenger=3, metric="f1", champion_score=0.8, challenger_score=0.9, reason="better", log="/x/run.log",
        steps=[r.MaintainStep(name="gate", state="done", started_at=NOW, finished_at=NOW, message="better",
                              figures={"champion": 0.8})],
    )]),
    r.MaintainRunInfo(id=4, model="m", state="running", trigger="manual", started_at=NOW),
    r.MaintainPauseInfo(all_paused=False, model="m", model_paused=True),
    r.DoctorReport(checks=[r.DoctorCheck(name="disk", status="warn", detail="1.2 GiB free", fix="modeltui gc")]),
    r.AuditList(items=[r.AuditEntry(at=NOW, uid=1001, user="alice", pid=42, op="aliases.set",
                                    target="name=m alias=production", result="FORBIDDEN",
                                    message="needs the operator role", request={"name": "m", "version": 2})]),
    r.LogLines(deployment="churn-prod", lines=["a", "b"], truncated=True),
    r.DeploymentToken(name="churn-prod", exists=True, required=True, created_at=NOW, rotated_at=NOW,
                      token="tok-" + "x" * 40),
    r.DeploymentMetrics(
        deployment="churn-prod", window_seconds=900, start=NOW, end=NOW, up=True, last_scrape=NOW, scrape_error="",
        requests=120.0, request_rate=0.13, error_rate=0.01, client_error_rate=0.0, latency_p50_seconds=0.001,
        latency_p95_seconds=0.004, latency_p99_seconds=None, labelled=10.0, accuracy=0.9, precision=0.85,
        recall=0.8, f1=0.82, per_class={"1": r.ClassMetrics(precision=0.9, recall=0.8, f1=0.85, support=5.0)},
        drift={"x": r.FeatureDrift(psi=0.3, ks=0.2, count=100.0)}, step_seconds=60,
        points=[r.MetricsPoint(t=NOW, request_rate=0.1, p95_seconds=0.004, f1=None, drift_psi=0.3)],
    ),
    r.AlertRuleList(items=[r.AlertRuleInfo(
        deployment="churn-prod", name="low-f1", expr="f1 < 0.85 for 10m", metric="f1", feature=None, op="<",
        threshold=0.85, for_seconds=600, severity="warning", window_seconds=300, source="manifest",
    )]),
    r.AlertList(
        items=[r.AlertStateInfo(deployment="churn-prod", rule="low-f1", severity="warning", state="firing",
                                value=0.8, since=NOW, active_since=NOW, expr="f1 < 0.85 for 10m")],
        history=[r.AlertTransitionInfo(deployment="churn-prod", rule="low-f1", severity="warning", state="firing",
                                       value=0.8, at=NOW, message="churn-prod: low-f1 is firing")],
    ),
]

EVENTS: list[BaseModel] = [
    events.RegistryEvent(kind="version.pushed", model="m", version=3),
    events.ProgressEvent(request_id=7, done=5, total=10, path="model.skops"),
    events.DeploymentEvent(kind="changed", deployment="churn-prod", state="running", version=2),
    events.LogEvent(deployment="churn-prod", lines=["x"]),
    events.AlertEvent(deployment="churn-prod", rule="low-f1", severity="warning", state="firing", value=0.8,
                      message="churn-prod: low-f1 is firing", expr="f1 < 0.85 for 10m", at=NOW),
]
