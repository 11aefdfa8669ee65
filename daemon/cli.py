"""``modeltuid``: run the daemon, check its configuration, back up, verify and restore its state.

Exit codes of ``backup``/``verify``: 0 or 1; of ``restore``: 0, 1, or 75 while a daemon runs. Of ``run``:
0 stopped cleanly, 75 another daemon runs (EX_TEMPFAIL), 78 configuration error
(EX_CONFIG, not worth a restart: the systemd unit says RestartPreventExitStatus=78), 71 an unusable socket
from systemd (EX_OSERR), 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from daemon import __version__
from daemon.server import AlreadyRunning
from daemon.settings import ConfigError, forget_secrets, load_settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="modeltuid", description="The modeltui daemon.")
    p.add_argument("--version", action="version", version=f"modeltuid {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    commands = (
        ("run", "serve on the socket until SIGTERM"),
        ("check-config", "print the settings"),
        ("backup", "copy the registry (database and files) to DEST, consistent, while the daemon serves"),
        ("restore", "replace the state directory's registry with the backup SRC (the daemon must be stopped)"),
        ("verify", "check a backup or the state directory (integrity, every file and its hash)"),
    )
    for name, help_text in commands:
        c = sub.add_parser(name, help=help_text)
        c.add_argument("--config", help="TOML file (default: $MODELTUI_CONFIG or the mode's default)")
        c.add_argument("--socket", help="socket path (overrides env and config)")
        c.add_argument("--state-dir", help="state directory (overrides env and config)")
        c.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub.choices["run"].add_argument(
        "--detach-log", action="store_true", help="log only to the state directory (used by the embedded start)"
    )
    sub.choices["backup"].add_argument("dest", type=Path, metavar="DEST", help="a new (or empty) directory")
    sub.choices["restore"].add_argument("src", type=Path, metavar="SRC", help="a directory made by modeltuid backup")
    sub.choices["verify"].add_argument(
        "path", type=Path, nargs="?", metavar="PATH", help="a backup (default: the state directory)"
    )
    tls = sub.add_parser("tls", help="TLS helpers: self-signed makes a certificate and key for a first try")
    tls.add_argument("action", choices=["self-signed"])
    tls.add_argument("--out", type=Path, required=True, help="directory for cert.pem and key.pem (made 0700)")
    tls.add_argument("--host", required=True, help="the name or address clients use (also valid: localhost)")
    tls.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "tls":
        from daemon.deploy.tls import TlsError, self_signed

        if not 1 <= args.days <= 3650:
            print("modeltuid: --days must be from 1 to 3650", file=sys.stderr)
            return 2
        try:
            cert, key = self_signed(args.out, args.host, days=args.days)
        except (TlsError, OSError) as exc:
            print(f"modeltuid: {exc}", file=sys.stderr)
            return 1
        print(f"certificate: {cert}\nkey: {key}\nset [serving] tls_cert and tls_key to these paths")
        return 0
    try:
        settings = load_settings(args.config, socket=args.socket, state_dir=args.state_dir, log_level=args.log_level)
    except ConfigError as exc:
        print(f"modeltuid: configuration error: {exc}", file=sys.stderr)
        return 78  # EX_CONFIG
    forget_secrets(os.environ)  # read into the settings: no child (workers, pip, ssh-keygen) inherits them
    if args.command == "check-config":
        print(settings.model_dump_json(indent=2))
        print(f"log file: {settings.log_file}")
        return 0
    if args.command in ("backup", "restore", "verify"):
        from daemon.backup import backup, restore, verify

        if args.command == "backup":
            return backup.backup_main(settings, args.dest)
        if args.command == "restore":
            return restore.restore_main(settings, args.src)
        return verify.verify_main(args.path or settings.state_dir)
    from daemon.systemd import take_environment

    # First, before anything can start a child: NOTIFY_SOCKET, WATCHDOG_* and LISTEN_* are for us only.
    systemd = take_environment()
    from daemon.app import ActivationError, run  # heavy imports only when serving

    try:
        return run(settings, to_stderr=not args.detach_log, systemd=systemd)
    except AlreadyRunning as exc:
        print(f"modeltuid: {exc}", file=sys.stderr)
        return 75  # EX_TEMPFAIL
    except ActivationError as exc:
        print(f"modeltuid: {exc}", file=sys.stderr)
        return 71  # EX_OSERR
    except KeyboardInterrupt:
        return 130
