"""Signed versions (docs/security.md, "Signed versions"): real ``ssh-keygen`` keys and signatures, a real daemon
with an allowed-signers file and ``[signing] require = "deploy"``, the CLI as a subprocess."""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from daemon.protocol import requests as q
from daemon.protocol import results as r
from daemon.protocol.errors import ErrorCode, ProtocolError
from daemon.protocol.signing import NAMESPACE, parse_signature, statement
from modeltui.client import connect
from tests.helpers.daemon import DaemonProcess, cli_json, daemon_env
from tests.helpers.models import make_model_dir, python_model
from tests.helpers.prerequisites import need
from tests.helpers.waiting import wait_for

ALICE = "alice@example.com"
R = TypeVar("R", bound=r.Result)


def call(d: DaemonProcess, request: q.BaseRequest[R]) -> R:
    """One request over the daemon's socket (cheaper than a CLI process where the CLI is not what is tested)."""

    async def go() -> R:
        async with await connect(d.socket) as client:
            return await client.call(request)

    return asyncio.run(go())


def keygen(path: Path, comment: str) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)
    return path


def signer_line(principal: str, key: Path) -> str:
    """An allowed-signers line (git's gpg.ssh.allowedSignersFile format) for ``key``, in our namespace only."""
    kind, blob = key.with_suffix(".pub").read_text().split()[:2]
    return f'{principal} namespaces="{NAMESPACE}" {kind} {blob}\n'


def ssh_sign(key: Path, data: bytes, namespace: str = NAMESPACE) -> str:
    cmd = ["ssh-keygen", "-Y", "sign", "-f", str(key), "-n", namespace]
    return subprocess.run(cmd, input=data, capture_output=True, check=True).stdout.decode()


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
    allowed.write_text(signer_line(ALICE, keys["alice"]))
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


def test_a_signed_push_is_verified_and_shown_with_its_signer(
    d: DaemonProcess, keys: dict[str, Path], tmp_path: Path
) -> None:
    model = make_model_dir(tmp_path / "m", name="signed")
    pushed = cli_json(d, "push", str(model), "--sign", "-k", str(keys["alice"]), "--alias", "production")
    assert pushed["signature"]["status"] == "verified"
    [sig] = call(d, q.Show(ref="signed@production")).signatures
    assert (sig.status, sig.principal, sig.key_type) == ("verified", ALICE, "ssh-ed25519")
    assert sig.fingerprint == fingerprint(keys["alice"])
    human = d.cli("show", "signed:1")
    assert f"signed  verified {ALICE} (ED25519 {sig.fingerprint}" in human.stdout, human.stdout
    assert call(d, q.Log(name="signed")).json_items()["items"][0]["signature"]["principal"] == ALICE
    assert f"verified {ALICE}" in d.cli("log", "signed").stdout


def test_no_key_to_sign_with_pushes_nothing(d: DaemonProcess, tmp_path: Path) -> None:
    model = make_model_dir(tmp_path / "m", name="keyless")
    res = d.cli("push", str(model), "--sign", "-k", str(tmp_path / "missing"))
    assert res.returncode == 4
    assert "missing: no such key file" in res.stderr
    with pytest.raises(ProtocolError) as caught:
        call(d, q.Log(name="keyless"))
    assert caught.value.code is ErrorCode.NOT_FOUND


def test_a_key_not_allowed_is_recorded_as_such_and_does_not_count(
    d: DaemonProcess, keys: dict[str, Path], tmp_path: Path
) -> None:
    make_model_dir(tmp_path / "m", name="outsider")
    res = d.cli("push", str(tmp_path / "m"), "--sign", "-k", str(keys["mallory"]))
    assert res.returncode == 0, res.stderr
    assert "does not count" in res.stderr
    [sig] = call(d, q.Show(ref="outsider:1")).signatures
    assert (sig.status, sig.principal) == ("not allowed", None)
    assert sig.fingerprint == fingerprint(keys["mallory"])
    assert "not allowed" in d.cli("show", "outsider:1").stdout
    refused = d.cli("deploy", "outsider:1")
    assert refused.returncode == 5, refused.stderr
    assert "[signing] require" in refused.stderr
    assert "outsider:1" in refused.stderr
    assert "allowed" in refused.stderr


def test_an_unsigned_version_is_refused_then_deployed_once_signed(
    d: DaemonProcess, keys: dict[str, Path], tmp_path: Path
) -> None:
    python_model(tmp_path / "m", name="later")
    assert d.cli("push", str(tmp_path / "m"), "--alias", "production").returncode == 0
    assert "unsigned" in d.cli("show", "later:1").stdout
    refused = d.cli("deploy", "later@production")
    assert refused.returncode == 5
    assert "later:1 is unsigned" in refused.stderr
    assert '[signing] require = "deploy"' in refused.stderr
    assert "modeltui sign later:1" in refused.stderr

    signed = d.cli("sign", "later:1", "-k", str(keys["alice"]))
    assert signed.returncode == 0, signed.stderr
    assert f"verified {ALICE}" in signed.stdout
    res = d.cli("deploy", "later@production", timeout=180)
    assert res.returncode == 0, res.stderr
    assert call(d, q.GetDeployment(name="later-production")).deployment.version == 1

    # An alias moved to an unsigned version: the move is allowed ("deploy" is not "promote"), its rollout is not.
    python_model(tmp_path / "m2", name="later", factor=3.0)
    assert d.cli("push", str(tmp_path / "m2")).returncode == 0
    call(d, q.AliasSet(name="later", alias="production", version=2))
    refused = wait_for(
        lambda: [e for e in call(d, q.GetDeployment(name="later-production")).events if e.kind == "rollout-refused"],
        "the rollout to the unsigned version 2 refused",
        timeout=60,
    )
    assert "later:2 is unsigned" in refused[0].message
    info = call(d, q.GetDeployment(name="later-production")).deployment
    assert (info.version, info.state) == (1, "running")
    call(d, q.Undeploy(name="later-production"))


def test_a_tampered_signature_is_refused_and_never_recorded(
    d: DaemonProcess, keys: dict[str, Path], tmp_path: Path
) -> None:
    make_model_dir(tmp_path / "m", name="tampered")
    v = cli_json(d, "push", str(tmp_path / "m"))["version"]
    good = ssh_sign(keys["alice"], statement("tampered", v["digest"]))
    lines = good.strip().splitlines()
    blob = bytearray(base64.b64decode("".join(lines[1:-1])))
    blob[-1] ^= 1  # one bit of the signature itself
    body = base64.b64encode(bytes(blob)).decode()
    bad = "\n".join([lines[0], *(body[i : i + 70] for i in range(0, len(body), 70)), lines[-1]]) + "\n"
    assert parse_signature(bad).fingerprint == fingerprint(keys["alice"])  # still names alice's key
    other = ssh_sign(keys["alice"], statement("tampered", "0" * 64))  # another version's content
    git_ns = ssh_sign(keys["alice"], statement("tampered", v["digest"]), namespace="git")  # a commit signature

    for signature, says in ((bad, "does not verify"), (other, "does not verify"), (git_ns, "namespace 'git'")):
        with pytest.raises(ProtocolError) as caught:
            call(d, q.SignVersion(ref="tampered:1", digest=v["digest"], signature=signature))
        assert caught.value.code is ErrorCode.INVALID, caught.value
        assert says in caught.value.message
    assert call(d, q.Show(ref="tampered:1")).signatures == []
    # push --sign says which version it pushed when the daemon refuses the signature
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ssh-keygen").write_text(f"#!/bin/sh\ncat <<'EOF'\n{bad}EOF\n")
    (fake / "ssh-keygen").chmod(0o755)
    env = {**d.env, "PATH": f"{fake}:{d.env['PATH']}"}
    cmd = [sys.executable, "-m", "modeltui", "push", str(tmp_path / "m"), "--sign", "-k", str(keys["alice"])]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 4
    assert "pushed tampered:1 but did not sign it: the signature does not verify" in res.stderr
    audit = call(d, q.AuditRequest(limit=50))
    refused = [e for e in audit.items if e.op == "versions.sign" and e.result == "INVALID"]
    assert len(refused) == 4, audit  # the three above and push --sign's


def test_promote_needs_a_verified_signature_and_a_revoked_signer_stops_counting(
    daemon_factory: Any, keys: dict[str, Path], tmp_path: Path
) -> None:
    d: DaemonProcess = daemon_factory()
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(signer_line(ALICE, keys["alice"]))
    Path(d.env["MODELTUI_CONFIG"]).write_text(f'[signing]\nallowed_signers = "{allowed}"\nrequire = "promote"\n')
    d.start()
    model = make_model_dir(tmp_path / "m", name="promoted")

    refused = d.cli("push", str(model), "--alias", "production")
    assert refused.returncode == 5
    assert '[signing] require = "promote" refuses push --alias production' in refused.stderr
    assert cli_json(d, "push", str(model))["version"]["number"] == 1
    with pytest.raises(ProtocolError) as caught:
        call(d, q.AliasSet(name="promoted", alias="production", version=1))
    assert caught.value.code is ErrorCode.CONFLICT
    assert "promoted:1 is unsigned" in caught.value.message

    # push --sign signs before it moves the alias (same content: version 1 again, now signed)
    res = d.cli("push", str(model), "--sign", "-k", str(keys["alice"]), "--alias", "production")
    assert res.returncode == 0, res.stderr
    assert "promoted@production -> 1" in res.stdout
    assert [s.status for s in call(d, q.Show(ref="promoted:1")).signatures] == ["verified"]

    # alice leaves the allowed signers: her signature stops counting at the next check, and show says so
    allowed.write_text(signer_line("mallory@example.com", keys["mallory"]))
    with pytest.raises(ProtocolError) as caught:
        call(d, q.AliasSet(name="promoted", alias="staging", version=1))
    assert "no signature of promoted:1 is by a signer" in caught.value.message
    [sig] = call(d, q.Show(ref="promoted:1")).signatures
    assert (sig.status, sig.principal) == ("not allowed", None)

    # alice is back: the daemon notices the edited file by itself (it looks every 10 s), and show says so
    allowed.write_text(signer_line(ALICE, keys["alice"]) + signer_line("mallory@example.com", keys["mallory"]))
    wait_for(
        lambda: call(d, q.Show(ref="promoted:1")).signatures[0].status == "verified",
        "the signature verified again after the allowed-signers file changed",
        timeout=60,
    )


def test_a_rollback_under_promote_needs_the_target_signed(
    daemon_factory: Any, keys: dict[str, Path], tmp_path: Path
) -> None:
    """A rollback moves an alias like alias set does: to an unsigned version it is refused (review finding 8)."""
    d: DaemonProcess = daemon_factory()
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(signer_line(ALICE, keys["alice"]))
    d.start()  # no signing requirement yet: version 1 goes to production unsigned
    name = "rolled"
    first, second = make_model_dir(tmp_path / "a", name=name), make_model_dir(tmp_path / "b", name=name, weights=b"w2")
    assert cli_json(d, "push", str(first), "--alias", "production")["version"]["number"] == 1
    assert cli_json(d, "push", str(second), "--sign", "-k", str(keys["alice"]))["version"]["number"] == 2
    d.stop()
    Path(d.env["MODELTUI_CONFIG"]).write_text(f'[signing]\nallowed_signers = "{allowed}"\nrequire = "promote"\n')
    d.start()
    call(d, q.AliasSet(name=name, alias="production", version=2))  # signed: allowed
    with pytest.raises(ProtocolError) as caught:
        call(d, q.Rollback(name=name, alias="production"))
    assert caught.value.code is ErrorCode.CONFLICT
    assert f"{name}:1 is unsigned" in caught.value.message
    assert call(d, q.Show(ref=f"{name}@production")).version.number == 2  # the alias did not move
    signed = d.cli("sign", f"{name}:1", "-k", str(keys["alice"]))
    assert signed.returncode == 0, signed.stderr
    assert call(d, q.Rollback(name=name, alias="production")).to_version == 1
