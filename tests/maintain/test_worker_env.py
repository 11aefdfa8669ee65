"""What a maintenance worker inherits from the daemon: an allow-list of its environment, never a credential."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon.maintain.worker import Limits, WorkerError, train
from daemon.settings import SECRET_ENV, ZK_CREDENTIALS_ENV, forget_secrets

pytestmark = pytest.mark.integration

SECRETS = {
    "MODELTUI_REGISTRY_USERNAME": "pusher",
    "MODELTUI_REGISTRY_PASSWORD": "registry-secret-1",
    ZK_CREDENTIALS_ENV: "zkuser:zk-secret-2",
    "AWS_SECRET_ACCESS_KEY": "cloud-secret-3",  # anything else the daemon's unit happens to carry
}


def test_a_training_command_sees_no_credential_of_the_daemon(
    example_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    dump = tmp_path / "env.json"
    script = tmp_path / "dump.py"
    script.write_text("import json, os, sys\nopen(sys.argv[1], 'w').write(json.dumps(dict(os.environ)))\n")
    command = f"python {script} {dump}"
    with pytest.raises(WorkerError) as info:  # it writes no model: "garbage", but it ran
        train(command, example_dir, None, tmp_path / "out", Limits(timeout_seconds=120.0), tmp_path / "log")
    assert info.value.kind == "garbage"
    seen = json.loads(dump.read_text())
    assert not set(SECRETS) & set(seen), sorted(seen)
    assert not any(value in json.dumps(seen) for value in SECRETS.values())
    assert seen["PATH"]
    assert (seen["OMP_NUM_THREADS"], seen["PYTHONUNBUFFERED"]) == ("2", "1")


def test_the_daemon_forgets_every_credential_it_read_from_its_environment() -> None:
    environ = dict(SECRETS, PATH="/usr/bin")
    forget_secrets(environ)
    assert environ == {"AWS_SECRET_ACCESS_KEY": "cloud-secret-3", "PATH": "/usr/bin"}
    assert {"MODELTUI_REGISTRY_PASSWORD", "MODELTUI_REGISTRY_USERNAME", ZK_CREDENTIALS_ENV} <= set(SECRET_ENV)
