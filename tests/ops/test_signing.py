"""Signed versions (docs/security.md, "Signed versions"): real ``ssh-keygen`` keys and signatures, a real daemon
with an allowed-signers file and ``[signing] require = "deploy"``, the CLI as a subprocess."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.protocol import requests as q
from daemon.protocol.errors import ErrorCode, ProtocolError
from daemon.protocol.signing import NAMESPACE, parse_signature, statement
from modeltui.client import connect
from tests.helpers.daemon import DaemonProcess, cli_json, daemon_env, deployment
from tests.helpers.models import make_model_dir, python_model
from tests.helpers.prerequisites import need
from tests.helpers.waiting import wait_for

ALICE = "alice@example.com"


def keygen(path: Path, comment: str) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)
    return path


def fingerprint(key: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-l", "-f", str(key) + ".pub"], capture_output=True, text=True, check=True)
    return out.stdout.split()[1]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    need(shutil.which("ssh-keygen") is not None, "the signing tests sign with a real ssh-keygen")
    base = tmp_path_factory.mktemp("keys")
    return {"alice": keygen(base / "alice", "alice"), "mallory": keygen(base / "mallory", "mallory")}


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Path]) -> Iterator[DaemonProcess]:
    """A daemon whose allowed-signers file names alice's key only, and that deploys only signed versions."""
    base = tmp_path_factory.mktemp("daemon")
    (base / "home").mkdir()
    allowed = base / "allowed_signers"
    pub = (keys["alice"].with_suffix(".pub")).read_text().split()
    allowed.write_text(f'{ALICE} namespaces="{NAMESPACE}" {pub[0]} {pub[1]}\n')
    env = daemon_env(base)
    Path(env["MODELTUI_CONFIG"]).write_text(
        '[signing]\nallowed_signers = "allowed_signers"\nrequire = "deploy"\n\n'
        "[monitor]\nscrape_interval_seconds = 3600\n"
    )
    daemon = DaemonProcess(Path(env["MODELTUI_STATE_DIR"]), Path(env["MODELTUI_SOCKET"]), env=env)
    try:
        yield daemon.start()
    finally:
        daemon.stop()
        daemon.kill_deployments()


def test_a_signed_push_is_verified_and_shown_with_its_signer(d: DaemonProcess, keys: dict[str, Path],
                                                              tmp_path: Path) -> None:
    model = make_model_dir(tmp_path / "m", name="signed")
    pushed = cli_json(d, "push", str(model), "--sign", "-k", str(keys["alice"]), "--alias", "production")
    assert pushed["signature"]["status"] == "verified"
    shown = cli_json(d, "show", "signed@production")
    [sig] = shown["signatures"]
    assert sig["status"] == "verified"
    assert sig["principal"] == ALICE
    assert sig["fingerprint"] == fingerprint(keys["alice"])
    assert sig["key_type"] == "ssh-ed25519"
    human = d.cli("show", "signed:1")
    assert f"signed  verified {ALICE} (ED25519 {sig['fingerprint']}" in human.stdout, human.stdout
    log = cli_json(d, "log", "signed")
    assert log["items"][0]["signature"]["principal"] == ALICE
    assert "verified" in d.cli("log", "signed").stdout


def test_a_key_not_allowed_is_recorded_as_such_and_does_not_count(d: DaemonProcess, keys: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    make_model_dir(tmp_path / "m", name="outsider")
    res = d.cli("push", str(tmp_path / "m"), "--sign", "-k", str(keys["mallory"]))
    assert res.returncode == 0, res.stderr
    assert "does not count" in res.stderr
    [sig] = cli_json(d, "show", "outsider:1")["signatures"]
    assert (sig["status"], sig["principal"]) == ("not allowed", None)
    assert sig["fingerprint"] == fingerprint(keys["mallory"])
    assert "not allowed" in d.cli("show", "outsider:1").stdout
    refused = d.cli("deploy", "outsider:1")
    assert refused.returncode == 5, refused.stderr
    assert "[signing] require" in refused.stderr
    assert "outsider:1" in refused.stderr
    assert "allowed" in refused.stderr


def test_an_unsigned_version_is_refused_then_deployed_once_signed(d: DaemonProcess, keys: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    python_model(tmp_path / "m", name="later")
    assert d.cli("push", str(tmp_path / "m"), "--alias", "production").returncode == 0
    assert cli_json(d, "show", "later:1")["signatures"] == []
    assert "unsigned" in d.cli("show", "later:1").stdout
    refused = d.cli("deploy", "later@production")
    assert refused.returncode == 5
    assert "later:1 is unsigned" in refused.stderr
    assert '[signing] require = "deploy"' in refused.stderr
    assert "modeltui sign later:1" in refused.stderr

    signed = d.cli("sign", "later:1", "-k", str(keys["alice"]))
    assert signed.returncode == 0, signed.stderr
    assert f"verified {ALICE}" in signed.stdout
    res = d.cli("deploy", "later@production", "--json", timeout=180)
    assert res.returncode == 0, res.stderr
    assert deployment(d, "later-production")["version"] == 1

    # An alias moved to an unsigned version: the move is allowed ("deploy" is not "promote"), its rollout is not.
    python_model(tmp_path / "m2", name="later", factor=3.0)
    assert d.cli("push", str(tmp_path / "m2")).returncode == 0
    assert d.cli("alias", "set", "later", "production", "2").returncode == 0
    wait_for(lambda: any(e["kind"] == "rollout-refused" for e in cli_json(d, "ps", "later-production")["events"]),
             "the rollout to the unsigned version 2 refused", timeout=60)
    info = deployment(d, "later-production")
    assert (info["version"], info["state"]) == (1, "running")
    assert d.cli("undeploy", "later-production").returncode == 0


def test_a_tampered_signature_is_refused_and_never_recorded(d: DaemonProcess, keys: dict[str, Path],
                                                            tmp_path: Path) -> None:
    make_model_dir(tmp_path / "m", name="tampered")
    v = cli_json(d, "push", str(tmp_path / "m"))["version"]
    good = subprocess.run(["ssh-keygen", "-Y", "sign", "-f", str(keys["alice"]), "-n", NAMESPACE],
                          input=statement("tampered", v["digest"]), capture_output=True, check=True).stdout.decode()
    lines = good.strip().splitlines()
    blob = bytearray(base64.b64decode("".join(lines[1:-1])))
    blob[-1] ^= 1  # one bit of the signature itself
    body = base64.b64encode(bytes(blob)).decode()
    bad = "\n".join([lines[0], *(body[i:i + 70] for i in range(0, len(body), 70)), lines[-1]]) + "\n"
    assert parse_signature(bad).fingerprint == fingerprint(keys["alice"])  # still names alice's key
    other = subprocess.run(["ssh-keygen", "-Y", "sign", "-f", str(keys["alice"]), "-n", NAMESPACE],
                           input=statement("tampered", "0" * 64), capture_output=True, check=True).stdout.decode()
    git_ns = subprocess.run(["ssh-keygen", "-Y", "sign", "-f", str(keys["alice"]), "-n", "git"],
                            input=statement("tampered", v["digest"]), capture_output=True, check=True).stdout.decode()

    async def send(signature: str) -> ProtocolError:
        async with await connect(d.socket) as client:
            with pytest.raises(ProtocolError) as caught:
                await client.call(q.SignVersion(ref="tampered:1", digest=v["digest"], signature=signature))
            return caught.value

    for signature, says in ((bad, "does not verify"), (other, "does not verify"), (git_ns, "namespace 'git'")):
        exc = asyncio.run(send(signature))
        assert exc.code is ErrorCode.INVALID, exc
        assert says in exc.message
    assert cli_json(d, "show", "tampered:1")["signatures"] == []
    audit = cli_json(d, "audit", "--limit", "20")
    refused = [e for e in audit["items"] if e["op"] == "versions.sign" and e["result"] == "INVALID"]
    assert len(refused) >= 3, json.dumps(audit)[:2000]
