"""What a maintenance worker inherits from the daemon: an allow-list of its environment, never a credential."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon.maintain.worker import Limits, WorkerError, train, worker_env
from daemon.settings import SECRET_ENV, ZK_CREDENTIALS_ENV, forget_secrets
from tests.helpers.daemon import DaemonProcess, cli_json
from tests.helpers.example_data import EXAMPLE_MODEL, shifted_model
from tests.helpers.waiting import wait_for

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


def test_a_worker_keeps_the_hosts_proxy_ca_and_index_settings() -> None:
    """Review finding 9: a training command that downloads (data, pip) needs them; credentials still stay."""
    network = {
        "http_proxy": "http://proxy:3128", "HTTPS_PROXY": "http://proxy:3128", "no_proxy": "localhost",
        "NO_PROXY": "localhost", "SSL_CERT_FILE": "/etc/ca.pem", "REQUESTS_CA_BUNDLE": "/etc/ca.pem",
        "PIP_INDEX_URL": "https://index.internal/simple",
    }  # fmt: skip
    env = worker_env({**SECRETS, **network, "PATH": "/usr/bin"})
    assert env == {**network, "PATH": "/usr/bin", "PYTHONUNBUFFERED": "1"}


def test_the_daemon_forgets_every_credential_it_read_from_its_environment() -> None:
    environ = dict(SECRETS, PATH="/usr/bin")
    forget_secrets(environ)
    assert environ == {"AWS_SECRET_ACCESS_KEY": "cloud-secret-3", "PATH": "/usr/bin"}
    assert {"MODELTUI_REGISTRY_PASSWORD", "MODELTUI_REGISTRY_USERNAME", ZK_CREDENTIALS_ENV} <= set(SECRET_ENV)


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.decode().partition("=")[::2] for item in raw.split(b"\0") if item)


def test_no_child_of_a_real_daemon_inherits_its_credentials(
    daemon: DaemonProcess, example_dir: Path, tmp_path: Path
) -> None:
    """The daemon started with the registry's and ZooKeeper's credentials in its environment: its training
    worker, its zygote and a runtime forked from it see none of them."""
    d = daemon
    d.stop()
    d.env.update({name: value for name, value in SECRETS.items() if name != "AWS_SECRET_ACCESS_KEY"})
    d.start()
    assert d.cli("push", str(shifted_model(example_dir, tmp_path)), "--alias", "production").returncode == 0
    cli_json(d, "deploy", f"{EXAMPLE_MODEL}@production", "--name", "first")  # starts the zygote
    wait_for(lambda: "serving zygote" in (d.state_dir / "daemon.log").read_text(), "the zygote to be ready")
    cli_json(d, "deploy", f"{EXAMPLE_MODEL}@production", "--name", "forked")
    dump = tmp_path / "worker-env.json"
    script = tmp_path / "dump.py"
    script.write_text("import json, os, sys\nopen(sys.argv[1], 'w').write(json.dumps(dict(os.environ)))\n")
    policy = ["data=fresh_train.csv", "holdout=fresh_holdout.csv", "target=target", f"command=python {script} {dump}"]
    assert d.cli("maintain", "set", EXAMPLE_MODEL, *policy).returncode == 0
    d.cli("maintain", "run-now", EXAMPLE_MODEL, "--wait")  # the command writes no model: the run fails
    seen = {"worker": json.loads(dump.read_text())}
    for name in ("first", "forked"):
        (pid,) = d.serving_pids(name)
        seen[name] = environ_of(pid)
    zygotes = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _is_zygote(int(p.name), d)]
    assert zygotes, "no zygote found"
    seen |= {f"zygote {pid}": environ_of(pid) for pid in zygotes}
    for who, env in seen.items():
        assert not set(SECRETS) & set(env), (who, sorted(env))
        assert not any(value in json.dumps(env) for value in SECRETS.values()), who


def _is_zygote(pid: int, d: DaemonProcess) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"daemon.serving.zygote" in argv and d.proc is not None and _parent(pid) == d.proc.pid


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[1])
