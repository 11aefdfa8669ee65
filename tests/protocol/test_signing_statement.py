"""What the CLI and the daemon agree on before ssh-keygen runs (daemon/protocol/signing.py): the statement a
signer signs, and what an armored signature says about its key (checked against a real ``ssh-keygen``)."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest

from daemon.protocol.signing import MAX_SIGNATURE_BYTES, NAMESPACE, parse_signature, statement
from tests.helpers.prerequisites import need


def test_the_statement_names_the_model_and_the_digest_only() -> None:
    assert statement("churn", "ab" * 32) == f"modeltui-version 1\nmodel churn\ndigest sha256:{'ab' * 32}\n".encode()
    assert statement("churn", "ab" * 32) != statement("churn2", "ab" * 32)


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need(shutil.which("ssh-keygen") is not None, "signatures are made with a real ssh-keygen")
    path = tmp_path_factory.mktemp("key") / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def sign(key: Path, namespace: str = NAMESPACE) -> str:
    cmd = ["ssh-keygen", "-Y", "sign", "-f", str(key), "-n", namespace]
    return subprocess.run(cmd, input=b"x", capture_output=True, check=True).stdout.decode()


def test_the_key_of_a_signature_is_the_one_ssh_keygen_prints(key: Path) -> None:
    listed = subprocess.run(["ssh-keygen", "-l", "-f", f"{key}.pub"], capture_output=True, text=True, check=True)
    found = parse_signature(sign(key))
    assert (found.key_type, found.fingerprint) == ("ssh-ed25519", listed.stdout.split()[1])


def test_a_signature_for_another_namespace_is_refused_by_name(key: Path) -> None:
    with pytest.raises(ValueError, match="namespace 'git', not 'modeltui-version'"):
        parse_signature(sign(key, "git"))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not a signature",
        "-----BEGIN SSH SIGNATURE-----\n!!!!\n-----END SSH SIGNATURE-----",
        "-----BEGIN SSH SIGNATURE-----\n"
        + base64.b64encode(b"SSHSIG\0\0\0\1\0\0\1\0").decode()
        + "\n-----END SSH SIGNATURE-----",
        "-----BEGIN SSH SIGNATURE-----\n" + "A" * MAX_SIGNATURE_BYTES + "\n-----END SSH SIGNATURE-----",
    ],
)
def test_anything_else_is_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError, match="signature"):
        parse_signature(text)
