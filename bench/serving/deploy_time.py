"""Deploy-to-healthy through a running daemon: the time from a ``deployments.create`` request to its answer,
which comes once the new instance answers ``GET /health`` (issue 3's target: at most 1/5 of MLflow's
server start, which ``run.py`` measures in the same run).

    /work/main/.venv/bin/python bench/serving/deploy_time.py MODEL_DIR [--repeat 5]

Starts its own ``modeltuid`` in a temporary state directory (with the warm zygote, and once more with
``[deploy] zygote = false`` for the cold figure), pushes MODEL_DIR, deploys it ``--repeat`` times (undeploying
in between) and prints the median and best times. ``run.py`` imports :func:`measure`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))

from daemon.protocol import requests as q  # noqa: E402
from modeltui.cli.transfer import push_directory  # noqa: E402
from modeltui.client import connect  # noqa: E402


async def _deploys(socket_path: Path, model_dir: Path, repeat: int) -> list[float]:
    client = await connect(socket_path)
    async with client:
        pushed, _ = await push_directory(client, model_dir, name="bench-rf")
        ref = f"{pushed.version.model}:{pushed.version.number}"
        warm_up = await client.call(q.Deploy(ref=ref, name="bench-warm-up"))  # starts the zygote
        await client.call(q.Undeploy(name=warm_up.deployment.name))
        times = []
        for i in range(repeat):
            started = time.perf_counter()
            detail = await client.call(q.Deploy(ref=ref, name=f"bench-{i}"))
            times.append(time.perf_counter() - started)
            assert detail.deployment.health == "healthy", detail.deployment.message
            await client.call(q.Undeploy(name=f"bench-{i}"))
        return times


def measure(model_dir: Path, *, repeat: int = 5, zygote: bool = True) -> dict[str, Any]:
    """Median and best deploy-to-healthy seconds of ``model_dir`` on a fresh daemon."""
    with tempfile.TemporaryDirectory(prefix="modeltui-deploybench-") as tmp:
        base = Path(tmp)
        (base / "daemon.toml").write_text(f"[deploy]\nzygote = {'true' if zygote else 'false'}\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELTUI_")}
        env.update(
            MODELTUI_STATE_DIR=str(base / "state"),
            MODELTUI_SOCKET=str(base / "run" / "d.sock"),
            MODELTUI_CONFIG=str(base / "daemon.toml"),
        )
        daemon = subprocess.Popen(
            [sys.executable, "-m", "daemon", "run"],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while not (base / "run" / "d.sock").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            times = asyncio.run(_deploys(base / "run" / "d.sock", model_dir, repeat))
        finally:
            daemon.terminate()
            daemon.wait(30)
    return {"median_s": statistics.median(times), "best_s": min(times), "runs": times, "zygote": zygote}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    for zygote in (True, False):
        got = measure(args.model_dir, repeat=args.repeat, zygote=zygote)
        kind = "warm zygote" if zygote else "cold start "
        print(
            f"deploy-to-healthy ({kind}): median {got['median_s']:.3f} s, best {got['best_s']:.3f} s "
            f"over {args.repeat} deploys"
        )


if __name__ == "__main__":
    main()
