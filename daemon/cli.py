"""``modeltuid``: run the daemon, or check its configuration.

Exit codes of ``run``: 0 stopped cleanly, 75 another daemon runs (EX_TEMPFAIL), 78 configuration error
(EX_CONFIG, not worth a restart: the systemd unit says RestartPreventExitStatus=78), 71 an unusable socket
from systemd (EX_OSERR), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys

from daemon import __version__
from daemon.server import AlreadyRunning
from daemon.settings import ConfigError, load_settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="modeltuid", description="The modeltui daemon.")
    p.add_argument("--version", action="version", version=f"modeltuid {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_text in (("run", "serve on the socket until SIGTERM"), ("check-config", "print the settings")):
        c = sub.add_parser(name, help=help_text)
        c.add_argument("--config", help="TOML file (default: $MODELTUI_CONFIG or the mode's default)")
        c.add_argument("--socket", help="socket path (overrides env and config)")
        c.add_argument("--state-dir", help="state directory (overrides env and config)")
        c.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub.choices["run"].add_argument(
        "--detach-log", action="store_true", help="log only to the state directory (used by the embedded start)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config, socket=args.socket, state_dir=args.state_dir, log_level=args.log_level)
    except ConfigError as exc:
        print(f"modeltuid: configuration error: {exc}", file=sys.stderr)
        return 78  # EX_CONFIG
    if args.command == "check-config":
        print(settings.model_dump_json(indent=2))
        print(f"log file: {settings.log_file}")
        return 0
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
