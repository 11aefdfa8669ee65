"""Signing versions with the user's SSH key: ``modeltui sign REF`` and ``modeltui push --sign``.

The signature is made here, by the real ``ssh-keygen -Y sign -n modeltui-version`` (the format git uses for
SSH-signed commits), over the statement :func:`daemon.protocol.signing.statement` builds from the model's name
and the version's digest; the daemon checks it against its allowed-signers file and records it.

The key, as git finds ``user.signingkey``: ``-k/--key PATH``, else ``$MODELTUI_SIGNING_KEY``, else git's
``user.signingkey`` when ``gpg.format`` is ``ssh`` (a path, or ``key::ssh-ed25519 AAAA…`` held by the agent),
else ``~/.ssh/id_ed25519``, else the first key the ssh-agent holds. A public key (``.pub``) makes ssh-keygen
ask the agent for its private half.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
from pathlib import Path

import click

from daemon.protocol import requests as q
from daemon.protocol import results as r
from daemon.protocol.errors import ErrorCode, ProtocolError
from daemon.protocol.signing import NAMESPACE, statement

from .. import format as fmt
from ..client import DaemonClient
from .common import check_ref_arg, emit, err, json_option, main, out, run

ENV_KEY = "MODELTUI_SIGNING_KEY"
#: ssh-keygen may ask for a passphrase on the terminal: a generous bound that only a hang reaches.
SIGN_TIMEOUT_S = 300.0


def _bad(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.INVALID, message)


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "config", "--get", *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _agent_key() -> str | None:
    if not os.environ.get("SSH_AUTH_SOCK"):
        return None
    try:
        done = subprocess.run(["ssh-add", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [line for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []
    return lines[0] if lines else None


#: A key file, or a literal public key the agent holds.
Key = tuple[Path | None, str | None]


def find_key(explicit: Path | None) -> Key:
    """(a key file, or a literal public key the agent holds), in the order the module says."""
    if explicit is not None:
        if not explicit.exists():
            raise _bad(f"{explicit}: no such key file")
        return explicit, None
    if os.environ.get(ENV_KEY):
        return Path(os.environ[ENV_KEY]).expanduser(), None
    if _git("gpg.format") == "ssh":
        configured = _git("user.signingkey")
        if configured:
            if configured.startswith("key::"):
                return None, configured.removeprefix("key::")
            if configured.startswith(("ssh-", "ecdsa-", "sk-")):
                return None, configured
            return Path(configured).expanduser(), None
    default = Path.home() / ".ssh" / "id_ed25519"
    if default.exists():
        return default, None
    literal = _agent_key()
    if literal:
        return None, literal
    raise _bad(
        f"no SSH key to sign with: pass -k PATH, set ${ENV_KEY}, or make ~/.ssh/id_ed25519 (ssh-keygen -t ed25519)"
    )


def sign_statement(data: bytes, key: Path | None, literal: str | None) -> str:
    """The armored signature of ``data`` by ``ssh-keygen -Y sign`` (blocking)."""
    with tempfile.TemporaryDirectory(prefix="modeltui-sign-") as tmp:
        if key is None:
            key = Path(tmp) / "agent-key.pub"
            key.write_text((literal or "") + "\n", encoding="utf-8")
        elif not key.exists():
            raise _bad(f"{key}: no such key file")
        try:
            done = subprocess.run(
                ["ssh-keygen", "-Y", "sign", "-f", str(key), "-n", NAMESPACE],
                input=data,
                capture_output=True,
                timeout=SIGN_TIMEOUT_S,
            )
        except FileNotFoundError:
            raise _bad("ssh-keygen is not installed (openssh-client)") from None
        except subprocess.TimeoutExpired:
            raise _bad(f"ssh-keygen did not sign within {SIGN_TIMEOUT_S:g} s") from None
    if done.returncode != 0:
        why = done.stderr.decode("utf-8", "replace").strip().splitlines()
        why = [line for line in why if not line.startswith("Signing data on standard input")]
        raise _bad(f"ssh-keygen could not sign with {key}: {fmt.printable(' '.join(why)) or 'failed'}")
    return done.stdout.decode("ascii", "replace")


async def sign_version(
    client: DaemonClient, model: str, number: int, digest: str, key: Path | None, found: Key | None = None
) -> r.SignResult:
    """Sign ``model:number`` (whose content is ``digest``) with the user's key (``found`` already, or looked for
    from ``key``) and record the signature."""
    if found is None:
        found = await asyncio.to_thread(find_key, key)
    path, literal = found
    armored = await asyncio.to_thread(sign_statement, statement(model, digest), path, literal)
    return await client.call(q.SignVersion(ref=f"{model}:{number}", digest=digest, signature=armored))


def say_signed(result: r.SignResult) -> None:
    v, s = result.version, result.signature
    out.print(fmt.printable(f"signed {v.model}:{v.number}: {fmt.signer(s, long=True)}"))
    if s.status != "verified":
        err.print(
            "warning: the daemon's allowed-signers file does not name this key: the signature is recorded but "
            "does not count ([signing] allowed_signers)"
        )


key_option = click.option(
    "-k",
    "--key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="SSH key to sign with (private, or .pub in the agent)",
)


@main.command("sign")
@click.argument("ref", callback=check_ref_arg)
@key_option
@json_option
@click.pass_context
def sign(ctx: click.Context, ref: str, key: Path | None, as_json: bool) -> None:
    """Sign version REF with your SSH key (ssh-keygen -Y sign); others may countersign it."""

    async def body(client: DaemonClient) -> r.SignResult:
        shown = await client.call(q.Show(ref=ref))
        v = shown.version
        return await sign_version(client, v.model, v.number, v.digest, key)

    result = run(ctx, body)
    emit(result, as_json, lambda: say_signed(result))
