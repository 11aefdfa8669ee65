"""The process backend end to end: a real daemon, real serving processes on 127.0.0.1, the real CLI."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import DaemonProcess, cli_json, deployment
from tests.helpers.endpoints import post, predictions
from tests.helpers.models import python_model
from tests.helpers.waiting import wait_for


@pytest.fixture
def dbl(daemon: DaemonProcess, tmp_path: Path) -> tuple[DaemonProcess, Path]:
    """A daemon with model ``dbl`` version 1 (2x) at alias production."""
    model = python_model(tmp_path / "dbl")
    assert daemon.cli("push", str(model), "--alias", "production").returncode == 0
    return daemon, model


@pytest.fixture(scope="module")
def dbl_refusing(module_daemon: DaemonProcess, tmp_path_factory: pytest.TempPathFactory) -> DaemonProcess:
    """One daemon with ``dbl`` version 1 at production for every hostile request: each is refused, so none
    leaves anything the next could see (each checks that nothing runs)."""
    model = python_model(tmp_path_factory.mktemp("model") / "dbl")
    assert module_daemon.cli("push", str(model), "--alias", "production").returncode == 0
    return module_daemon


def test_example_deploy_predict_feedback_undeploy(daemon: DaemonProcess, example_dir: Path, tmp_path: Path) -> None:
    assert daemon.cli("push", str(example_dir), "--alias", "production").returncode == 0
    out = cli_json(daemon, "deploy", "breast-cancer@production")
    dep = out["deployment"]
    assert dep["state"] == "running"
    assert dep["health"] == "healthy"
    assert dep["version"] == 1
    endpoint = dep["endpoint"]
    rows = [line.split(",") for line in (example_dir / "eval.csv").read_text().splitlines()]
    header, data = rows[0], rows[1:6]
    features = [c for c in header if c != "target"]
    split = {"columns": features, "data": [[float(v) for c, v in zip(header, r, strict=True) if c != "target"]
                                           for r in data]}
    # The CLI's predict finds the deployment by its ref and posts the file to it.
    (tmp_path / "in.json").write_text(json.dumps({"inputs": split["data"]}))
    res = daemon.cli("predict", "breast-cancer@production", "--input", str(tmp_path / "in.json"), "--json")
    assert res.returncode == 0, res.stderr
    via_cli = json.loads(res.stdout)
    # An MLflow scoring client's request (dataframe_split, as MLflow documents it) gets the same answers.
    status, mlflow = post(endpoint + "/invocations", {"dataframe_split": split})
    assert status == 200
    assert mlflow["predictions"] == via_cli["predictions"]
    labels = [int(r[header.index("target")]) for r in data]
    status, fb = post(endpoint + "/feedback", {"items": [{"id": i, "label": lab}
                                                          for i, lab in zip(via_cli["ids"], labels, strict=True)]})
    assert status == 200
    assert fb["matched"] == len(labels)
    pids = daemon.serving_pids("breast-cancer-production")
    assert len(pids) == 1
    assert cli_json(daemon, "undeploy", "breast-cancer-production")["deployment"]["state"] == "stopped"
    assert cli_json(daemon, "ps")["items"] == []
    wait_for(lambda: not daemon.serving_pids(), "the serving process to exit")
    with pytest.raises(urllib.error.URLError, match="refused"):  # nothing listens any more
        urllib.request.urlopen(endpoint + "/health", timeout=2)


def test_killed_serving_process_is_restarted(dbl: tuple[DaemonProcess, Path]) -> None:
    d, _ = dbl
    dep = cli_json(d, "deploy", "dbl:1", "--name", "pinned")["deployment"]
    assert dep["ref"] == "dbl:1"
    (pid,) = d.serving_pids("pinned")
    os.kill(pid, signal.SIGKILL)
    again = wait_for(lambda: (x := deployment(d, "pinned"))["restarts"] == 1 and x["state"] == "running" and x,
                     "a restart")
    events = cli_json(d, "ps", "pinned", "--events", "5")["events"]
    assert "killed by signal 9" in " ".join(e["message"] for e in events)
    (new_pid,) = d.serving_pids("pinned")
    assert new_pid != pid
    assert again["endpoint"] == dep["endpoint"]  # the public port stays the deployment's
    assert predictions(again["endpoint"], [1.0]) == [2.0]


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_daemon_restart_adopts_instead_of_duplicating(dbl: tuple[DaemonProcess, Path], how: int) -> None:
    d, _ = dbl
    dep = cli_json(d, "deploy", "dbl@production")["deployment"]
    (pid,) = d.serving_pids()
    d.stop(how)
    assert predictions(dep["endpoint"], [3.0]) == [6.0]  # serving goes on without a daemon
    d.start()
    adopted = wait_for(lambda: (x := deployment(d, "dbl-production"))["health"] == "healthy" and x, "adoption")
    assert d.serving_pids() == [pid]
    assert adopted["restarts"] == 0
    assert adopted["instance"]["key"].startswith(f"{pid}:")
    assert predictions(dep["endpoint"], [3.0]) == [6.0]


def test_instance_that_died_while_the_daemon_was_down_is_started_again(dbl: tuple[DaemonProcess, Path]) -> None:
    d, _ = dbl
    cli_json(d, "deploy", "dbl@production")
    (pid,) = d.serving_pids()
    d.stop(signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not d.serving_pids(), "the instance to die")
    d.start()
    dep = wait_for(lambda: (x := deployment(d, "dbl-production"))["state"] == "running" and x, "the restart")
    assert len(d.serving_pids()) == 1
    assert dep["restarts"] == 1
    assert predictions(dep["endpoint"], [1.0]) == [2.0]


def test_alias_move_rolls_out_and_rollback_rolls_back(dbl: tuple[DaemonProcess, Path], tmp_path: Path) -> None:
    d, _ = dbl
    endpoint = cli_json(d, "deploy", "dbl@production")["deployment"]["endpoint"]
    assert d.cli("push", str(python_model(tmp_path / "v2", factor=3.0)), "--alias", "production").returncode == 0
    wait_for(lambda: deployment(d, "dbl-production")["version"] == 2, "the rollout of version 2")
    assert predictions(endpoint, [1.0]) == [3.0]
    wait_for(lambda: len(d.serving_pids()) == 1, "the old instance to stop")
    res = d.cli("rollback", "dbl-production")
    assert res.returncode == 0, res.stderr
    assert "rolled out version 1" in res.stdout
    assert predictions(endpoint, [1.0]) == [2.0]
    assert deployment(d, "dbl-production")["version"] == 1


def test_rollout_to_a_broken_version_keeps_the_old_one_serving(dbl: tuple[DaemonProcess, Path], tmp_path: Path) -> None:
    d, _ = dbl
    endpoint = cli_json(d, "deploy", "dbl@production")["deployment"]["endpoint"]
    broken = python_model(tmp_path / "v2", factor=5.0, extra="raise RuntimeError('weights file is corrupt')")
    assert d.cli("push", str(broken), "--alias", "production").returncode == 0
    dep = wait_for(lambda: "failed" in (x := deployment(d, "dbl-production"))["message"] and x, "the failed rollout")
    assert "rollout to version 2 failed" in dep["message"]
    assert "weights file is corrupt" in dep["message"]
    assert "version 1 keeps serving" in dep["message"]
    assert dep["version"] == 1
    assert dep["state"] == "running"
    assert dep["rollout_to"] is None
    assert predictions(endpoint, [1.0]) == [2.0]
    assert len(d.serving_pids()) == 1  # the broken one was stopped


def test_deploy_of_a_model_that_cannot_load_fails_clearly_and_leaves_nothing(daemon: DaemonProcess,
                                                                           tmp_path: Path) -> None:
    bad = python_model(tmp_path / "bad", extra="raise ImportError('no module named secret_sauce')", name="bad")
    assert daemon.cli("push", str(bad)).returncode == 0
    res = daemon.cli("deploy", "bad:1")
    assert res.returncode == 5
    assert "secret_sauce" in res.stderr
    assert "was removed" in res.stderr
    assert cli_json(daemon, "ps")["items"] == []
    assert daemon.serving_pids() == []


def test_crash_loop_is_detected_and_reported(daemon_factory: Any, tmp_path: Path) -> None:
    d: DaemonProcess = daemon_factory()
    Path(d.env["MODELTUI_CONFIG"]).write_text(
        "[deploy]\ncrashloop_restarts = 3\nrestart_backoff_max_seconds = 1.0\n"
    )
    d.start()
    # Healthy at first, then it dies half a second later: every time.
    dying = "threading.Timer(0.5, lambda: (print('out of memory', flush=True), os._exit(1))).start()"
    assert d.cli("push", str(python_model(tmp_path / "m", extra=dying))).returncode == 0
    cli_json(d, "deploy", "dbl:1")
    dep = wait_for(lambda: (x := deployment(d, "dbl"))["state"] == "crashloop" and x, "a crash loop", timeout=40)
    assert "crash loop" in dep["message"]
    assert "out of memory" in dep["message"]
    assert dep["restarts"] >= 2


def test_logs_tail_and_follow(dbl: tuple[DaemonProcess, Path]) -> None:
    d, _ = dbl
    endpoint = cli_json(d, "deploy", "dbl@production")["deployment"]["endpoint"]
    predictions(endpoint, [1.0, 2.0])
    lines = wait_for(lambda: "predicting 2 rows" in (out := d.cli("logs", "dbl-production", "-n", "50").stdout) and out,
                     "the log line")
    assert "ready on" in lines
    follower = subprocess.Popen([sys.executable, "-m", "modeltui", "logs", "dbl-production", "-n", "0", "-f"],
                                env=d.env, stdout=subprocess.PIPE, text=True)
    lines_seen: queue.Queue[str] = queue.Queue()
    assert follower.stdout is not None
    threading.Thread(target=lambda: [lines_seen.put(x) for x in follower.stdout or ()], daemon=True).start()
    try:
        # Until the follower has subscribed, a line can be missed: ask again until one arrives (under load the
        # subscription takes longer than any fixed sleep).
        deadline = time.monotonic() + 60
        got = ""
        while "predicting 7 rows" not in got:
            assert time.monotonic() < deadline, "the followed log showed no new line"
            predictions(endpoint, [1.0] * 7)
            with contextlib.suppress(queue.Empty):
                got = lines_seen.get(timeout=1.0)
    finally:
        follower.terminate()
        follower.wait(10)
        assert follower.stdout is not None
        follower.stdout.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "A=1\nB=2"], "control character"),
        (["--env", "LD_PRELOAD=/tmp/x.so"], "reserved"),
        (["--env", "1BAD=x"], "invalid environment variable name"),
        (["--port", "80"], "1024"),
        (["--name", "../../etc"], "invalid deployment name"),
    ],
)
def test_bad_deploy_input_is_refused(dbl_refusing: DaemonProcess, args: list[str], message: str) -> None:
    d = dbl_refusing
    res = d.cli("deploy", "dbl:1", *args)
    assert res.returncode in (2, 4), res.stderr
    assert message in res.stderr
    assert d.serving_pids() == []


def test_deployed_version_cannot_be_removed(dbl: tuple[DaemonProcess, Path]) -> None:
    d, _ = dbl
    cli_json(d, "deploy", "dbl:1")
    res = d.cli("rm", "dbl:1", "--force")
    assert res.returncode == 5
    assert "deployed" in res.stderr
    res = d.cli("rm", "dbl", "--model", "--force")
    assert res.returncode == 5
    assert "undeploy it first" in res.stderr


def test_second_deployment_on_a_taken_port_is_refused(dbl: tuple[DaemonProcess, Path]) -> None:
    d, _ = dbl
    port = cli_json(d, "deploy", "dbl:1", "--name", "a")["deployment"]["port"]
    res = d.cli("deploy", "dbl:1", "--name", "b", "--port", str(port))
    assert res.returncode == 5
    assert f"port {port}" in res.stderr


def test_deployments_fork_from_the_warm_zygote_unless_they_set_an_environment(dbl: tuple[DaemonProcess, Path]) -> None:
    d, _ = dbl
    records = d.state_dir / "deploy" / "instances"
    assert not (d.state_dir / "deploy" / "zygote.log").exists()  # no deployment yet: no zygote either
    cli_json(d, "deploy", "dbl:1", "--name", "first")  # starts the zygote (this one may still start cold)
    wait_for(lambda: "serving zygote" in (d.state_dir / "daemon.log").read_text(), "the zygote to be ready")
    dep = cli_json(d, "deploy", "dbl:1", "--name", "warm")["deployment"]
    assert (records / f"{dep['instance']['id']}.json").exists()  # forked: its command line is the zygote's
    (pid,) = d.serving_pids("warm")
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "warm"
    cold = cli_json(d, "deploy", "dbl:1", "--name", "cold", "--env", "OMP_NUM_THREADS=1")["deployment"]
    assert not (records / f"{cold['instance']['id']}.json").exists()
    (cold_pid,) = d.serving_pids("cold")
    assert b"OMP_NUM_THREADS=1" in Path(f"/proc/{cold_pid}/environ").read_bytes()
    logged = d.cli("logs", "warm").stdout + d.cli("logs", "cold").stdout
    assert "forked from the zygote" in logged
    assert "cold start" in logged
    for endpoint in (dep["endpoint"], cold["endpoint"]):
        assert predictions(endpoint, [4.0]) == [8.0]


def test_without_the_zygote_deployments_start_cold(daemon_factory: Any, tmp_path: Path) -> None:
    d: DaemonProcess = daemon_factory()
    Path(d.env["MODELTUI_CONFIG"]).write_text("[deploy]\nzygote = false\n")
    d.start()
    assert d.cli("push", str(python_model(tmp_path / "m"))).returncode == 0
    dep = cli_json(d, "deploy", "dbl:1")["deployment"]
    assert predictions(dep["endpoint"], [1.0]) == [2.0]
    assert "cold start" in d.cli("logs", "dbl").stdout
    assert not list((d.state_dir / "deploy" / "instances").glob("*.json"))


def test_log_rotation_keeps_the_newest_lines_and_a_bounded_number_of_files(tmp_path: Path) -> None:
    from daemon.deploy.process import ProcessBackend
    from daemon.settings import DeploySection

    backend = ProcessBackend(DeploySection(log_max_mb=1, log_files=2), owner="x", log_root=tmp_path,
                             records=tmp_path / "records")
    log = backend.log_path("dep")
    log.parent.mkdir()
    with open(log, "ab") as writer:  # the serving process's O_APPEND descriptor stays open across rotations
        for round_ in range(4):
            writer.write(b"".join(b"round %d line %06d\n" % (round_, i) for i in range(70_000)))
            writer.flush()
            assert backend.rotate("dep")
        writer.write(b"after the last rotation\n")
        writer.flush()
    assert not backend.rotate("dep")  # small again: left alone
    assert log.read_bytes() == b"after the last rotation\n"  # appends land at the start of the truncated file
    kept = sorted(p.name for p in log.parent.iterdir())
    assert kept == ["serving.log", "serving.log.1", "serving.log.2"]
    assert (log.parent / "serving.log.1").read_bytes().startswith(b"round 3 line 000000")
    assert (log.parent / "serving.log.2").read_bytes().startswith(b"round 2 line 000000")


HOSTILE = [
    ({"options": {"privileged": True}}, "privileged"),
    ({"options": {"volumes": {"/": {"bind": "/host"}}}}, "volumes"),
    ({"options": {"devices": ["/dev/sda"]}}, "devices"),
    ({"options": {"memory_mb": 1}}, "memory_mb"),
    ({"env": {"PATH": "/tmp/evil"}}, "reserved"),
    ({"env": {"X": "a\nLD_PRELOAD=/tmp/x.so"}}, "control character"),
    ({"env": {"X": "a\x00b"}}, "control character"),
    ({"env": {"A B": "1"}}, "invalid environment variable name"),
    ({"backend": "kubernetes"}, "backend"),
    ({"port": 22}, "port"),
]


@pytest.mark.parametrize(("fields", "message"), HOSTILE, ids=[m for _, m in HOSTILE])
def test_hostile_deploy_requests_are_refused_by_the_daemon(dbl_refusing: DaemonProcess, fields: dict[str, Any],
                                                           message: str) -> None:
    """What a peer sends bypassing the CLI: refused as INVALID before any backend sees it."""
    from tests.helpers.rawsock import RawClient

    d = dbl_refusing
    raw = RawClient(d.socket)
    try:
        raw.send({"type": "request", "id": 1, "request": {"op": "deployments.create", "ref": "dbl:1", **fields}})
        answer = raw.recv()
    finally:
        raw.sock.close()
    assert answer["type"] == "error"
    assert answer["code"] == "INVALID"
    assert message in answer["message"]
    assert cli_json(d, "ps")["items"] == []
    assert d.serving_pids() == []


def test_an_unexpected_error_during_a_rollout_keeps_the_old_version_and_the_supervisor(
    dbl: tuple[DaemonProcess, Path], tmp_path: Path
) -> None:
    d, _ = dbl
    endpoint = cli_json(d, "deploy", "dbl@production")["deployment"]["endpoint"]
    (old_pid,) = d.serving_pids()
    log = d.state_dir / "deployments" / "dbl-production" / "serving.log"
    log.unlink()
    log.mkdir()  # stands in for a disk error: starting the new instance raises OSError
    assert d.cli("push", str(python_model(tmp_path / "v2", factor=3.0)), "--alias", "production").returncode == 0
    dep = wait_for(lambda: "failed" in (x := deployment(d, "dbl-production"))["message"] and x, "the failed rollout")
    assert "Is a directory" in dep["message"]
    assert predictions(endpoint, [1.0]) == [2.0]
    log.rmdir()
    assert d.cli("restart", "dbl-production").returncode == 0  # the supervisor is alive and takes commands
    wait_for(lambda: d.serving_pids() and d.serving_pids() != [old_pid], "the restarted instance")
    wait_for(lambda: len(d.serving_pids()) == 1, "the old instance to stop")
    assert d.cli("undeploy", "dbl-production").returncode == 0
    wait_for(lambda: not d.serving_pids(), "nothing left serving")


def test_a_deployment_that_failed_to_start_can_be_restarted(daemon: DaemonProcess, tmp_path: Path) -> None:
    flag = tmp_path / "broken"
    flag.write_text("yes")
    model = python_model(tmp_path / "m", extra=f"assert not os.path.exists({str(flag)!r}), 'still broken'")
    assert daemon.cli("push", str(model)).returncode == 0
    assert daemon.cli("deploy", "dbl:1", "--no-wait").returncode == 0
    dep = wait_for(lambda: (x := deployment(daemon, "dbl"))["state"] == "failed" and x, "the failed start")
    assert "still broken" in dep["message"]
    flag.unlink()
    assert daemon.cli("restart", "dbl").returncode == 0
    dep = wait_for(lambda: (x := deployment(daemon, "dbl"))["state"] == "running" and x, "the restart")
    assert predictions(dep["endpoint"], [2.0]) == [4.0]
