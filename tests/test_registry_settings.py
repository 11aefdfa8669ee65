"""``[registry]`` settings (issue 15, item 5): plain HTTP to a registry that is not on loopback is refused at
start unless ``allow_plain_http`` says so, credentials never in clear, and the password file must be the daemon
user's own (like ssh's keys). Unit tests: no traffic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.settings import ConfigError, Settings, is_loopback_host, load_settings


def settings(tmp_path: Path, toml: str, **env: str) -> Settings:
    config = tmp_path / "daemon.toml"
    config.write_text(toml)
    return load_settings(config, environ={"MODELTUI_STATE_DIR": str(tmp_path / "state"), **env})


def password_file(tmp_path: Path, mode: int = 0o600, text: str = "pw-123\n") -> Path:
    p = tmp_path / "registry-password"
    p.write_text(text)
    p.chmod(mode)
    return p


@pytest.mark.parametrize(
    "address", ["127.0.0.1:5000", "localhost:5000", "LocalHost", "[::1]:5000", "[::1]", "127.3.4.5", "::1"]
)
def test_loopback_hosts(address: str) -> None:
    assert is_loopback_host(address)


@pytest.mark.parametrize("address", ["10.0.0.5:5000", "registry.example:443", "[2001:db8::1]:5000", "0.0.0.0:1"])
def test_other_hosts(address: str) -> None:
    assert not is_loopback_host(address)


def test_the_default_loopback_registry_stays_plain_http(tmp_path: Path) -> None:
    s = settings(tmp_path, "")
    a = s.registry_access(s.docker.registry)
    assert (a.address, a.tls, a.credentials) == ("127.0.0.1:5000", False, None)


def test_a_remote_registry_uses_tls_by_default(tmp_path: Path) -> None:
    s = settings(tmp_path, '[docker]\nregistry = "registry.example:5000"\n')
    assert s.registry_access("registry.example:5000").tls


def test_plain_http_to_a_remote_registry_is_refused_naming_the_setting(tmp_path: Path) -> None:
    toml = '[docker]\nregistry = "10.0.0.5:5000"\n[registry]\ntls = false\n'
    with pytest.raises(ConfigError, match=r"\[docker\] registry = '10\.0\.0\.5:5000'.*allow_plain_http = true"):
        settings(tmp_path, toml)
    allowed = settings(tmp_path, toml + "allow_plain_http = true\n")
    assert not allowed.registry_access("10.0.0.5:5000").tls


def test_the_cluster_registry_is_checked_too(tmp_path: Path) -> None:
    toml = '[cluster]\nzookeeper = "127.0.0.1:2181"\nregistry = "10.0.0.6:5000"\n[registry]\ntls = false\n'
    with pytest.raises(ConfigError, match=r"\[cluster\] registry = '10\.0\.0\.6:5000'.*allow_plain_http"):
        settings(tmp_path, toml, MODELTUI_ZK_CREDENTIALS="u:p")  # ZooKeeper's credential, when digest auth is on


def test_allow_plain_http_alone_means_plain_http_but_never_with_credentials(tmp_path: Path) -> None:
    toml = '[docker]\nregistry = "10.0.0.5:5000"\n[registry]\nallow_plain_http = true\n'
    assert not settings(tmp_path, toml).registry_access("10.0.0.5:5000").tls
    with_creds = toml + f'username = "u"\npassword_file = "{password_file(tmp_path)}"\n'
    with pytest.raises(ConfigError, match="credentials in clear"):
        settings(tmp_path, with_creds)


def test_credentials_from_a_private_file(tmp_path: Path) -> None:
    pw = password_file(tmp_path)
    s = settings(tmp_path, f'[registry]\nusername = "pusher"\npassword_file = "{pw.name}"\n')  # relative: config dir
    assert s.registry.password_file == pw
    assert s.registry_access("127.0.0.1:5000").credentials == ("pusher", "pw-123")
    assert s.registry_access("x:1").docker_auth == {"username": "pusher", "password": "pw-123"}
    assert "pw-123" not in s.model_dump_json()
    assert "pw-123" not in repr(s.registry_access("x:1"))


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o644])
def test_a_password_file_its_group_or_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    pw = password_file(tmp_path, mode)
    with pytest.raises(ConfigError, match=rf"password_file .*: mode {mode:04o} .*chmod 600"):
        settings(tmp_path, f'[registry]\nusername = "pusher"\npassword_file = "{pw}"\n')


def test_a_symlinked_missing_or_empty_password_file_is_refused(tmp_path: Path) -> None:
    pw = password_file(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(pw)
    for path, why in ((link, "cannot read"), (tmp_path / "nope", "cannot read")):
        with pytest.raises(ConfigError, match=why):
            settings(tmp_path, f'[registry]\nusername = "u"\npassword_file = "{path}"\n')
    empty = password_file(tmp_path, text="\n")
    with pytest.raises(ConfigError, match="empty"):
        settings(tmp_path, f'[registry]\nusername = "u"\npassword_file = "{empty}"\n')


def test_the_environment_gives_credentials_and_wins_over_the_file(tmp_path: Path) -> None:
    pw = password_file(tmp_path)
    toml = f'[registry]\nusername = "file-user"\npassword_file = "{pw}"\n'
    s = settings(tmp_path, toml, MODELTUI_REGISTRY_USERNAME="env-user", MODELTUI_REGISTRY_PASSWORD="env-pw")
    assert s.registry_access("127.0.0.1:5000").credentials == ("env-user", "env-pw")


def test_half_credentials_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[registry\] username is set but a password is not"):
        settings(tmp_path, '[registry]\nusername = "u"\n')
    with pytest.raises(ConfigError, match=r"a password is set but \[registry\] username is not"):
        settings(tmp_path, "", MODELTUI_REGISTRY_PASSWORD="p")
    with pytest.raises(ConfigError, match="no ':'"):
        settings(tmp_path, "", MODELTUI_REGISTRY_USERNAME="a:b", MODELTUI_REGISTRY_PASSWORD="p")


def test_a_missing_ca_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[registry\] ca_file: .*nope\.pem is not a readable file"):
        settings(tmp_path, '[registry]\nca_file = "nope.pem"\n')
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    assert settings(tmp_path, '[registry]\nca_file = "ca.pem"\n').registry.ca_file == ca


def test_the_daemon_refuses_to_start_and_never_prints_the_password(tmp_path: Path) -> None:
    """``modeltuid check-config`` (the daemon's own settings path) as a real process: exit 78 (EX_CONFIG)."""
    config = tmp_path / "daemon.toml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELTUI_")}
    env["MODELTUI_STATE_DIR"] = str(tmp_path / "state")

    def check(toml: str) -> subprocess.CompletedProcess[str]:
        config.write_text(toml)
        argv = [sys.executable, "-m", "daemon", "check-config", "--config", str(config)]
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)

    refused = check('[docker]\nregistry = "10.0.0.5:5000"\n[registry]\ntls = false\n')
    assert refused.returncode == 78, refused.stderr
    assert "[registry] allow_plain_http" in refused.stderr, refused.stderr
    assert "10.0.0.5:5000" in refused.stderr, refused.stderr
    ok = check(f'[registry]\nusername = "u"\npassword_file = "{password_file(tmp_path)}"\n')
    assert ok.returncode == 0, ok.stderr
    assert "pw-123" not in ok.stdout
    assert json.loads(ok.stdout.split("\nlog file:")[0])["registry_password"] == "**********"
