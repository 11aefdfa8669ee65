"""The CLI as a subprocess against a real daemon over its socket: what a user or a script sees."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import DaemonProcess
from tests.helpers.models import make_model_dir

pytestmark = pytest.mark.integration


def cli_json(daemon: DaemonProcess, *args: str) -> Any:
    res = daemon.cli(*args, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)  # exactly one JSON document on stdout


@pytest.fixture(scope="module")
def daemon(module_daemon: DaemonProcess) -> DaemonProcess:
    """One daemon for the module: each test is refused, reads, or pushes a model name no other test uses. The
    two that list every model or count what gc removes start their own from ``daemon_factory``."""
    return module_daemon


def test_version_control_end_to_end(daemon_factory: Any, tmp_path: Path) -> None:
    daemon: DaemonProcess = daemon_factory().start()  # it lists every model
    v1 = make_model_dir(tmp_path / "v1", "churn", weights=b"\x00weights-1" * 1000,
                        extra={"sub/dir/vocab.txt": b"a\nb\n", "run.sh": b"#!/bin/sh\n"})
    os.chmod(v1 / "run.sh", 0o755)
    pushed = cli_json(daemon, "push", str(v1), "-m", "first", "--tag", "team=risk", "--alias", "production")
    assert pushed["created"] is True
    assert pushed["version"]["number"] == 1
    assert pushed["version"]["tags"] == {"team": "risk"}
    assert pushed["version"]["created_by"]  # from the socket's peer credentials
    assert pushed["bytes_copied"] == sum(p.stat().st_size for p in v1.rglob("*") if p.is_file())

    v2 = make_model_dir(tmp_path / "v2", "churn", weights=b"\x00weights-2" * 1000, params="C = 0.5",
                        metrics="accuracy = 0.93", extra={"sub/dir/vocab.txt": b"a\nb\n"})
    pushed2 = cli_json(daemon, "push", str(v2), "-m", "second")
    assert pushed2["version"]["number"] == 2
    assert pushed2["version"]["parent"] == 1

    again = cli_json(daemon, "push", str(v2))
    assert again["created"] is False
    assert again["version"]["number"] == 2
    assert again["bytes_copied"] == 0  # unchanged content copies nothing

    models = cli_json(daemon, "ls")
    assert [m["name"] for m in models["items"]] == ["churn"]
    assert models["items"][0]["aliases"] == {"production": 1}

    log = cli_json(daemon, "log", "churn")
    assert [v["number"] for v in log["items"]] == [2, 1]

    shown = cli_json(daemon, "show", "churn@production")
    assert shown["version"]["number"] == 1
    assert shown["params"] == {"C": 1.0}
    assert {f["path"] for f in shown["files"]} == {"modeltui.toml", "model.skops", "sub/dir/vocab.txt", "run.sh"}
    assert shown["children"] == [2]
    assert cli_json(daemon, "show", "churn")["version"]["number"] == 2  # bare name = latest

    d = cli_json(daemon, "diff", "churn:1", "churn:2")
    status = {f["path"]: f["status"] for f in d["files"]}
    assert status == {"model.skops": "changed", "modeltui.toml": "changed", "run.sh": "removed"}
    assert d["unchanged_files"] == 1
    assert d["params"] == [{"key": "C", "a": 1.0, "b": 0.5}]
    assert d["metrics"][0]["key"] == "accuracy"
    assert d["metrics"][0]["delta"] == pytest.approx(0.03)

    human = daemon.cli("diff", "churn:1", "churn:2")
    assert human.returncode == 0
    assert "run.sh" in human.stdout
    assert "+0.03" in human.stdout

    out = tmp_path / "checkout"
    res = daemon.cli("checkout", "churn:1", str(out))
    assert res.returncode == 0, res.stderr
    for f in v1.rglob("*"):
        if f.is_file():
            assert (out / f.relative_to(v1)).read_bytes() == f.read_bytes()
    assert os.access(out / "run.sh", os.X_OK)
    assert daemon.cli("checkout", "churn:1", str(out)).returncode == 5  # non-empty dir needs --force


def test_aliases_history_at_time_and_rollback(daemon: DaemonProcess, tmp_path: Path) -> None:
    for i in (1, 2, 3):
        make_model_dir(tmp_path / f"v{i}", "fraud", weights=f"w{i}".encode())
        assert daemon.cli("push", str(tmp_path / f"v{i}")).returncode == 0
    cli_json(daemon, "alias", "set", "fraud", "production", "1", "--reason", "first release")
    time.sleep(0.05)
    between = datetime.now(UTC)
    time.sleep(0.05)
    moved = cli_json(daemon, "alias", "set", "fraud", "production", "3", "--reason", "better f1")
    assert (moved["from_version"], moved["to_version"]) == (1, 3)

    back = cli_json(daemon, "rollback", "fraud", "production", "--reason", "latency regression")
    assert (back["from_version"], back["to_version"]) == (3, 1)
    assert cli_json(daemon, "show", "fraud@production")["version"]["number"] == 1

    hist = cli_json(daemon, "alias", "history", "fraud", "--at", between.isoformat())
    assert hist["targets_at"] == {"production": 1}
    assert [e["reason"] for e in hist["events"]] == ["latency regression", "better f1", "first release"]
    assert all(e["by"] for e in hist["events"])

    cli_json(daemon, "alias", "rm", "fraud", "production", "--reason", "retired")
    res = daemon.cli("show", "fraud@production")
    assert res.returncode == 3
    assert "production" in res.stderr


def test_tag_describe_rm_gc(daemon_factory: Any, tmp_path: Path) -> None:
    daemon: DaemonProcess = daemon_factory().start()  # it counts what gc removes
    make_model_dir(tmp_path / "a", "m", weights=b"A" * 5000)
    make_model_dir(tmp_path / "b", "m", weights=b"B" * 7000)
    cli_json(daemon, "push", str(tmp_path / "a"), "--alias", "staging")
    cli_json(daemon, "push", str(tmp_path / "b"))
    tagged = cli_json(daemon, "tag", "m:1", "stage=canary", "owner=ops")
    assert tagged["tags"] == {"stage": "canary", "owner": "ops"}
    assert cli_json(daemon, "tag", "m:1", "--rm", "owner")["tags"] == {"stage": "canary"}
    described = cli_json(daemon, "describe", "m", "credit risk model")
    assert described["model"]["description"] == "credit risk model"

    res = daemon.cli("rm", "m:1")
    assert res.returncode == 5  # an alias holds it
    assert "staging" in res.stderr
    removed = cli_json(daemon, "rm", "m:2")
    assert removed["removed_versions"] == [2]
    dry = cli_json(daemon, "gc", "--grace", "0", "--dry-run")
    assert dry["objects_removed"] == 1
    assert dry["bytes_removed"] == 7000
    done = cli_json(daemon, "gc", "--grace", "0")
    assert done["objects_removed"] == 1
    assert cli_json(daemon, "show", "m:1")["version"]["number"] == 1  # still whole
    out = tmp_path / "co"
    assert daemon.cli("checkout", "m:1", str(out)).returncode == 0
    assert (out / "model.skops").read_bytes() == b"A" * 5000

    make_model_dir(tmp_path / "c", "m", weights=b"C")
    assert cli_json(daemon, "push", str(tmp_path / "c"))["version"]["number"] == 3  # numbers are never reused


def test_git_commit_is_recorded(daemon: DaemonProcess, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    make_model_dir(repo / "model", "gitmodel")
    env = {**daemon.env, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    for cmd in (["init", "-q"], ["add", "."], ["commit", "-qm", "x"]):
        subprocess.run(["git", "-C", str(repo), *cmd], check=True, env=env)
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    cli_json(daemon, "push", str(repo / "model"))
    source = cli_json(daemon, "show", "gitmodel")["source"]
    assert source["git_commit"] == head
    assert source["git_dirty"] is False


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("show", "nope"), 3, "nope"),
        (("show", "../etc"), 2, "invalid model name"),
        (("log", "a\x1b[31m"), 4, "invalid"),
        (("alias", "set", "x", "Prod", "1"), 4, "alias"),
        (("push", "/nonexistent-dir"), 4, "not a directory"),
        (("tag", "m:1", "novalue"), 2, "key=value"),
        (("alias", "history", "m", "--at", "yesterday"), 2, "ISO 8601"),
    ],
)
def test_errors_have_messages_and_exit_codes(daemon: DaemonProcess, args: tuple[str, ...], code: int,
                                             words: str) -> None:
    res = daemon.cli(*args)
    assert res.returncode == code, (res.stdout, res.stderr)
    assert words in res.stderr
    assert res.stdout == ""


def test_json_errors_keep_stdout_clean(daemon: DaemonProcess) -> None:
    res = daemon.cli("show", "missing", "--json")
    assert res.returncode == 3
    assert res.stdout == ""
    assert "missing" in res.stderr


def test_init_writes_a_manifest_that_pushes(daemon: DaemonProcess, tmp_path: Path) -> None:
    d = tmp_path / "fresh"
    d.mkdir()
    (d / "model.skops").write_bytes(b"m")
    (d / "data.csv").write_text("age,income,label\n31,1000.5,1\n45,2000.0,0\n")
    res = daemon.cli("init", str(d), "--data", "data.csv", "--target", "label")
    assert res.returncode == 0, res.stderr
    assert daemon.cli("init", str(d)).returncode == 5  # refuses to overwrite
    shown = cli_json(daemon, "push", str(d))
    assert shown["version"]["model"] == "fresh"
    sig = cli_json(daemon, "show", "fresh")["signature"]
    assert sig["inputs"] == [{"name": "age", "type": "long"}, {"name": "income", "type": "double"}]


def test_no_daemon_and_no_start_is_unavailable(tmp_path: Path) -> None:
    from tests.helpers.daemon import daemon_env

    env = daemon_env(tmp_path)
    res = subprocess.run([sys.executable, "-m", "modeltui", "--no-start", "ls"], env=env, capture_output=True,
                         text=True, check=False, timeout=60)
    assert res.returncode == 7
    assert "no daemon" in res.stderr


def test_missing_model_file_is_reported_before_upload(daemon: DaemonProcess, tmp_path: Path) -> None:
    d = make_model_dir(tmp_path / "m", "nofile")
    (d / "model.skops").unlink()
    res = daemon.cli("push", str(d))
    assert res.returncode == 4
    assert "model_file 'model.skops'" in res.stderr
    assert not [p for p in (daemon.state_dir / "objects").rglob("*") if p.is_file()]  # nothing was uploaded


def test_checkout_never_writes_through_a_planted_symlink(daemon: DaemonProcess, tmp_path: Path) -> None:
    make_model_dir(tmp_path / "m", "safe", weights=b"model bytes")
    assert daemon.cli("push", str(tmp_path / "m")).returncode == 0
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "model.skops").symlink_to(outside)
    res = daemon.cli("checkout", "--force", "safe:1", str(dest))
    assert res.returncode == 0, res.stderr
    assert outside.read_text() == "keep me"
    assert not (dest / "model.skops").is_symlink()
    assert (dest / "model.skops").read_bytes() == b"model bytes"
    assert not list(dest.glob(".*modeltui-tmp"))


def test_local_file_errors_are_messages_not_tracebacks(daemon: DaemonProcess, tmp_path: Path) -> None:
    d = make_model_dir(tmp_path / "m", "unreadable")
    make_model_dir(tmp_path / "ok", "fine")
    assert daemon.cli("push", str(tmp_path / "ok")).returncode == 0
    res = daemon.cli("checkout", "fine:1", "/proc/self/nope")
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert "modeltui: error:" in res.stderr
    assert d.exists()


def test_checkout_refuses_a_symlinked_directory_leading_outside(daemon: DaemonProcess, tmp_path: Path) -> None:
    make_model_dir(tmp_path / "m", "nested", extra={"sub/deeper/data.bin": b"d"})
    assert daemon.cli("push", str(tmp_path / "m")).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "sub").symlink_to(elsewhere)
    res = daemon.cli("checkout", "--force", "nested:1", str(dest))
    assert res.returncode == 4
    assert "outside" in res.stderr
    assert not list(elsewhere.iterdir())


def test_checkout_of_many_files_is_paged(daemon: DaemonProcess, tmp_path: Path) -> None:
    extra = {f"shards/{i:04d}.bin": f"shard {i}".encode() for i in range(1100)}  # over a 1,024 fd limit
    src = make_model_dir(tmp_path / "m", "many", extra=extra)
    assert daemon.cli("push", str(src)).returncode == 0
    out = tmp_path / "out"
    res = daemon.cli("checkout", "many:1", str(out), "--json")
    assert res.returncode == 0, res.stderr
    assert len(json.loads(res.stdout)["files"]) == 1102
    for rel, data in extra.items():
        assert (out / rel).read_bytes() == data


def test_python_model_with_an_entry_point_pushes(daemon: DaemonProcess, tmp_path: Path) -> None:
    d = tmp_path / "py"
    d.mkdir()
    (d / "modeltui.toml").write_text('name = "rules"\nflavor = "python"\nmodel_file = "predict.py:predict"\n')
    (d / "predict.py").write_text("def predict(X):\n    return [0 for _ in X]\n")
    shown = cli_json(daemon, "push", str(d))
    assert shown["version"]["flavor"] == "python"
    (d / "predict.py").rename(d / "other.py")
    res = daemon.cli("push", str(d))
    assert res.returncode == 4
    assert "predict.py" in res.stderr
