"""Deployment credentials in the registry's database: made once, rotated in one transaction (the admin token
stays), gone with the deployment, and kept by ``modeltuid backup`` / ``restore``."""

from __future__ import annotations

from pathlib import Path

from daemon.backup.backup import backup
from daemon.backup.restore import restore
from daemon.registry.service import Registry
from daemon.store.deployments import DeploymentRecord


def record(name: str) -> DeploymentRecord:
    return DeploymentRecord(
        name=name, model="m", ref="m:1", alias=None, version=1, backend="process", port=18000, env={}, options={}
    )


def test_made_once_rotated_and_removed(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "state")
    try:
        reg.deployments.create(record("a"), "deploy")
        made, new = reg.credentials.ensure("a", with_token=True)
        assert new
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
        reg.deployments.create(record("a"), "deploy")
        fresh, _ = reg.credentials.ensure("a", with_token=False)
        assert fresh.token == ""  # an older deployment: no clients' token until rotation
        assert fresh.admin_token != made.admin_token
    finally:
        reg.close()


def test_backup_and_restore_keep_them(tmp_path: Path) -> None:
    state = tmp_path / "state"
    reg = Registry(state)
    try:
        reg.deployments.create(record("kept"), "deploy")
        made, _ = reg.credentials.ensure("kept", with_token=True)
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
