"""Deployment credentials in the registry's database: made with the deployment's row (one transaction), rotated
in one transaction (the admin token stays), gone with the deployment, given at start to a deployment made
before they existed, and kept by ``modeltuid backup`` / ``restore``."""

from __future__ import annotations

from pathlib import Path

from daemon.backup.backup import backup
from daemon.backup.restore import restore
from daemon.registry.service import Registry
from daemon.store.deployments import DeploymentRecord


def record(name: str, port: int = 18000) -> DeploymentRecord:
    return DeploymentRecord(
        name=name, model="m", ref="m:1", alias=None, version=1, backend="process", port=port, env={}, options={}
    )


def test_made_once_rotated_and_removed(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "state")
    try:
        made = reg.deployments.create(record("a"), "deploy")
        assert reg.credentials.get("a") == made  # stored with the row
        assert len(made.token) >= 43
        assert made.token != made.admin_token
        again, new = reg.credentials.ensure("a", with_token=True)
        assert (again, new) == (made, False)
        rotated = reg.credentials.rotate("a")
        assert rotated.token != made.token
        assert rotated.admin_token == made.admin_token
        assert rotated.rotated_at >= made.rotated_at
        assert reg.credentials.get("a") == rotated
        reg.deployments.delete("a")
        assert reg.credentials.get("a") is None
        # a deployment of the same name later gets new credentials
        fresh = reg.deployments.create(record("a"), "deploy")
        assert fresh.token
        assert fresh.token != rotated.token
        assert fresh.admin_token != made.admin_token
    finally:
        reg.close()


def test_backup_and_restore_keep_them(tmp_path: Path) -> None:
    state = tmp_path / "state"
    reg = Registry(state)
    try:
        made = reg.deployments.create(record("kept"), "deploy")
    finally:
        reg.close()
    backup(state, tmp_path / "bk", link=False)
    target = tmp_path / "restored"
    assert restore(tmp_path / "bk", target).report.ok
    reg = Registry(target)
    try:
        assert reg.credentials.get("kept") == made
    finally:
        reg.close()


def test_no_deployment_without_a_token(tmp_path: Path) -> None:
    """A crash can no longer leave a deployment row without its tokens (they are made in its transaction); a
    deployment made before tokens existed (no row of credentials, or an admin token only) gets both at the
    daemon's start, and one that has them keeps them."""
    reg = Registry(tmp_path / "state")
    try:
        kept = reg.deployments.create(record("has"), "deploy")
        reg.deployments.create(record("old", 18001), "deploy")
        reg.deployments.create(record("admin-only", 18002), "deploy")
        with reg.deployments._db.write() as conn:  # as an earlier version left them
            conn.execute(
                "DELETE FROM deployment_credentials "
                "WHERE deployment_id = (SELECT id FROM deployments WHERE name = 'old')"
            )
            conn.execute(
                "UPDATE deployment_credentials SET token = '' "
                "WHERE deployment_id = (SELECT id FROM deployments WHERE name = 'admin-only')"
            )
        admin = reg.credentials.get("admin-only")
        assert reg.credentials.get("old") is None
        assert reg.credentials.provide_missing() == ["admin-only", "old"]
        for name in ("old", "admin-only"):
            got = reg.credentials.get(name)
            assert got is not None, name
            assert len(got.token) >= 43, name
            assert len(got.admin_token) >= 43, name
        now = reg.credentials.get("admin-only")
        assert admin is not None
        assert now is not None
        assert now.admin_token == admin.admin_token
        assert reg.credentials.get("has") == kept
        assert reg.credentials.provide_missing() == []
    finally:
        reg.close()
