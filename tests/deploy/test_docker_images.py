"""The image policy: the images of versions no deployment uses go (``gc``, and after an undeploy or a
rollout), keeping the newest ``[docker] keep_images`` versions of each model. Unit tests of the choice, and
a real daemon with the real Docker Engine, checked with ``docker image ls``."""

from __future__ import annotations

import io
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from daemon.deploy import image as img
from tests.helpers.daemon import DaemonProcess, cli_json, deployment
from tests.helpers.docker_engine import REGISTRY, docker_daemon_running, python_model
from tests.helpers.endpoints import predictions
from tests.helpers.waiting import wait_for

# -- the choice (no engine) ----------------------------------------------------------------------------------


def built(model: str, version: int | None, created: int = 0, ref: str = "") -> img.BuiltImage:
    tag = ref or (f"r/modeltui/{model}:{version}-{'a' * 12}" if version is not None else f"sha256:{model}{created}")
    return img.BuiltImage(tag, f"id-{tag}", model, version, created)


def test_tag_version_reads_only_the_tags_image_tag_makes() -> None:
    assert img.tag_version(img.image_tag("127.0.0.1:5000", "Churn", 12, "AB" * 32)) == 12
    assert img.tag_version(img.image_tag("", "churn", 3, "ab" * 32)) == 3
    for other in ("r/modeltui/churn:latest", "r/modeltui/churn:3", "r/modeltui/churn:3-abc", "churn", "x:y-z"):
        assert img.tag_version(other) is None, other


def test_the_newest_versions_and_the_used_ones_stay_per_model() -> None:
    images = [built("churn", v) for v in (1, 2, 3, 4, 5)] + [built("fraud", v) for v in (1, 2)]
    doomed = img.images_to_remove(images, keep=2, in_use={("churn", 1), ("fraud", 1)})
    assert [(i.model, i.version) for i in doomed] == [("churn", 2), ("churn", 3)]
    assert [i.version for i in img.images_to_remove(images, keep=0, in_use=set()) if i.model == "fraud"] == [1, 2]
    assert img.images_to_remove(images, keep=5, in_use=set()) == []


def test_an_untagged_image_of_ours_goes_and_foreign_tags_are_left_alone() -> None:
    listing = [
        {"Id": "sha256:a", "Labels": {"modeltui.model": "churn"}, "RepoTags": ["r/modeltui/churn:1-aaaaaaaaaaaa",
                                                                            "mine/churn:prod"], "Created": 1},
        {"Id": "sha256:b", "Labels": {"modeltui.model": "churn"}, "RepoTags": ["<none>:<none>"], "Created": 2},
        {"Id": "sha256:c", "Labels": {}, "RepoTags": ["r/modeltui/churn:2-aaaaaaaaaaaa"], "Created": 3},
    ]  # fmt: skip
    images = list(img.built_images(listing))
    assert [(i.ref, i.version) for i in images] == [("r/modeltui/churn:1-aaaaaaaaaaaa", 1), ("sha256:b", None)]
    assert [i.ref for i in img.images_to_remove(images, keep=1, in_use=set())] == ["sha256:b"]


# -- a real daemon, the real engine --------------------------------------------------------------------------


def image_ls(engine: docker.DockerClient, name: str) -> set[str]:
    """``docker image ls`` of the model's repository, as the operator would run it."""
    done = subprocess.run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}",
                           img.image_repository(REGISTRY, name)], capture_output=True, text=True, timeout=60,
                          check=True)  # fmt: skip
    return set(done.stdout.split())


def relabel(engine: docker.DockerClient, base: str, tag: str, labels: dict[str, str]) -> None:
    """An image as the daemon builds it for another version (its labels and tag), made from ``base`` with a
    LABEL-only build instead of a full build per version: the policy reads only labels and tags."""
    dockerfile = f"FROM {base}\n" + "".join(f'LABEL "{k}"="{v}"\n' for k, v in labels.items())
    engine.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, pull=False)


@pytest.fixture
def docker_daemon(daemon_factory: Any, wheelhouse: Path) -> Iterator[tuple[DaemonProcess, docker.DockerClient]]:
    config = f'[docker]\nkeep_images = 2\nwheelhouse = "{wheelhouse}"\n\n[exporter]\nenabled = false\n'
    with docker_daemon_running(daemon_factory, config, extra_owners=("another-daemon",)) as running:
        yield running


def test_gc_and_undeploy_remove_unused_images_keeping_the_newest_per_model(
    docker_daemon: tuple[DaemonProcess, docker.DockerClient], tmp_path: Path
) -> None:
    d, engine = docker_daemon
    name = f"im{uuid.uuid4().hex[:8]}"
    for n in (1, 2, 3, 4):
        model = python_model(tmp_path / f"v{n}", name=name)
        (model / "predict.py").write_text(f"def predict(X):\n    return [{n} * float(row[0]) for row in X]\n")
        assert d.cli("push", str(model)).returncode == 0
    res = d.cli("deploy", f"{name}:1", "--backend", "docker", "--name", "svc", timeout=300)
    assert res.returncode == 0, res.stderr
    dep = deployment(d, "svc")
    assert predictions(dep["endpoint"], [2.0]) == [2.0]
    v1 = dep["image"]
    # Versions 2-4 were deployed once and undeployed (their images, as the daemon builds them), and another
    # daemon on this engine has an old image of a model of the same name.
    tags = {1: v1}
    for n in (2, 3, 4):
        digest = cli_json(d, "show", f"{name}:{n}")["version"]["digest"]
        tags[n] = img.image_tag(REGISTRY, name, n, digest)
        relabel(engine, v1, tags[n], {"modeltui.version": str(n), "modeltui.digest": digest})
    foreign = f"{img.image_repository(REGISTRY, name)}:1-{'f' * 12}"
    relabel(engine, v1, foreign, {"modeltui.owner": "another-daemon"})
    assert image_ls(engine, name) == {*tags.values(), foreign}

    # keep_images = 2: versions 4 and 3 stay, 1 is deployed; 2 goes. A dry run only says so.
    dry = cli_json(d, "gc", "--dry-run")
    assert dry["images_removed"] == [tags[2]]
    assert image_ls(engine, name) == {*tags.values(), foreign}
    done = cli_json(d, "gc")
    assert done["images_removed"] == [tags[2]]
    assert image_ls(engine, name) == {tags[1], tags[3], tags[4], foreign}
    assert predictions(dep["endpoint"], [2.0]) == [2.0]  # the deployed one serves on
    text = d.cli("gc")
    assert "0 images" in text.stdout, text.stdout

    # Undeploy: nothing uses version 1 any more and it is not among the newest two: it goes on its own.
    assert d.cli("undeploy", "svc").returncode == 0
    wait_for(lambda: image_ls(engine, name) == {tags[3], tags[4], foreign}, "version 1's image removed", 30)
    assert "image policy (keep 2 per model): removed" in (d.state_dir / "daemon.log").read_text()


def test_gc_without_an_engine_collects_files_and_says_why_images_were_not_checked(
    daemon_factory: Any, tmp_path: Path
) -> None:
    d: DaemonProcess = daemon_factory()
    silent = tmp_path / "silent.sock"  # an engine socket nobody answers on
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(silent))
        server.listen(8)
        Path(d.env["MODELTUI_CONFIG"]).write_text(f'[docker]\nhost = "unix://{silent}"\ntimeout_seconds = 1\n')
        d.start()
        done = cli_json(d, "gc")
        assert done["images_removed"] == []
        assert done["images_note"].startswith("images not checked: the Docker engine at"), done
        assert "images not checked" in d.cli("gc").stdout
    d.stop()
    # No engine on this host at all (no socket): nothing to say about Docker.
    Path(d.env["MODELTUI_CONFIG"]).write_text(f'[docker]\nhost = "unix://{tmp_path}/no-docker.sock"\n')
    d.start()
    done = cli_json(d, "gc")
    assert (done["images_removed"], done["images_note"]) == ([], "")
