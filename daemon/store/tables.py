"""SQLModel tables. The schema itself is owned by :mod:`daemon.store.migrations`; a test checks they agree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes. SQLite stores naive text, so convert on the way in and tag on the way out."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _ts() -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class ModelRow(SQLModel, table=True):
    __tablename__ = "models"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, nullable=False)
    description: str = ""
    #: The next version number: numbers are never reused, even after ``rm``.
    next_number: int = 1
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class VersionRow(SQLModel, table=True):
    __tablename__ = "versions"
    __table_args__ = (
        UniqueConstraint("model_id", "number", name="uq_versions_model_number"),
        Index("ix_versions_model_digest", "model_id", "digest"),
        Index("ix_versions_model_parent", "model_id", "parent"),
    )

    id: int | None = Field(default=None, primary_key=True)
    model_id: int = Field(foreign_key="models.id", ondelete="CASCADE", nullable=False)
    number: int
    digest: str
    parent: int | None = None
    flavor: str
    message: str = ""
    tags: dict[str, str] = Field(default_factory=dict, sa_type=JSON)
    params: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    metrics: dict[str, float] = Field(default_factory=dict, sa_type=JSON)
    signature: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    requirements: list[str] = Field(default_factory=list, sa_type=JSON)
    description: str = ""
    model_file: str
    manifest: str
    source: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_by: str
    created_at: datetime = _ts()
    size: int = 0
    file_count: int = 0


class FileRow(SQLModel, table=True):
    __tablename__ = "files"
    __table_args__ = (
        UniqueConstraint("version_id", "path", name="uq_files_version_path"),
        Index("ix_files_sha256", "sha256"),
    )

    id: int | None = Field(default=None, primary_key=True)
    version_id: int = Field(foreign_key="versions.id", ondelete="CASCADE", nullable=False)
    path: str
    size: int
    sha256: str
    executable: bool = False


class AliasRow(SQLModel, table=True):
    __tablename__ = "aliases"
    __table_args__ = (UniqueConstraint("model_id", "name", name="uq_aliases_model_name"),)

    id: int | None = Field(default=None, primary_key=True)
    model_id: int = Field(foreign_key="models.id", ondelete="CASCADE", nullable=False)
    name: str
    version: int


class AliasEventRow(SQLModel, table=True):
    __tablename__ = "alias_events"
    __table_args__ = (Index("ix_alias_events_model_alias_at", "model_id", "alias", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    model_id: int = Field(foreign_key="models.id", ondelete="CASCADE", nullable=False)
    alias: str
    from_version: int | None = None
    to_version: int | None = None
    by: str
    at: datetime = _ts()
    reason: str = ""


class VersionSignatureRow(SQLModel, table=True):
    """A signature of a version (``daemon/registry/signing.py``): one per version and key."""

    __tablename__ = "version_signatures"
    __table_args__ = (UniqueConstraint("version_id", "fingerprint", name="uq_version_signatures_version_key"),)

    id: int | None = Field(default=None, primary_key=True)
    version_id: int = Field(foreign_key="versions.id", ondelete="CASCADE", nullable=False)
    fingerprint: str
    key_type: str
    signature: str
    status: str
    principal: str | None = None
    signed_by: str
    signed_at: datetime = _ts()
    checked_at: datetime = _ts()


class VersionCodeRow(SQLModel, table=True):
    """A version's pickle scan and code approval (``daemon/registry/codepolicy.py``); gone with the version."""

    __tablename__ = "version_code"

    version_id: int = Field(foreign_key="versions.id", ondelete="CASCADE", primary_key=True)
    scan: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    scanned_at: float | None = None
    approved_by: str | None = None
    approved_at: float | None = None
    approval_reason: str | None = None


class StatCacheRow(SQLModel, table=True):
    """(device, inode, size, mtime, ctime) of a file already ingested → its sha256: skip re-reading it."""

    __tablename__ = "stat_cache"
    __table_args__ = (
        UniqueConstraint("dev", "ino", name="uq_stat_cache_dev_ino"),
        Index("ix_stat_cache_sha256", "sha256"),
    )

    id: int | None = Field(default=None, primary_key=True)
    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int
    sha256: str
    seen_at: datetime = _ts()


class BlobRow(SQLModel, table=True):
    """A small object stored inline (see ``objects.INLINE_MAX``); a file object of the same digest wins."""

    __tablename__ = "blobs"

    sha256: str = Field(primary_key=True)
    size: int
    created_at: datetime = _ts()
    data: bytes


class DeploymentRow(SQLModel, table=True):
    """A deployment: what should run (``desired``, ``ref``) and what runs (``version``, ``instance``)."""

    __tablename__ = "deployments"
    __table_args__ = (Index("ix_deployments_model", "model"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, nullable=False)
    model: str
    ref: str
    alias: str | None = None
    version: int | None = None
    backend: str
    port: int
    env: dict[str, str] = Field(default_factory=dict, sa_type=JSON, nullable=False)
    options: dict[str, Any] = Field(default_factory=dict, sa_type=JSON, nullable=False)
    desired: str
    state: str
    health: str
    restarts: int = 0
    message: str = ""
    instance: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    image: str | None = None
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class DeploymentCredentialRow(SQLModel, table=True):
    """A deployment's bearer tokens (``daemon/store/credentials.py``); deleted with the deployment."""

    __tablename__ = "deployment_credentials"

    deployment_id: int = Field(foreign_key="deployments.id", ondelete="CASCADE", primary_key=True)
    token: str
    admin_token: str
    created_at: float
    rotated_at: float


class DeploymentEventRow(SQLModel, table=True):
    __tablename__ = "deployment_events"
    __table_args__ = (Index("ix_deployment_events_deployment_id", "deployment_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    deployment_id: int = Field(foreign_key="deployments.id", ondelete="CASCADE", nullable=False)
    at: datetime = _ts()
    kind: str
    version: int | None = None
    message: str = ""


class MonitorSeriesRow(SQLModel, table=True):
    """One scraped series: a deployment's metric with its labels (JSON, sorted keys)."""

    __tablename__ = "monitor_series"
    __table_args__ = (UniqueConstraint("deployment", "metric", "labels", name="uq_monitor_series"),)

    id: int | None = Field(default=None, primary_key=True)
    deployment: str
    metric: str
    labels: dict[str, str] = Field(default_factory=dict, sa_type=JSON, nullable=False)


class MonitorBlockRow(SQLModel, table=True):
    """Compressed samples of one deployment (``daemon/store/blocks.py``): ``kind`` 0 a frame (one cycle),
    1 a chunk (keyframe + samples in ``(t0, t1]``), 2 an hour's counter increases from ``t0``."""

    __tablename__ = "monitor_blocks"
    __table_args__ = (Index("ix_monitor_blocks", "deployment", "kind", "t0", "t1", unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    deployment: str
    kind: int
    t0: float
    t1: float
    n: int
    data: bytes


class MonitorProgressRow(SQLModel, table=True):
    """How far a periodic job got (``hourly``: the end of the last hour rolled up)."""

    __tablename__ = "monitor_progress"

    name: str = Field(primary_key=True)
    t: float


class ClusterSyncRow(SQLModel, table=True):
    """The last entry of a model's shared alias history (ZooKeeper sequence) applied to this cache."""

    __tablename__ = "cluster_sync"

    model: str = Field(primary_key=True)
    history_seq: int


class MaintainPolicyRow(SQLModel, table=True):
    """A model's maintenance policy overrides (``maintain set``), over its manifest's ``[maintenance]``."""

    __tablename__ = "maintain_policies"

    model: str = Field(primary_key=True)
    overrides: dict[str, Any] = Field(default_factory=dict, sa_type=JSON, nullable=False)
    updated_at: float
    updated_by: str


class MaintainRunRow(SQLModel, table=True):
    """One maintenance run; ``record`` holds its steps, figures and outcome (``daemon/maintain/``)."""

    __tablename__ = "maintain_runs"
    __table_args__ = (Index("ix_maintain_runs_model", "model", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    model: str
    state: str
    trigger: str
    started_at: float
    finished_at: float | None = None
    record: dict[str, Any] = Field(default_factory=dict, sa_type=JSON, nullable=False)


class FeedbackRowRow(SQLModel, table=True):
    """A labelled row pulled from a runtime (``daemon/maintain/feedback.py``): the inputs by column name and
    the label, both JSON text."""

    __tablename__ = "feedback_rows"
    __table_args__ = (Index("ix_feedback_rows_model", "model", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    model: str
    deployment: str
    version: int
    at: float
    inputs: str
    label: str


class FeedbackCursorRow(SQLModel, table=True):
    """How far a deployment's runtime (``instance``: its process) has been read."""

    __tablename__ = "feedback_cursors"

    deployment: str = Field(primary_key=True)
    instance: str
    seq: int


class AuditRow(SQLModel, table=True):
    """One audited request (``daemon/audit.py``): who, what, when, and how it ended."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    at: float
    uid: int
    user: str
    pid: int
    op: str
    target: str
    result: str
    message: str
    request: str


class MonitorTargetRow(SQLModel, table=True):
    """The last scrape of a deployment: which instance, whether it answered, when, and why not."""

    __tablename__ = "monitor_targets"

    deployment: str = Field(primary_key=True)
    instance: str | None = None
    started_at: float | None = None
    up: bool
    last_scrape: float
    last_success: float | None = None
    error: str = ""
    duration: float = 0.0


class AlertRuleRow(SQLModel, table=True):
    """A deployment's own alert rule (``expr`` is the canonical rule text); ``created_at`` in epoch s."""

    __tablename__ = "alert_rules"

    deployment: str = Field(primary_key=True)
    name: str = Field(primary_key=True)
    expr: str
    severity: str
    window_seconds: int
    created_at: float


class AlertStateRow(SQLModel, table=True):
    """A rule whose condition holds (pending or firing); rules that do not hold have no row."""

    __tablename__ = "alert_states"

    deployment: str = Field(primary_key=True)
    rule: str = Field(primary_key=True)
    severity: str
    expr: str
    state: str
    value: float | None = None
    active_since: float
    since: float


class AlertHistoryRow(SQLModel, table=True):
    """One transition of an alert (pending, firing, resolved, inactive) at ``t`` (epoch s)."""

    __tablename__ = "alert_history"
    __table_args__ = (Index("ix_alert_history_t", "t"),)

    id: int | None = Field(default=None, primary_key=True)
    deployment: str
    rule: str
    severity: str
    state: str
    value: float | None = None
    t: float
    message: str
