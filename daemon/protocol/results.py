"""Results: what each request returns. Plain, frozen DTOs; database rows never cross the socket."""

from __future__ import annotations

from datetime import datetime
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from .alerts import AlertStateName, Severity, TransitionName
from .deploy import DeploymentEventInfo, DeploymentInfo


class Result(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Ack(Result):
    ok: bool = True


class Pong(Result):
    daemon_version: str
    pid: int


class DaemonStatus(Result):
    daemon_version: str
    protocol: int
    pid: int
    mode: Literal["user", "system"]
    uptime_seconds: float
    socket: str
    state_dir: str
    database: str
    models: int
    versions: int
    objects: int
    object_bytes: int
    clients: int
    exporter: str | None = Field(
        default=None, description="the Prometheus exporter's URL (None: disabled, or its port was taken)"
    )


class ModelSummary(Result):
    name: str
    description: str
    created_at: datetime
    updated_at: datetime
    versions: int
    latest: int | None
    aliases: dict[str, int]


class ModelList(Result):
    items: list[ModelSummary]
    total: int


class FileInfo(Result):
    path: str
    size: int
    sha256: str
    executable: bool = False


class SourceInfo(Result):
    git_commit: str | None = None
    git_dirty: bool = False
    path: str | None = None


class SignatureInfo(Result):
    """A signature of a version (``modeltui sign``, ``push --sign``) and what the daemon made of it."""

    status: Literal["verified", "not allowed"] = Field(
        description="verified: good, by a key the allowed-signers file names; not allowed: good, by another key"
    )
    principal: str | None = Field(description="the allowed signer the key belongs to (None when not allowed)")
    fingerprint: str
    key_type: str
    signed_by: str = Field(description="the user who sent the signature")
    signed_at: datetime
    checked_at: datetime = Field(description="when the daemon last checked it against the allowed-signers file")


class CodeInfo(Result):
    """Whether a version's manifest makes code run (docs/security.md, "Code-running manifests and pickle
    files"): the pickle scan of its model file and an admin's approval."""

    pickle_scan: str | None = Field(
        default=None,
        description='"ok (23 globals, all allowed)" or "refused: posix.system in model.pkl"; None: no pickle',
    )
    pickle_ok: bool | None = Field(default=None, description="the scan found only allowed globals (None: no pickle)")
    runs_code: list[str] = Field(
        default_factory=list, description='the manifest keys that make code run, e.g. flavor = "python"'
    )
    approved_by: str | None = Field(default=None, description="the admin who approved running its code")
    approved_at: datetime | None = None


class CodeApprovalInfo(Result):
    model: str
    version: int
    approved_by: str
    approved_at: datetime
    runs_code: list[str] = Field(default_factory=list, description="what the approval lets run")
    reason: str = ""


class VersionSummary(Result):
    model: str
    number: int
    digest: str
    parent: int | None
    flavor: str
    message: str
    tags: dict[str, str]
    created_by: str
    created_at: datetime
    size: int
    file_count: int
    aliases: list[str]


#: One version as a row: the fields of VersionSummary, in its field order.
VersionRow = tuple[str, int, str, int | None, str, str, dict[str, str], str, datetime, int, int, list[str]]
_SUMMARY_FIELDS = tuple(VersionSummary.model_fields)


class VersionList(Result):
    """A page of versions, sent as rows rather than objects: a thousand versions parse and validate about
    four times faster as arrays (the listing benchmark is bound by exactly that). Build it with
    ``items=[VersionSummary, …]``; read ``items`` back."""

    rows: list[VersionRow]
    total: int
    signed: dict[int, SignatureInfo] = Field(
        default_factory=dict, description="each signed version of the page: its best signature (verified first)"
    )

    @model_validator(mode="before")
    @classmethod
    def _items_to_rows(cls, data: Any) -> Any:
        if isinstance(data, dict) and "items" in data:
            data = dict(data)
            items = data.pop("items")
            data["rows"] = [
                tuple(getattr(v, f) for f in _SUMMARY_FIELDS) if isinstance(v, VersionSummary) else v for v in items
            ]
        return data

    @classmethod
    def of(cls, items: list[VersionSummary], total: int) -> VersionList:
        return cls.model_validate({"items": items, "total": total})

    @cached_property
    def items(self) -> list[VersionSummary]:
        """The rows as objects, made on first use (pydantic-core is ~4x faster at this than model_construct)."""
        return _SUMMARIES.validate_python([dict(zip(_SUMMARY_FIELDS, row, strict=True)) for row in self.rows])

    def json_items(self) -> dict[str, Any]:
        """The page as objects, for people and scripts (``modeltui log --json``)."""
        signed = {n: s.model_dump(mode="json") for n, s in self.signed.items()}
        items = [v.model_dump(mode="json") | {"signature": signed.get(v.number)} for v in self.items]
        return {"items": items, "total": self.total}


_SUMMARIES: TypeAdapter[list[VersionSummary]] = TypeAdapter(list[VersionSummary])


class SignResult(Result):
    version: VersionSummary
    signature: SignatureInfo


class VersionDetail(Result):
    version: VersionSummary
    description: str
    model_file: str
    manifest: str
    params: dict[str, Any]
    metrics: dict[str, float]
    signature: dict[str, Any]
    requirements: list[str]
    source: SourceInfo
    files: list[FileInfo]
    children: list[int]
    lineage: list[int] = Field(description="ancestors, nearest first")
    signatures: list[SignatureInfo] = Field(default_factory=list, description="verified first")
    code: CodeInfo | None = Field(default=None, description="the pickle scan and the code approval")


class PushResult(Result):
    version: VersionSummary
    created: bool
    bytes_copied: int = Field(
        default=0, description="bytes this request stored (0 for versions.push: they came with objects.upload)"
    )


class UploadedObject(Result):
    path: str
    sha256: str
    size: int
    copied: bool


class UploadResult(Result):
    items: list[UploadedObject]


class PutResult(Result):
    """Where an objects.put stands: ``stored`` once the daemon has the object (``copied``: by this upload)."""

    sha256: str
    size: int
    received: int
    stored: bool
    copied: bool = False


class CheckoutResult(Result):
    """A page of a version's files (sorted by path); one open read-only descriptor per file comes with
    the response, in this order."""

    version: VersionSummary
    files: list[FileInfo]
    offset: int = 0
    total_files: int


class FileChange(Result):
    path: str
    status: Literal["added", "removed", "changed"]
    size_a: int | None
    size_b: int | None
    sha256_a: str | None
    sha256_b: str | None


class ValueChange(Result):
    key: str
    a: Any
    b: Any


class MetricChange(Result):
    key: str
    a: float | None
    b: float | None
    delta: float | None


class VersionDiff(Result):
    a: VersionSummary
    b: VersionSummary
    files: list[FileChange]
    unchanged_files: int
    params: list[ValueChange]
    metrics: list[MetricChange]
    signature: list[ValueChange]
    requirements_added: list[str]
    requirements_removed: list[str]
    flavor: ValueChange | None


class AliasEventInfo(Result):
    model: str
    alias: str
    from_version: int | None
    to_version: int | None
    by: str
    at: datetime
    reason: str
    changed: bool = Field(
        default=True,
        description="false: `alias set` found the alias already there and moved nothing; the other fields are "
        "then its last move (who, when, why)",
    )


class AliasHistory(Result):
    model: str
    events: list[AliasEventInfo]
    at: datetime | None = None
    targets_at: dict[str, int] | None = Field(
        default=None, description="when `at` was asked: what each alias pointed to at that time"
    )


class ModelDetail(Result):
    model: ModelSummary


class RemoveResult(Result):
    model: str
    removed_versions: list[int]


class GcResult(Result):
    objects_removed: int
    bytes_removed: int
    staging_removed: int
    dry_run: bool
    images_removed: list[str] = Field(
        default_factory=list, description="Docker image tags no deployment uses, beyond [docker] keep_images"
    )
    image_bytes_removed: int = Field(default=0, description="disk space the removed images held alone")
    images_note: str = Field(default="", description="why images were not checked (the engine is away)")


class DeploymentDetail(Result):
    deployment: DeploymentInfo
    events: list[DeploymentEventInfo] = Field(default_factory=list)
    token: str | None = Field(
        default=None, description="the clients' bearer token, only in the answer to the deploy that made it"
    )


class DeploymentToken(Result):
    """A deployment's clients' token: whether it exists, whether the endpoint asks for it, and the token
    itself only when it was just made (``--rotate``) or asked for to be used (``modeltui predict``)."""

    name: str
    exists: bool
    required: bool = Field(description="the prediction and feedback routes need it ([serving] auth)")
    created_at: datetime | None = None
    rotated_at: datetime | None = None
    token: str | None = None
    tls_cert_pem: str | None = Field(
        default=None, description="the certificate the endpoint presents (https): clients trust exactly it"
    )


class RemoteDeployment(Result):
    """A deployment as its daemon registered it in the cluster (ZooKeeper)."""

    name: str
    host_id: str
    host: str
    model: str
    version: int | None
    ref: str
    backend: str
    state: str
    health: str
    endpoint: str


class DeploymentList(Result):
    items: list[DeploymentInfo]
    remote: list[RemoteDeployment] = Field(
        default_factory=list, description="with all_hosts: every daemon's deployments as registered in the cluster"
    )
    cluster_state: str | None = Field(default=None, description="with all_hosts: the ZooKeeper connection's state")
    staleness_seconds: float | None = Field(default=None, description="how old ``remote`` may be (0: live)")


class ClusterHost(Result):
    id: str
    host: str
    pid: int
    socket: str
    capabilities: list[str]
    started_at: datetime
    this: bool = Field(description="this daemon")


class ClusterStatus(Result):
    enabled: bool
    zookeeper: str = ""
    chroot: str = ""
    state: str = Field(
        default="disabled", description="connecting, connected, suspended, lost, refused (credential) or disabled"
    )
    problem: str = Field(default="", description="why ZooKeeper refuses this daemon (refused), naming the setting")
    since: datetime | None = None
    staleness_seconds: float = Field(default=0.0, description="how far this host's cache may be behind (0: live)")
    session: str | None = None
    host_id: str = ""
    host: str = ""
    registry: str = Field(default="", description="the OCI registry versions' files travel through")
    hosts: list[ClusterHost] = Field(default_factory=list)
    deployments: list[RemoteDeployment] = Field(default_factory=list)
    leaders: dict[str, str | None] = Field(default_factory=dict, description="job → the leading daemon's id")
    last_sync: datetime | None = Field(default=None, description="when the cache last matched the cluster whole")
    ignored_nodes: int = Field(default=0, description="nodes ignored as invalid (see the daemon's log)")


class LogLines(Result):
    deployment: str
    lines: list[str]
    truncated: bool = Field(default=False, description="older lines exist beyond the tail asked for")


class ClassMetrics(Result):
    precision: float
    recall: float
    f1: float
    support: float = Field(description="labelled predictions whose actual class is this one")


class FeatureDrift(Result):
    psi: float = Field(description="population stability index against the reference (> 0.2: shifted)")
    ks: float = Field(description="largest gap between the live and reference cumulative shares at the bin edges")
    count: float = Field(description="live observations of the feature in the window")
    state: Literal["ok", "shifted", "not_enough_data"] = Field(
        default="not_enough_data",
        description="shifted: PSI > 0.2; not_enough_data: fewer than min_count observations, too few for PSI or "
        "KS to mean anything (show that, not the figures' verdict)",
    )
    min_count: int = Field(default=0, description="observations in the window needed before a state is claimed")


class MetricsPoint(Result):
    t: datetime = Field(description="start of the step")
    request_rate: float
    p95_seconds: float | None
    f1: float | None
    drift_psi: float | None = Field(
        default=None, description="the largest PSI over the features with enough observations in the step"
    )


class DeploymentMetrics(Result):
    """Derived metrics of one deployment over a window ending now (see docs/monitoring.md)."""

    deployment: str
    window_seconds: int
    start: datetime
    end: datetime
    up: bool | None = Field(description="whether the last scrape succeeded (None: never scraped)")
    last_scrape: datetime | None
    scrape_error: str = ""
    requests: float
    request_rate: float = Field(description="model requests (/predict, /invocations) per second")
    error_rate: float | None = Field(description="share of model requests with status >= 500")
    client_error_rate: float | None = Field(description="share of model requests with status 4xx")
    latency_p50_seconds: float | None
    latency_p95_seconds: float | None
    latency_p99_seconds: float | None
    labelled: float = Field(description="predictions with feedback in the window")
    accuracy: float | None
    precision: float | None = Field(description="macro average over classes")
    recall: float | None
    f1: float | None
    per_class: dict[str, ClassMetrics] = Field(default_factory=dict)
    drift: dict[str, FeatureDrift] = Field(default_factory=dict)
    step_seconds: int
    points: list[MetricsPoint] = Field(default_factory=list)


class AlertRuleInfo(Result):
    """One alert rule as it applies to a deployment, and where it comes from."""

    deployment: str
    name: str
    expr: str = Field(description="canonical rule text, e.g. 'f1 < 0.85 for 10m'")
    metric: str
    feature: str | None = None
    op: str
    threshold: float
    for_seconds: int
    severity: Severity
    window_seconds: int
    source: Literal["deployment", "manifest", "builtin"]


class AlertRuleList(Result):
    items: list[AlertRuleInfo]


class AlertStateInfo(Result):
    """A rule whose condition holds: pending (for ``for`` to elapse) or firing. ``since`` is when it entered
    this state; ``active_since`` when the condition started to hold."""

    deployment: str
    rule: str
    severity: Severity
    state: AlertStateName
    value: float | None
    since: datetime
    active_since: datetime
    expr: str = ""


class AlertTransitionInfo(Result):
    deployment: str
    rule: str
    severity: Severity
    state: TransitionName
    value: float | None
    at: datetime
    message: str = ""


class AlertList(Result):
    items: list[AlertStateInfo]
    history: list[AlertTransitionInfo] = Field(default_factory=list, description="newest first")


class MaintainPolicyInfo(Result):
    model: str
    policy: dict[str, Any] = Field(description="the effective policy (manifest's [maintenance], then overrides)")
    overrides: dict[str, Any] = Field(default_factory=dict, description="what maintain set changed")
    champion: int | None = Field(default=None, description="the version the policy's alias points to")
    problems: list[str] = Field(default_factory=list, description="what would make a run fail, said now")


class MaintainStep(Result):
    name: str = Field(description="evaluate_champion, train, evaluate_challenger, gate, push, promote, rollout")
    state: Literal["running", "done", "failed", "skipped"]
    started_at: datetime
    finished_at: datetime | None = None
    message: str = ""
    figures: dict[str, float] = Field(default_factory=dict)


class MaintainRunInfo(Result):
    id: int
    model: str
    state: Literal["running", "awaiting_approval", "promoted", "rejected", "failed", "interrupted", "cancelled"]
    trigger: str = Field(description="manual, schedule, or alert:<name>")
    started_at: datetime
    finished_at: datetime | None = None
    champion: int | None = None
    challenger: int | None = Field(default=None, description="the pushed challenger's version")
    metric: str = ""
    champion_score: float | None = None
    challenger_score: float | None = None
    reason: str = Field(default="", description="the gate's verdict, the failure, or the operator's reason")
    steps: list[MaintainStep] = Field(default_factory=list)
    log: str = Field(default="", description="the run's log file (training and evaluation output)")


class MaintainRunList(Result):
    items: list[MaintainRunInfo]


class MaintainPauseInfo(Result):
    all_paused: bool = Field(description="the global switch: no model starts a run")
    model: str | None = None
    model_paused: bool | None = Field(default=None, description="with a model: its own pause")


class AuditEntry(Result):
    at: datetime
    uid: int
    user: str
    pid: int
    op: str
    target: str = Field(default="", description="what it was about: model, version, deployment, run")
    result: str = Field(description='"ok", or the error code (FORBIDDEN for a refusal)')
    message: str = ""
    request: dict[str, Any] = Field(default_factory=dict, description="the request's fields (long values cut)")


class AuditList(Result):
    items: list[AuditEntry] = Field(description="newest first")


class DoctorCheck(Result):
    name: str = Field(description="what was checked, e.g. database, disk, zookeeper")
    status: Literal["ok", "warn", "fail"]
    detail: str = ""
    fix: str = Field(default="", description="what to do about it (empty when ok)")


class DoctorReport(Result):
    checks: list[DoctorCheck]
