"""A self-signed certificate and key for a first try of TLS (``modeltuid tls self-signed``).

Made with the ``openssl`` command (the ``cryptography`` package is not a dependency): an EC P-256 key and a
certificate valid for ``days`` days naming the host (and 127.0.0.1 / localhost), both PEM. The key file is
0600. A client trusts the certificate itself (``curl --cacert cert.pem``); for production use a certificate
from your CA instead.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from pathlib import Path

CERT_NAME = "cert.pem"
KEY_NAME = "key.pem"


class TlsError(Exception):
    """The pair cannot be made; the message says why."""


def _san(host: str) -> str:
    names = {host, "localhost", "127.0.0.1"}
    parts = []
    for name in sorted(names):
        try:
            ipaddress.ip_address(name)
        except ValueError:
            parts.append(f"DNS:{name}")
        else:
            parts.append(f"IP:{name}")
    return ",".join(parts)


def self_signed(out: Path, host: str, *, days: int = 365) -> tuple[Path, Path]:
    """Write ``out/cert.pem`` and ``out/key.pem`` (blocking); returns their paths. Refuses to overwrite."""
    if not host or len(host) > 253 or any(c in host for c in ",/= \n\r\t"):
        raise TlsError(f"{host!r} is not a host name or address")
    openssl = shutil.which("openssl")
    if openssl is None:
        raise TlsError("the openssl command is not installed (apt-get install openssl)")
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert, key = out / CERT_NAME, out / KEY_NAME
    for path in (cert, key):
        if path.exists():
            raise TlsError(f"{path} exists; remove it or choose another --out")
    # The key file exists with mode 0600 before openssl writes into it.
    os.close(os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    cmd = [
        openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", str(days), "-subj", f"/CN={host}",
        "-addext", f"subjectAltName={_san(host)}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,digitalSignature,keyCertSign",
        "-addext", "extendedKeyUsage=serverAuth",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)
    if done.returncode != 0:
        key.unlink(missing_ok=True)
        cert.unlink(missing_ok=True)
        raise TlsError(f"openssl failed: {done.stderr.strip()[-500:]}")
    os.chmod(key, 0o600)
    return cert, key
