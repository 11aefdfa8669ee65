"""The MLflow half of bench/registry: runs INSIDE bench/registry/.venv-mlflow (see setup_mlflow.sh).

    .venv-mlflow/bin/python mlflow_side.py --workdir DIR [--versions 1000] [--repeat 50]

Uses MLflow's model registry on SQLite through ``MlflowClient`` in process (no tracking server, no
network): one registered model, N x ``create_model_version`` with a local ``file://`` source, an alias, then
``repeat`` x ``search_model_versions`` (all N versions) and ``repeat`` x ``get_model_version_by_alias``.
Prints one JSON object on stdout; everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path

from timing import summary  # this directory is on sys.path: the script is run directly


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--versions", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--name", default="bench-model")
    args = ap.parse_args()

    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow
    from mlflow import MlflowClient

    work: Path = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    db = f"sqlite:///{work / 'mlflow.db'}"
    t0 = time.perf_counter()
    client = MlflowClient(tracking_uri=db, registry_uri=db)
    client.create_registered_model(args.name)  # first call also creates the schema (alembic)
    setup_s = time.perf_counter() - t0

    # One tiny model directory per version, differing by one byte, like the modeltui side. MLflow only
    # records the source URI (it copies nothing): that is what create_model_version does.
    sources = work / "sources"
    uris = []
    for i in range(args.versions):
        d = sources / f"v{i:05d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "model.bin").write_bytes(b"weights-%d" % i)
        uris.append(d.as_uri())

    create: list[float] = []
    t_all = time.perf_counter()
    for uri in uris:
        t = time.perf_counter()
        client.create_model_version(args.name, source=uri)
        create.append(time.perf_counter() - t)
    create_total = time.perf_counter() - t_all
    client.set_registered_model_alias(args.name, "production", str(args.versions // 2))

    search: list[float] = []
    found = 0
    client.search_model_versions(f"name='{args.name}'", max_results=max(1000, args.versions))  # warm-up
    for _ in range(args.repeat):
        t = time.perf_counter()
        page = client.search_model_versions(f"name='{args.name}'", max_results=max(1000, args.versions))
        search.append(time.perf_counter() - t)
        found = len(page)

    alias: list[float] = []
    resolved = None
    client.get_model_version_by_alias(args.name, "production")  # warm-up
    for _ in range(args.repeat):
        t = time.perf_counter()
        mv = client.get_model_version_by_alias(args.name, "production")
        alias.append(time.perf_counter() - t)
        resolved = int(mv.version)

    out = {
        "mlflow_version": mlflow.__version__,
        "setup_s": setup_s,
        "register": {"total_s": create_total, "rate_per_s": args.versions / create_total, **summary(create)},
        "list": {**summary(search), "items": found},
        "alias": {**summary(alias), "version": resolved},
    }
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
