"""Signed versions: the statement a signer signs and what an armored SSH signature says about its key.

The daemon and the CLI build the same statement (``statement``), so a signature made by ``ssh-keygen -Y sign``
on a laptop verifies in the daemon. Standard library only: nothing here runs ``ssh-keygen``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

#: The ``-n`` namespace of every version signature: a signature made for git commits (``git``) or for files
#: (``file``) can never pass for a version's.
NAMESPACE = "modeltui-version"
#: An armored ed25519 signature is ~300 bytes, an RSA-4096 one ~900; certificates make them larger.
MAX_SIGNATURE_BYTES = 16 * 1024

_BEGIN = "-----BEGIN SSH SIGNATURE-----"
_END = "-----END SSH SIGNATURE-----"


def statement(model: str, digest: str) -> bytes:
    """What is signed: the model's name and the version's content digest (sha256 of its sorted
    ``[path, sha256, executable]`` list), one per line. The same content under another name is another
    statement; the version number is left out so a cluster may renumber without breaking a signature."""
    return f"modeltui-version 1\nmodel {model}\ndigest sha256:{digest}\n".encode()


@dataclass(frozen=True)
class SignatureKey:
    """The public key an armored signature carries (claims: only ``ssh-keygen -Y verify`` proves it)."""

    key_type: str
    fingerprint: str  # "SHA256:…", as ``ssh-keygen -l`` prints it


def _string(blob: bytes, at: int) -> tuple[bytes, int]:
    if at + 4 > len(blob):
        raise ValueError("truncated")
    (size,) = struct.unpack(">I", blob[at : at + 4])
    end = at + 4 + size
    if end > len(blob):
        raise ValueError("truncated")
    return blob[at + 4 : end], end


def parse_signature(armored: str) -> SignatureKey:
    """The key and namespace of an armored SSH signature (``-----BEGIN SSH SIGNATURE-----``).

    Raises ``ValueError`` with a reason a user can act on: not an SSH signature, or made for another namespace.
    """
    if len(armored.encode("utf-8", "replace")) > MAX_SIGNATURE_BYTES:
        raise ValueError(f"the signature is larger than {MAX_SIGNATURE_BYTES} bytes")
    lines = [line.strip() for line in armored.strip().splitlines()]
    if len(lines) < 3 or lines[0] != _BEGIN or lines[-1] != _END:
        raise ValueError("not an armored SSH signature (made by ssh-keygen -Y sign)")
    try:
        blob = base64.b64decode("".join(lines[1:-1]), validate=True)
        if blob[:6] != b"SSHSIG":
            raise ValueError("not an SSHSIG blob")
        (version,) = struct.unpack(">I", blob[6:10])
        if version != 1:
            raise ValueError(f"SSHSIG version {version}")
        public_key, at = _string(blob, 10)
        namespace, at = _string(blob, at)
        key_type, _ = _string(public_key, 0)
    except (ValueError, binascii.Error, struct.error) as exc:
        raise ValueError(f"not a valid SSH signature: {exc}") from None
    if namespace != NAMESPACE.encode():
        shown = namespace.decode("utf-8", "replace")[:64]
        raise ValueError(f"the signature was made for namespace {shown!r}, not {NAMESPACE!r} (ssh-keygen -n)")
    digest = base64.b64encode(hashlib.sha256(public_key).digest()).decode().rstrip("=")
    return SignatureKey(key_type=key_type.decode("ascii", "replace")[:64], fingerprint=f"SHA256:{digest}")
