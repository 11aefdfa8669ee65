"""Schema versions, tracked in ``PRAGMA user_version``.

The migrations are the source of truth for the on-disk schema (``tables.py`` is the ORM mapping; a test
checks both agree). Each migration runs in one ``BEGIN IMMEDIATE`` transaction together with the version
bump (SQLite DDL is transactional), so a crash mid-migration leaves the previous version intact. Never edit a
released migration: append a new one.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, Engine

from daemon.protocol.errors import ErrorCode, ProtocolError

from .engine import immediate_connection

V1_SCHEMA = """
CREATE TABLE models (
    id INTEGER NOT NULL PRIMARY KEY,
    name VARCHAR NOT NULL UNIQUE,
    description VARCHAR NOT NULL,
    next_number INTEGER NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL
);
CREATE TABLE versions (
    id INTEGER NOT NULL PRIMARY KEY,
    model_id INTEGER NOT NULL REFERENCES models (id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    digest VARCHAR NOT NULL,
    parent INTEGER,
    flavor VARCHAR NOT NULL,
    message VARCHAR NOT NULL,
    tags JSON NOT NULL,
    params JSON NOT NULL,
    metrics JSON NOT NULL,
    signature JSON NOT NULL,
    requirements JSON NOT NULL,
    description VARCHAR NOT NULL,
    model_file VARCHAR NOT NULL,
    manifest VARCHAR NOT NULL,
    source JSON NOT NULL,
    created_by VARCHAR NOT NULL,
    created_at DATETIME NOT NULL,
    size INTEGER NOT NULL,
    file_count INTEGER NOT NULL,
    CONSTRAINT uq_versions_model_number UNIQUE (model_id, number)
);
CREATE INDEX ix_versions_model_digest ON versions (model_id, digest);
CREATE TABLE files (
    id INTEGER NOT NULL PRIMARY KEY,
    version_id INTEGER NOT NULL REFERENCES versions (id) ON DELETE CASCADE,
    path VARCHAR NOT NULL,
    size INTEGER NOT NULL,
    sha256 VARCHAR NOT NULL,
    executable BOOLEAN NOT NULL,
    CONSTRAINT uq_files_version_path UNIQUE (version_id, path)
);
CREATE INDEX ix_files_sha256 ON files (sha256);
CREATE TABLE aliases (
    id INTEGER NOT NULL PRIMARY KEY,
    model_id INTEGER NOT NULL REFERENCES models (id) ON DELETE CASCADE,
    name VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    CONSTRAINT uq_aliases_model_name UNIQUE (model_id, name)
);
CREATE TABLE alias_events (
    id INTEGER NOT NULL PRIMARY KEY,
    model_id INTEGER NOT NULL REFERENCES models (id) ON DELETE CASCADE,
    alias VARCHAR NOT NULL,
    from_version INTEGER,
    to_version INTEGER,
    "by" VARCHAR NOT NULL,
    at DATETIME NOT NULL,
    reason VARCHAR NOT NULL
);
CREATE INDEX ix_alias_events_model_alias_at ON alias_events (model_id, alias, at);
CREATE TABLE stat_cache (
    id INTEGER NOT NULL PRIMARY KEY,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    sha256 VARCHAR NOT NULL,
    seen_at DATETIME NOT NULL,
    CONSTRAINT uq_stat_cache_dev_ino UNIQUE (dev, ino)
);
CREATE INDEX ix_stat_cache_sha256 ON stat_cache (sha256);
"""


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def v1_initial_schema(conn: Connection) -> None:
    for statement in _statements(V1_SCHEMA):
        conn.exec_driver_sql(statement)


def v2_index_children(conn: Connection) -> None:
    """``show`` finds a version's children by parent: an index keeps that independent of the model's size."""
    conn.exec_driver_sql("CREATE INDEX ix_versions_model_parent ON versions (model_id, parent)")


def v3_inline_blobs(conn: Connection) -> None:
    """Objects of at most ``INLINE_MAX`` bytes live here instead of under ``objects/``: a push then costs one
    fsynced commit instead of a file create, fsync, rename and directory fsync per new object. ``data`` is the
    last column so scans of the other columns (GC) never read a blob's overflow pages."""
    conn.exec_driver_sql(
        "CREATE TABLE blobs (sha256 VARCHAR NOT NULL PRIMARY KEY, size INTEGER NOT NULL, "
        "created_at DATETIME NOT NULL, data BLOB NOT NULL)"
    )


V4_DEPLOYMENTS = """
CREATE TABLE deployments (
    id INTEGER NOT NULL PRIMARY KEY,
    name VARCHAR NOT NULL UNIQUE,
    model VARCHAR NOT NULL,
    ref VARCHAR NOT NULL,
    alias VARCHAR,
    version INTEGER,
    backend VARCHAR NOT NULL,
    port INTEGER NOT NULL,
    env JSON NOT NULL,
    options JSON NOT NULL,
    desired VARCHAR NOT NULL,
    state VARCHAR NOT NULL,
    health VARCHAR NOT NULL,
    restarts INTEGER NOT NULL,
    message VARCHAR NOT NULL,
    instance JSON,
    image VARCHAR,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL,
    started_at DATETIME
);
CREATE INDEX ix_deployments_model ON deployments (model);
CREATE TABLE deployment_events (
    id INTEGER NOT NULL PRIMARY KEY,
    deployment_id INTEGER NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    at DATETIME NOT NULL,
    kind VARCHAR NOT NULL,
    version INTEGER,
    message VARCHAR NOT NULL
);
CREATE INDEX ix_deployment_events_deployment_id ON deployment_events (deployment_id, id);
"""


def v4_deployments(conn: Connection) -> None:
    """Deployments (what should run, what runs: the instance's pid or container id) and their event log."""
    for statement in _statements(V4_DEPLOYMENTS):
        conn.exec_driver_sql(statement)


V5_MONITOR = """
CREATE TABLE monitor_series (
    id INTEGER NOT NULL PRIMARY KEY,
    deployment VARCHAR NOT NULL,
    metric VARCHAR NOT NULL,
    labels JSON NOT NULL,
    CONSTRAINT uq_monitor_series UNIQUE (deployment, metric, labels)
);
CREATE TABLE monitor_samples (
    series_id INTEGER NOT NULL REFERENCES monitor_series (id) ON DELETE CASCADE,
    t FLOAT NOT NULL,
    value FLOAT NOT NULL,
    PRIMARY KEY (series_id, t)
) WITHOUT ROWID;
CREATE TABLE monitor_rollups (
    series_id INTEGER NOT NULL REFERENCES monitor_series (id) ON DELETE CASCADE,
    resolution INTEGER NOT NULL,
    t FLOAT NOT NULL,
    value FLOAT NOT NULL,
    PRIMARY KEY (series_id, resolution, t)
) WITHOUT ROWID;
CREATE TABLE monitor_targets (
    deployment VARCHAR NOT NULL PRIMARY KEY,
    instance VARCHAR,
    started_at FLOAT,
    up BOOLEAN NOT NULL,
    last_scrape FLOAT NOT NULL,
    last_success FLOAT,
    error VARCHAR NOT NULL,
    duration FLOAT NOT NULL
);
"""


def v5_monitor(conn: Connection) -> None:
    """Monitoring: series (deployment, metric, labels), their raw samples and rollups (clustered by series
    and time: ``WITHOUT ROWID``), and the last scrape of each target."""
    for statement in _statements(V5_MONITOR):
        conn.exec_driver_sql(statement)


V6_ALERTS = """
CREATE TABLE alert_rules (
    deployment VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    expr VARCHAR NOT NULL,
    severity VARCHAR NOT NULL,
    window_seconds INTEGER NOT NULL,
    created_at FLOAT NOT NULL,
    PRIMARY KEY (deployment, name)
);
CREATE TABLE alert_states (
    deployment VARCHAR NOT NULL,
    rule VARCHAR NOT NULL,
    severity VARCHAR NOT NULL,
    expr VARCHAR NOT NULL,
    state VARCHAR NOT NULL,
    value FLOAT,
    active_since FLOAT NOT NULL,
    since FLOAT NOT NULL,
    PRIMARY KEY (deployment, rule)
);
CREATE TABLE alert_history (
    id INTEGER NOT NULL PRIMARY KEY,
    deployment VARCHAR NOT NULL,
    rule VARCHAR NOT NULL,
    severity VARCHAR NOT NULL,
    state VARCHAR NOT NULL,
    value FLOAT,
    t FLOAT NOT NULL,
    message VARCHAR NOT NULL
);
CREATE INDEX ix_alert_history_t ON alert_history (t);
"""


def v6_alerts(conn: Connection) -> None:
    """Alerts: each deployment's own rules, the rules currently pending or firing, and the transitions."""
    for statement in _statements(V6_ALERTS):
        conn.exec_driver_sql(statement)


V7_BLOCKS = """
CREATE TABLE monitor_blocks (
    id INTEGER NOT NULL PRIMARY KEY,
    deployment VARCHAR NOT NULL,
    kind INTEGER NOT NULL,
    t0 FLOAT NOT NULL,
    t1 FLOAT NOT NULL,
    n INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE UNIQUE INDEX ix_monitor_blocks ON monitor_blocks (deployment, kind, t0, t1);
CREATE TABLE monitor_progress (
    name VARCHAR NOT NULL PRIMARY KEY,
    t FLOAT NOT NULL
);
"""


def v7_monitor_blocks(conn: Connection) -> None:
    """Monitoring samples in compressed blocks (frames, chunks with keyframes, hourly rollups; see
    ``daemon/monitor/store.py``) instead of a row per sample. v5's samples become one chunk per deployment and
    its 1-hour rollups hourly blocks; its 1-minute rollups are dropped (nothing reads them any more)."""
    import numpy as np

    from . import blocks

    for statement in _statements(V7_BLOCKS):
        conn.exec_driver_sql(statement)
    deployments = [d for (d,) in conn.exec_driver_sql("SELECT DISTINCT deployment FROM monitor_series").fetchall()]
    for name in deployments:
        rows = conn.exec_driver_sql(
            "SELECT m.series_id, m.t, m.value FROM monitor_samples m JOIN monitor_series s ON s.id = m.series_id "
            "WHERE s.deployment = ? ORDER BY m.series_id, m.t",
            (name,),
        ).fetchall()
        if rows:
            sid, t, value = (np.asarray(c) for c in zip(*rows, strict=True))
            chunk = blocks.Samples(sid.astype(np.int64), t.astype(np.float64), value.astype(np.float64))
            conn.exec_driver_sql(
                "INSERT INTO monitor_blocks (deployment, kind, t0, t1, n, data) VALUES (?, 1, ?, ?, ?, ?)",
                (name, float(t.min()) - 1e-6, float(t.max()), len(rows), blocks.encode_chunk(chunk)),
            )
        hours: dict[float, list[tuple[int, float]]] = {}
        for series_id, hour, value in conn.exec_driver_sql(
            "SELECT r.series_id, r.t, r.value FROM monitor_rollups r JOIN monitor_series s ON s.id = r.series_id "
            "WHERE s.deployment = ? AND r.resolution = 3600 ORDER BY r.series_id",
            (name,),
        ).fetchall():
            hours.setdefault(float(hour), []).append((int(series_id), float(value)))
        for hour, pairs in hours.items():
            ids = np.asarray([p[0] for p in pairs], np.int64)
            block = blocks.Samples(ids, np.full(ids.size, hour), np.asarray([p[1] for p in pairs], np.float64))
            conn.exec_driver_sql(
                "INSERT INTO monitor_blocks (deployment, kind, t0, t1, n, data) VALUES (?, 2, ?, ?, ?, ?)",
                (name, hour, hour + 3600, ids.size, blocks.encode_chunk(block)),
            )
    last_hour = conn.exec_driver_sql("SELECT max(t) FROM monitor_rollups WHERE resolution = 3600").scalar()
    if last_hour is not None:
        conn.exec_driver_sql("INSERT INTO monitor_progress (name, t) VALUES ('hourly', ?)", (last_hour + 3600,))
    conn.exec_driver_sql("DROP TABLE monitor_samples")
    conn.exec_driver_sql("DROP TABLE monitor_rollups")


def v8_cluster_sync(conn: Connection) -> None:
    """How far each model's shared alias history (ZooKeeper) has been applied to this host's cache."""
    conn.exec_driver_sql(
        "CREATE TABLE cluster_sync (model VARCHAR NOT NULL PRIMARY KEY, history_seq INTEGER NOT NULL)"
    )


V9_MAINTENANCE = """
CREATE TABLE maintain_policies (
    model VARCHAR NOT NULL PRIMARY KEY,
    overrides JSON NOT NULL,
    updated_at FLOAT NOT NULL,
    updated_by VARCHAR NOT NULL
);
CREATE TABLE maintain_runs (
    id INTEGER NOT NULL PRIMARY KEY,
    model VARCHAR NOT NULL,
    state VARCHAR NOT NULL,
    trigger VARCHAR NOT NULL,
    started_at FLOAT NOT NULL,
    finished_at FLOAT,
    record JSON NOT NULL
);
CREATE INDEX ix_maintain_runs_model ON maintain_runs (model, id);
"""


def v9_maintenance(conn: Connection) -> None:
    """Maintenance: per-model policy overrides (``maintain set``) and runs, each with its steps as JSON."""
    for statement in _statements(V9_MAINTENANCE):
        conn.exec_driver_sql(statement)


V10_FEEDBACK = """
CREATE TABLE feedback_rows (
    id INTEGER NOT NULL PRIMARY KEY,
    model VARCHAR NOT NULL,
    deployment VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    at FLOAT NOT NULL,
    inputs VARCHAR NOT NULL,
    label VARCHAR NOT NULL
);
CREATE INDEX ix_feedback_rows_model ON feedback_rows (model, id);
CREATE TABLE feedback_cursors (
    deployment VARCHAR NOT NULL PRIMARY KEY,
    instance VARCHAR NOT NULL,
    seq INTEGER NOT NULL
);
"""


def v10_feedback(conn: Connection) -> None:
    """Labelled feedback rows pulled from the runtimes (maintenance trains on them), and how far each
    deployment's runtime has been read. The JSON columns are VARCHAR (text affinity): a JSON label ``1`` in
    a column of NUMERIC affinity (what a JSON declared type gets) would come back as an integer."""
    for statement in _statements(V10_FEEDBACK):
        conn.exec_driver_sql(statement)


V11_AUDIT = """
CREATE TABLE audit_log (
    id INTEGER NOT NULL PRIMARY KEY,
    at FLOAT NOT NULL,
    uid INTEGER NOT NULL,
    user VARCHAR NOT NULL,
    pid INTEGER NOT NULL,
    op VARCHAR NOT NULL,
    target VARCHAR NOT NULL,
    result VARCHAR NOT NULL,
    message VARCHAR NOT NULL,
    request VARCHAR NOT NULL
);
CREATE INDEX ix_audit_log_at ON audit_log (at);
"""


def v11_audit(conn: Connection) -> None:
    """The audit trail: every change asked of the daemon and every refusal, with who asked."""
    for statement in _statements(V11_AUDIT):
        conn.exec_driver_sql(statement)


V12_SIGNATURES = """
CREATE TABLE version_signatures (
    id INTEGER NOT NULL PRIMARY KEY,
    version_id INTEGER NOT NULL REFERENCES versions (id) ON DELETE CASCADE,
    fingerprint VARCHAR NOT NULL,
    key_type VARCHAR NOT NULL,
    signature VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    principal VARCHAR,
    signed_by VARCHAR NOT NULL,
    signed_at DATETIME NOT NULL,
    checked_at DATETIME NOT NULL,
    CONSTRAINT uq_version_signatures_version_key UNIQUE (version_id, fingerprint)
);
"""


def v12_version_signatures(conn: Connection) -> None:
    """Signatures of versions (``modeltui sign``): one per version and key, with the last verification."""
    for statement in _statements(V12_SIGNATURES):
        conn.exec_driver_sql(statement)


V13_DEPLOYMENT_CREDENTIALS = """
CREATE TABLE deployment_credentials (
    deployment_id INTEGER NOT NULL PRIMARY KEY REFERENCES deployments (id) ON DELETE CASCADE,
    token VARCHAR NOT NULL,
    admin_token VARCHAR NOT NULL,
    created_at FLOAT NOT NULL,
    rotated_at FLOAT NOT NULL
);
"""


def v13_deployment_credentials(conn: Connection) -> None:
    """Each deployment's bearer tokens (docs/security.md, "Endpoint authentication"): the clients' token
    (shown once; ``""`` until one is made) and the admin token only the daemon uses; gone with the deployment."""
    for statement in _statements(V13_DEPLOYMENT_CREDENTIALS):
        conn.exec_driver_sql(statement)


V14_VERSION_CODE = """
CREATE TABLE version_code (
    version_id INTEGER NOT NULL PRIMARY KEY REFERENCES versions (id) ON DELETE CASCADE,
    scan JSON,
    scanned_at FLOAT,
    approved_by VARCHAR,
    approved_at FLOAT,
    approval_reason VARCHAR
);
"""


def v14_version_code(conn: Connection) -> None:
    """What a version's model file would import when unpickled (the pickle scan, ``scan`` NULL when it is no
    pickle) and an admin's approval to run its code (docs/security.md); gone with the version."""
    for statement in _statements(V14_VERSION_CODE):
        conn.exec_driver_sql(statement)


Migration = Callable[[Connection], None]

#: Migration ``i`` (0-based) brings the schema from version ``i`` to ``i + 1``.
MIGRATIONS: list[Migration] = [
    v1_initial_schema,
    v2_index_children,
    v3_inline_blobs,
    v4_deployments,
    v5_monitor,
    v6_alerts,
    v7_monitor_blocks,
    v8_cluster_sync,
    v9_maintenance,
    v10_feedback,
    v11_audit,
    v12_version_signatures,
    v13_deployment_credentials,
    v14_version_code,
]


def schema_version(conn: Connection) -> int:
    value = conn.exec_driver_sql("PRAGMA user_version").scalar()
    return int(value or 0)


def migrate(engine: Engine, *, target: int | None = None) -> int:
    """Bring the database up to ``target`` (default: the latest); returns the resulting version.

    A database newer than this code is refused rather than guessed at.
    """
    latest = len(MIGRATIONS)
    target = latest if target is None else target
    with immediate_connection(engine) as conn, conn.begin():
        current = schema_version(conn)
        if current > latest:
            raise ProtocolError(
                ErrorCode.UNAVAILABLE,
                f"the registry database has schema version {current}, newer than this daemon "
                f"supports ({latest}); upgrade modeltui",
            )
        for index in range(current, target):
            MIGRATIONS[index](conn)
            # PRAGMA takes no bound parameters; index is an int we computed.
            conn.exec_driver_sql(f"PRAGMA user_version = {index + 1}")
        return max(current, target)
