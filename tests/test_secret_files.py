"""One rule for the daemon's secret files (the ZooKeeper credential and the registry password): a regular
file, no symlink followed, that its group and others may neither read nor change, with the same message for
both; and one loopback rule for every address setting (the exporter's too). Unit tests: no traffic."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.settings import ClusterSection, ConfigError, ExporterSection, read_password_file, zk_credentials


def zk_file(path: Path) -> object:
    return zk_credentials(ClusterSection(zookeeper="127.0.0.1:2181", zk_credentials_file=str(path)), {}, path.parent)


READERS: dict[str, Callable[[Path], object]] = {"zk_credentials_file": zk_file, "password_file": read_password_file}


def secret(tmp_path: Path, mode: int = 0o600) -> Path:
    p = tmp_path / "secret"
    p.write_text("svc:pw-123\n")
    p.chmod(mode)
    return p


@pytest.mark.parametrize("setting", READERS)
def test_both_secret_files_are_read_when_private(tmp_path: Path, setting: str) -> None:
    READERS[setting](secret(tmp_path))


@pytest.mark.parametrize("setting", READERS)
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620])
def test_both_secret_files_refuse_a_mode_others_share_with_one_message(
    tmp_path: Path, setting: str, mode: int
) -> None:
    with pytest.raises(ConfigError) as err:
        READERS[setting](secret(tmp_path, mode))
    assert f"{setting} " in str(err.value)
    assert f"mode {mode:04o} lets its group or others read or change it;" in str(err.value)
    assert "must be readable by the daemon's user only (chmod 600)" in str(err.value)
    assert "pw-123" not in str(err.value)


@pytest.mark.parametrize("setting", READERS)
def test_both_secret_files_refuse_a_symlink_and_what_is_not_a_file(tmp_path: Path, setting: str) -> None:
    link = tmp_path / "link"
    link.symlink_to(secret(tmp_path))
    with pytest.raises(ConfigError, match=f"{setting} .*: cannot read"):
        READERS[setting](link)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(ConfigError, match=f"{setting} .*: not a regular file"):
        READERS[setting](fifo)


@pytest.mark.parametrize("address", ["127.0.0.1:9464", "localhost:0", "LocalHost:9464", "[::1]:9464", "127.3.4.5:1"])
def test_the_exporter_takes_every_loopback_address_the_other_settings_take(address: str) -> None:
    assert ExporterSection(address=address).port == int(address.rpartition(":")[2])


@pytest.mark.parametrize("address", ["0.0.0.0:9464", "10.0.0.5:9464", "[2001:db8::1]:9464", "example.org:9464"])
def test_the_exporter_refuses_plain_http_beyond_loopback(address: str) -> None:
    with pytest.raises(ValueError, match="loopback address only"):
        ExporterSection(address=address)
