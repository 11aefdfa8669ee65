"""How long the Docker backend takes to make and publish an image of the breast-cancer example.

    /work/main/.venv/bin/python bench/serving/docker_times.py [--registry 127.0.0.1:5000]

Needs the services of ``scripts/services.sh`` (dockerd, the loopback registry, the base image). Prints, in
seconds: the wheelhouse from scratch (``pip wheel`` of scikit-learn, skops, numpy and their dependencies;
pip's own download cache may be warm), a cold ``docker build`` (no layer cache), a build of another version
with the same requirements (every layer but the model's is cached), reusing an existing tag, the first push
of the cold image (its new layers upload) and pushing it again (every layer already there). Everything it
builds is removed at the end (the registry keeps its blobs). Not a CI gate: figures vary with the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from daemon.deploy import image as img  # noqa: E402
from daemon.deploy.base import InstanceSpec  # noqa: E402
from daemon.deploy.docker import DockerBackend  # noqa: E402
from daemon.protocol.deploy import ContainerOptions  # noqa: E402
from daemon.settings import DockerSection  # noqa: E402

EXAMPLE = REPO / "examples" / "breast_cancer"


def _quiet(line: str) -> None:
    pass


async def main(registry: str, base_image: str) -> None:
    work = Path(tempfile.mkdtemp(prefix="modeltui-docker-bench-"))
    settings = DockerSection(base_image=base_image, registry=registry, wheelhouse=work / "wheelhouse")
    backend = DockerBackend(settings, state_dir=work / "state", owner=f"bench-{uuid.uuid4().hex[:8]}")
    tags: list[str] = []
    figures: dict[str, float] = {}
    try:
        await backend.ping()
        api = backend._api(long=True)

        t0 = time.perf_counter()
        reqs = img.read_requirements(EXAMPLE)
        wheels = await img.ensure_wheelhouse(backend.wheelhouse, reqs, _quiet)
        figures["wheelhouse (pip wheel, cold)"] = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in wheels.iterdir()) / 2**20
        print(f"wheelhouse: {len(list(wheels.glob('*.whl')))} wheels, {size:.0f} MiB")

        async def build(digest: str, *, nocache: bool) -> str:
            tag = img.image_tag(registry, "breast-cancer", 1, digest)
            ctx = work / f"ctx-{digest}"
            img.prepare_context(
                ctx, model_dir=EXAMPLE, wheels=wheels,
                dockerfile_text=img.dockerfile(base_image, {"modeltui.owner": backend.owner}),
            )  # fmt: skip
            tags.append(tag)
            await asyncio.to_thread(img.build_image, api, ctx, tag, _quiet, nocache=nocache)
            shutil.rmtree(ctx)
            return tag

        t0 = time.perf_counter()
        cold = await build(uuid.uuid4().hex, nocache=True)
        figures["docker build, cold (no layer cache)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        await build(uuid.uuid4().hex, nocache=False)
        figures["docker build, same requirements (layers cached)"] = time.perf_counter() - t0

        spec = InstanceSpec(
            deployment="bench", instance_id="x", model="breast-cancer", version=1, digest=cold.rsplit("-", 1)[1],
            model_dir=EXAMPLE, public_port=1, admin_port=1, env={}, options=ContainerOptions(), log_dir=work,
        )  # fmt: skip
        if registry:
            t0 = time.perf_counter()
            await asyncio.to_thread(img.push_image, api, cold, _quiet)
            figures["push, new layers"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            await asyncio.to_thread(img.push_image, api, cold, _quiet)
            figures["push again (layers present)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        await backend.ensure_image(spec, _quiet)
        figures["ensure_image on an existing tag (inspect + push)"] = time.perf_counter() - t0
        inspect = api.inspect_image(cold)
        print(f"image {cold}: {inspect['Size'] / 2**20:.0f} MiB")
    finally:
        for tag in tags:
            try:
                await asyncio.to_thread(backend._api().remove_image, tag, force=True)
            except Exception as exc:  # a bench cleans up what it can
                print(f"could not remove {tag}: {exc}", file=sys.stderr)
        await backend.close()
        shutil.rmtree(work, ignore_errors=True)
    width = max(map(len, figures))
    for what, seconds in figures.items():
        print(f"{what:<{width}}  {seconds:7.2f} s")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--registry", default="127.0.0.1:5000", help="push here ('' = no push)")
    ap.add_argument("--base-image", default="modeltui-base:bookworm")
    args = ap.parse_args()
    asyncio.run(main(args.registry, args.base_image))
