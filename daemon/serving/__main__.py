"""``python -m daemon.serving --model-dir DIR [--host H] [--port N] ...``: see the package docstring."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import ssl
import sys
from pathlib import Path

from .app import App
from .auth import Auth, tls_context
from .drift import EvaluationDataError, FeatureHistograms, load_reference
from .flavors import LoadError, Model, load_model
from .http import bind_shared
from .manifest import ManifestError, ServingManifest, read_manifest


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m daemon.serving", description="Serve one model version over HTTP.")
    ap.add_argument("--model-dir", type=Path, required=True, help="directory holding modeltui.toml and the model")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    ap.add_argument(
        "--admin-host",
        default=None,
        help="address of the instance's own (admin) port (default: --host); --public-port listens on --host",
    )
    ap.add_argument("--port", type=int, default=0, help="port (0: pick a free one; default 0)")
    ap.add_argument(
        "--public-port",
        type=int,
        default=None,
        help="also serve on this port once the model is loaded, shared with other instances (SO_REUSEPORT)",
    )
    ap.add_argument("--instance", default="", help="a label for supervisors to find this process by (ignored)")
    ap.add_argument("--max-batch-size", type=int, default=64, help="rows per predict call at most (default 64)")
    ap.add_argument("--max-wait-ms", type=float, default=2.0, help="longest linger for rows under load (default 2)")
    ap.add_argument(
        "--no-feedback-inputs",
        dest="feedback_inputs",
        action="store_false",
        help="keep no inputs of recent predictions (GET /feedback/rows stays empty; saves memory)",
    )
    ap.add_argument("--model-version", default="local", help="version shown in responses and metrics (default local)")
    ap.add_argument("--switch-interval-ms", type=float, default=0.5, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not 0 <= args.port <= 65535:
        ap.error("--port must be between 0 and 65535")
    if args.public_port is not None and not 1 <= args.public_port <= 65535:
        ap.error("--public-port must be between 1 and 65535")
    if args.max_batch_size < 1:
        ap.error("--max-batch-size must be at least 1")
    if not 0 <= args.max_wait_ms <= 10_000:
        ap.error("--max-wait-ms must be between 0 and 10000")
    if args.admin_host is None:
        args.admin_host = args.host
    return args


def _load(model_dir: Path, manifest: ServingManifest) -> tuple[Model, FeatureHistograms | None]:
    """In a thread: the model, then the input-drift reference from the evaluation data (if any).

    Evaluation data that cannot be used only costs the feature metrics, never the deployment."""
    model = load_model(model_dir, manifest)
    try:
        features = load_reference(model_dir, manifest)
    except EvaluationDataError as exc:
        print(f"modeltui-serving: no input-drift metrics: {exc}", file=sys.stderr, flush=True)
        return model, None
    return model, None if features is None else FeatureHistograms(features)


async def _serve(args: argparse.Namespace) -> int:
    model_dir: Path = args.model_dir
    manifest = read_manifest(model_dir)
    try:  # read and removed from the environment before any model code is imported
        auth = Auth.from_env(os.environ)
        tls = tls_context(os.environ)
    except (ValueError, OSError, ssl.SSLError) as exc:
        print(f"modeltui-serving: {exc}", file=sys.stderr, flush=True)
        return 2
    app = App(
        manifest,
        auth=auth,
        version=str(args.model_version),
        max_batch_size=args.max_batch_size,
        max_wait=args.max_wait_ms / 1000.0,
        feedback_inputs=args.feedback_inputs,
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    host, port = await app.server.start(args.admin_host, args.port)
    shown = f"[{host}]" if ":" in host else host
    public_shown = f"[{args.host}]" if ":" in args.host else args.host
    sys.stdout.write(f"LISTENING {shown}:{port}\n")
    sys.stdout.flush()
    load = asyncio.ensure_future(asyncio.to_thread(_load, model_dir, manifest))
    waiter = asyncio.ensure_future(stop.wait())
    await asyncio.wait({load, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if not load.done():
        await app.server.stop(0)
        return 0
    try:
        model, features = load.result()
    except LoadError as exc:
        print(f"modeltui-serving: cannot load the model: {exc}", file=sys.stderr, flush=True)
        await app.server.stop(0)
        return 3
    public = None
    if args.public_port is not None:
        try:
            public = bind_shared(args.host, args.public_port)
        except OSError as exc:
            print(f"modeltui-serving: cannot listen on port {args.public_port}: {exc.strerror or exc}", file=sys.stderr)
            await app.server.stop(0)
            return 4
    # No await between here and set_model: a connection queued on the shared port meets a ready model.
    app.set_model(model, features)
    if public is not None:
        await app.server.listen_shared(public, tls)
        sys.stdout.write(f"SERVING {public_shown}:{args.public_port}{' (TLS)' if tls else ''}\n")
        sys.stdout.flush()
    print(
        f"modeltui-serving: {app.version_label} ({model.flavor}: {model.detail}) ready on {shown}:{port}",
        file=sys.stderr,
        flush=True,
    )
    await waiter
    await app.server.stop(10.0)
    if app.batcher is not None:
        app.batcher.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    if args.switch_interval_ms > 0:
        # The event loop and the predict thread share the GIL: a short switch interval keeps either from
        # stalling the other for the default 5 ms.
        sys.setswitchinterval(args.switch_interval_ms / 1000.0)
    try:
        return asyncio.run(_serve(args))
    except ManifestError as exc:
        print(f"modeltui-serving: {exc}", file=sys.stderr, flush=True)
        return 2
    except OSError as exc:
        where = f"{args.admin_host}:{args.port}"
        print(f"modeltui-serving: cannot listen on {where}: {exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
