"""Maintenance end to end, through a real daemon, real worker processes and the example's own training
command: a challenger trained on fresh data beats the champion on the same holdout, is pushed (parent =
champion), promoted and rolled out; the gate rejects a challenger that is not better by the margin; with
``approve`` nothing changes until an operator approves; a failing training command fails the run with its
log and leaves the champion alone; a daemon killed mid-run leaves the run interrupted, nothing promoted;
bad policies are refused at ``maintain set``."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import DaemonProcess, admin_token, cli_json
from tests.helpers.endpoints import predict_ids
from tests.helpers.example_data import EXAMPLE_MODEL, eval_rows, shifted_model
from tests.helpers.paths import EXAMPLE
from tests.helpers.waiting import wait_for

MODEL = EXAMPLE_MODEL


def serve(d: DaemonProcess, model_dir: Path) -> DaemonProcess:
    """The shifted example pushed at production, deployed as ``bc``, with a maintenance policy."""
    assert d.cli("push", str(model_dir), "--alias", "production").returncode == 0
    assert cli_json(d, "deploy", f"{MODEL}@production", "--name", "bc")["deployment"]["version"] == 1
    base = ["data=fresh_train.csv", "holdout=fresh_holdout.csv", "target=target", "metric=f1", "timeout_seconds=120"]
    assert d.cli("maintain", "set", MODEL, *base).returncode == 0
    return d


@pytest.fixture
def served(daemon: DaemonProcess, example_dir: Path, tmp_path: Path) -> DaemonProcess:
    return serve(daemon, shifted_model(example_dir, tmp_path))


@pytest.fixture(scope="module")
def served_for_refusals(module_daemon: DaemonProcess, tmp_path_factory: pytest.TempPathFactory) -> DaemonProcess:
    """One served daemon for the refused policies: a refusal stores nothing (each case checks), so they share."""
    tmp = tmp_path_factory.mktemp("refusals")
    example = tmp / "breast_cancer"
    shutil.copytree(EXAMPLE, example)
    return serve(module_daemon, shifted_model(example, tmp))


#: ``run-now --wait`` exit statuses (docs/cli.md): the run failed (or was interrupted); nothing was promoted.
RUN_FAILED, NOT_PROMOTED = 10, 11


def run(d: DaemonProcess, code: int = 0) -> dict[str, Any]:
    """``maintain run-now --wait --json``: the finished run, after checking the exit status says how it ended."""
    done = d.cli("maintain", "run-now", MODEL, "--wait", "--json")
    assert done.returncode == code, (done.returncode, done.stderr)
    got: dict[str, Any] = json.loads(done.stdout)
    return got


def test_a_better_challenger_is_pushed_promoted_and_rolled_out(served: DaemonProcess) -> None:
    d = served
    assert d.cli("maintain", "set", MODEL, "promote=auto", "min_improvement=0.01").returncode == 0
    got = run(d)
    assert got["state"] == "promoted", got
    assert [s["name"] for s in got["steps"]] == [
        "evaluate_champion", "train", "evaluate_challenger", "gate", "push", "promote", "rollout"
    ]  # fmt: skip
    assert all(s["state"] == "done" for s in got["steps"]), got["steps"]
    assert got["challenger_score"] >= got["champion_score"] + 0.01
    assert got["challenger"] == 2
    version = cli_json(d, "show", f"{MODEL}:2")
    assert version["lineage"][:1] == [1]  # the challenger's parent is the champion
    assert version["version"]["tags"]["maintenance.run"] == str(got["id"])
    assert cli_json(d, "show", f"{MODEL}@production")["version"]["number"] == 2
    # Predictions now come from the new version: the deployment followed the alias.
    dep = wait_for(lambda: (x := cli_json(d, "ps", "bc")["deployment"])["version"] == 2 and x, "the rollout", 60)
    assert dep["state"] == "running"
    assert cli_json(d, "maintain", "show", str(got["id"]))["state"] == "promoted"


def test_a_challenger_not_better_by_the_margin_is_rejected_and_nothing_changes(served: DaemonProcess) -> None:
    d = served
    assert d.cli("maintain", "set", MODEL, "promote=auto", "min_improvement=0.9").returncode == 0
    got = run(d, NOT_PROMOTED)
    assert got["state"] == "rejected"
    assert "better by less than 0.9" in got["reason"]
    assert [s["name"] for s in got["steps"]] == ["evaluate_champion", "train", "evaluate_challenger", "gate"]
    assert [v["number"] for v in cli_json(d, "log", MODEL)["items"]] == [1]
    assert cli_json(d, "show", f"{MODEL}@production")["version"]["number"] == 1


def test_with_approve_nothing_changes_until_an_operator_approves(served: DaemonProcess) -> None:
    d = served
    assert d.cli("maintain", "set", MODEL, "promote=approve").returncode == 0
    got = run(d)
    assert got["state"] == "awaiting_approval"
    assert got["challenger"] == 2  # pushed, not promoted
    assert cli_json(d, "show", f"{MODEL}@production")["version"]["number"] == 1
    assert cli_json(d, "ps", "bc")["deployment"]["version"] == 1
    done = cli_json(d, "maintain", "approve", str(got["id"]), "--reason", "looks right")
    assert done["state"] == "promoted"
    assert cli_json(d, "show", f"{MODEL}@production")["version"]["number"] == 2
    wait_for(lambda: cli_json(d, "ps", "bc")["deployment"]["version"] == 2, "the rollout", 60)
    again = d.cli("maintain", "approve", str(got["id"]))
    assert again.returncode == 5  # not awaiting approval any more


def test_a_failing_training_command_fails_the_run_with_its_log(served: DaemonProcess) -> None:
    d = served
    failing = "command=python -c \"import sys; print('boom'); sys.exit(3)\""
    assert d.cli("maintain", "set", MODEL, failing).returncode == 0
    human = d.cli("maintain", "run-now", MODEL, "--wait")
    assert human.returncode == RUN_FAILED, human.stderr  # a script (or CI job) sees that the run failed
    assert "FAILED" in human.stdout
    assert "ended failed: train failed" in human.stderr
    got = run(d, RUN_FAILED)
    assert got["state"] == "failed"
    train = got["steps"][1]
    assert train["name"] == "train"
    assert train["state"] == "failed"
    assert "boom" in train["message"]
    assert "boom" in Path(got["log"]).read_text()
    assert [v["number"] for v in cli_json(d, "log", MODEL)["items"]] == [1]


def test_a_training_past_its_time_limit_fails_the_run(served: DaemonProcess) -> None:
    d = served
    slow = 'command=python -c "import time; time.sleep(60)"'
    assert d.cli("maintain", "set", MODEL, slow, "timeout_seconds=1").returncode == 0
    got = run(d, RUN_FAILED)
    assert got["state"] == "failed"
    assert "ran longer than 1 s" in got["steps"][-1]["message"], got["steps"]  # evaluation or training


def test_a_daemon_killed_mid_run_leaves_it_interrupted_and_nothing_promoted(served: DaemonProcess) -> None:
    d = served
    slow = 'command=python -c "import time; time.sleep(60)"'
    assert d.cli("maintain", "set", MODEL, "promote=auto", slow).returncode == 0
    started = cli_json(d, "maintain", "run-now", MODEL)
    wait_for(lambda: any(s["name"] == "train" for s in cli_json(d, "maintain", "show", str(started["id"]))["steps"]),
             "the training step", 60)  # fmt: skip
    d.stop(signal.SIGKILL)
    d.start()
    got = cli_json(d, "maintain", "show", str(started["id"]))
    assert got["state"] == "interrupted"
    assert got["steps"][-1]["state"] == "failed"
    assert cli_json(d, "show", f"{MODEL}@production")["version"]["number"] == 1


def test_cancel_kills_a_running_training_and_changes_nothing(served: DaemonProcess, tmp_path: Path) -> None:
    d = served
    marker = tmp_path / "training.pid"
    slow = f"command=python -c \"import os, time; open({str(marker)!r}, 'w').write(str(os.getpid())); time.sleep(120)\""
    assert d.cli("maintain", "set", MODEL, "promote=auto", slow).returncode == 0
    waiting = subprocess.Popen([sys.executable, "-m", "modeltui", "maintain", "run-now", MODEL, "--wait"],
                               env=d.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    wait_for(lambda: marker.exists() and marker.read_text(), "the training process", 60)
    pid = int(marker.read_text())
    started = cli_json(d, "maintain", "runs", MODEL)["items"][0]
    begun = time.monotonic()
    got = cli_json(d, "maintain", "cancel", str(started["id"]), "--reason", "wrong data")
    assert time.monotonic() - begun < 60  # answered, not after the training's 120 s sleep (a CLI start included)
    assert got["state"] == "cancelled", got
    _, stderr = waiting.communicate(timeout=60)
    assert waiting.returncode == NOT_PROMOTED, stderr  # the waiting client does not report success
    assert "ended cancelled" in stderr
    assert got["reason"].startswith("cancelled by ")
    assert got["reason"].endswith(": wrong data")
    assert [s["name"] for s in got["steps"]] == ["evaluate_champion", "train"]
    assert got["steps"][-1]["state"] == "failed"
    assert "cancelled" in got["steps"][-1]["message"]
    assert not Path(f"/proc/{pid}").exists()  # the training process is gone
    assert [v["number"] for v in cli_json(d, "log", MODEL)["items"]] == [1]
    again = d.cli("maintain", "cancel", str(started["id"]))
    assert again.returncode == 5  # nothing left to cancel
    assert "is cancelled" in again.stderr
    assert d.cli("maintain", "cancel", "999").returncode == 3


def test_cancel_of_a_run_awaiting_approval_never_promotes_it(served: DaemonProcess) -> None:
    d = served
    got = run(d)
    assert got["state"] == "awaiting_approval"
    done = cli_json(d, "maintain", "cancel", str(got["id"]))
    assert done["state"] == "cancelled"
    assert d.cli("maintain", "approve", str(got["id"])).returncode == 5
    assert cli_json(d, "show", f"{MODEL}@production")["version"]["number"] == 1


def test_the_built_in_search_makes_a_challenger_that_is_gated_pushed_and_promoted(served: DaemonProcess) -> None:
    d = served
    space = {"clf__C": {"low": 0.001, "high": 100, "log": True}, "clf__class_weight": [None, "balanced"]}
    spec = json.dumps({"method": "halving", "space": space, "n_candidates": 8, "cv": 3, "seed": 1})
    done = d.cli("maintain", "set", MODEL, f"search={spec}", "promote=auto", "min_improvement=0.01")
    assert done.returncode == 0, done.stderr
    assert cli_json(d, "maintain", "policy", MODEL)["policy"]["search"]["space"]["clf__C"]["log"] is True
    got = run(d)
    assert got["state"] == "promoted", got
    names = [s["name"] for s in got["steps"]]
    assert names == ["evaluate_champion", "search", "evaluate_challenger", "gate", "push", "promote", "rollout"]
    searched = got["steps"][1]
    assert searched["figures"]["candidates"] == 8
    assert "halving search: cv f1" in searched["message"]
    assert "OMP_NUM_THREADS=1" in Path(got["log"]).read_text()  # one thread per fit: the host keeps serving
    assert got["challenger_score"] >= got["champion_score"] + 0.01
    # The challenger's manifest records the parameters it was searched to, in the champion's names (its C is
    # the pipeline's clf__C: no stale C = 1.0 beside clf__C), and its own metrics on the run's holdout.
    champion, challenger = (cli_json(d, "show", f"{MODEL}:{n}") for n in (1, 2))
    searched_c = float(searched["message"].split("clf__C=")[1].split(",")[0])
    assert challenger["params"]["C"] == pytest.approx(searched_c)
    assert "clf__C" not in challenger["params"]
    assert set(challenger["metrics"]) == set(champion["metrics"]) == {"accuracy", "precision", "recall", "f1"}
    assert challenger["metrics"]["f1"] == pytest.approx(got["challenger_score"], abs=1e-6)
    assert searched["name"] == "search"
    assert got["steps"][2]["figures"] == pytest.approx(challenger["metrics"], abs=1e-6)
    # So diff shows real deltas (it showed +0 for every metric and no change of C).
    diff = cli_json(d, "diff", f"{MODEL}:1", f"{MODEL}:2")
    c = next(x for x in diff["params"] if x["key"] == "C")
    assert (c["a"], c["b"]) == (1.0, pytest.approx(searched_c))
    f1 = next(x for x in diff["metrics"] if x["key"] == "f1")
    assert f1["delta"] == pytest.approx(challenger["metrics"]["f1"] - champion["metrics"]["f1"], abs=1e-6)
    assert f1["delta"] != 0  # the challenger's own score, not the champion's copied (the same F1 definition)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("schedule=61 * * * *", "invalid cron schedule"),
        ("alerts=no-such-alert", "unknown alert names: no-such-alert"),
        ("metric=f2", "unknown gate metric 'f2'"),
        ("holdout=missing.csv", "'missing.csv' is not a file of the champion version"),
        ("promote=sometimes", "promote"),
        ("bogus=1", "unknown policy key 'bogus'"),
        ('search={"space": {"clf__C": {"low": 5, "high": 1}}}', "search.space.clf__C: low (5) must be below high (1)"),
        ('search={"space": {"clf__C": []}}', "search.space.clf__C: an empty list"),
        ("search=[1, 2]", "search must be a table"),
    ],
)
def test_bad_policies_are_refused_at_set(served_for_refusals: DaemonProcess, setting: str, message: str) -> None:
    served = served_for_refusals
    before = cli_json(served, "maintain", "policy", MODEL)["overrides"]
    done = served.cli("maintain", "set", MODEL, setting)
    assert done.returncode == 4, done.stderr
    assert message in done.stderr
    assert cli_json(served, "maintain", "policy", MODEL)["overrides"] == before  # nothing stored


def test_an_f1_alert_from_shifted_feedback_triggers_a_run_that_rolls_out_a_better_model(
    daemon_factory: Callable[[str], DaemonProcess], example_dir: Path, tmp_path: Path
) -> None:
    """The issue's loop: labelled feedback from a shifted distribution drives F1 below its alert; the alert
    triggers a run; the challenger, trained on fresh data, beats the champion by the margin; it is pushed,
    promoted and rolled out, and predictions now come from the new version."""
    from sklearn.metrics import f1_score

    d = daemon_factory("d")
    Path(d.env["MODELTUI_CONFIG"]).write_text("[monitor]\nscrape_interval_seconds = 1\n")
    d.start()
    model_dir = shifted_model(example_dir, tmp_path)
    assert d.cli("push", str(model_dir), "--alias", "production").returncode == 0
    dep = cli_json(d, "deploy", f"{MODEL}@production", "--name", "bc")["deployment"]
    # Shifted traffic: the champion's F1 on it, as the labels will tell the monitor.
    rows, truth = eval_rows(model_dir)  # the unshifted reference rows and their labels
    shifted = [[v * 1.6 + 0.5 for v in row] for row in rows]
    ids, preds = predict_ids(dep["endpoint"], shifted)
    live_f1 = float(f1_score(truth, preds, average="macro", zero_division=0))
    reference_f1 = float(f1_score(truth, predict_ids(dep["endpoint"], rows)[1], average="macro", zero_division=0))
    assert live_f1 < reference_f1 - 0.02  # the shift hurts the champion
    threshold = round((live_f1 + reference_f1) / 2, 4)
    add = d.cli("alerts", "add", "bc", f"f1 < {threshold} for 0", "--name", "low-f1", "--window", "10m")
    assert add.returncode == 0, add.stderr
    policy = ["data=fresh_train.csv", "holdout=fresh_holdout.csv", "target=target", "metric=f1",
              "promote=auto", "min_improvement=0.01", "alerts=low-f1"]  # fmt: skip
    done = d.cli("maintain", "set", MODEL, *policy)
    assert done.returncode == 0, done.stderr
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\n" + "".join(f"{i},{t}\n" for i, t in zip(ids, truth, strict=True)))
    assert d.cli("feedback", "bc", str(labels)).returncode == 0

    def triggered() -> dict[str, Any] | None:
        runs = cli_json(d, "maintain", "runs", MODEL)["items"]
        return next((x for x in runs if x["trigger"] == "alert:low-f1" and x["state"] != "running"), None)

    got = wait_for(triggered, "a run triggered by the alert", 120)
    assert got["state"] == "promoted", got
    assert got["challenger_score"] >= got["champion_score"] + 0.01
    assert wait_for(lambda: cli_json(d, "ps", "bc")["deployment"]["version"] == 2, "the rollout", 60)
    # Predictions now come from the new version (its own runtime answers with its version).
    status = json.loads(urllib.request.urlopen(dep["endpoint"] + "/health", timeout=5).read())
    assert status["version"] == f"{MODEL}:2"


def test_pausing_one_model_or_all_of_them_stops_runs_until_resumed(served: DaemonProcess) -> None:
    d = served
    assert cli_json(d, "maintain", "pause", MODEL)["model_paused"] is True
    done = d.cli("maintain", "run-now", MODEL)
    assert done.returncode == 5
    assert f"maintenance of {MODEL} is paused" in done.stderr
    assert cli_json(d, "maintain", "resume", MODEL)["model_paused"] is False
    assert cli_json(d, "maintain", "pause")["all_paused"] is True  # the global switch
    done = d.cli("maintain", "run-now", MODEL)
    assert done.returncode == 5
    assert "every model is paused" in done.stderr
    assert cli_json(d, "maintain", "runs", MODEL)["items"] == []  # nothing started meanwhile
    assert cli_json(d, "maintain", "resume")["all_paused"] is False
    assert run(d)["state"] == "awaiting_approval"  # the default: promote = approve


def test_a_run_trains_and_evaluates_on_the_deployments_labelled_feedback(
    daemon: DaemonProcess, example_dir: Path, tmp_path: Path
) -> None:
    """``data = holdout = "feedback"``: the rows the deployment got labels for are pulled from its runtime,
    the newest 30 % scores champion and challenger, the rest trains the challenger; the rows stay in the
    daemon after the runtime that held them was replaced by the rollout."""
    import numpy as np

    d = daemon
    assert d.cli("push", str(example_dir), "--alias", "production").returncode == 0
    dep = cli_json(d, "deploy", f"{MODEL}@production", "--name", "bc")["deployment"]
    policy = ["data=feedback", "holdout=feedback", "feedback_min_rows=100", "promote=auto", "min_improvement=0.01"]
    done = d.cli("maintain", "set", MODEL, *policy)
    assert done.returncode == 0, done.stderr
    early = run(d, RUN_FAILED)  # no labels yet: the run says so and changes nothing
    assert early["state"] == "failed"
    assert [s["name"] for s in early["steps"]] == ["collect_feedback"]
    assert "only 0 labelled feedback rows" in early["steps"][0]["message"]

    rows, truth = eval_rows(example_dir)
    rng = np.random.default_rng(0)
    shifted = [[v * 1.6 * rng.normal(1, 0.02) + 0.5 for v in row] for _ in range(4) for row in rows]
    labels = truth * 4
    ids, _ = predict_ids(dep["endpoint"], shifted)
    path = tmp_path / "labels.csv"
    path.write_text("id,label\n" + "".join(f"{i},{t}\n" for i, t in zip(ids, labels, strict=True)))
    assert d.cli("feedback", "bc", str(path)).returncode == 0
    # The labelled inputs are other clients' data: not on the public port, only on the instance's own.
    with pytest.raises(urllib.error.HTTPError) as public:
        urllib.request.urlopen(dep["endpoint"] + "/feedback/rows", timeout=5)
    public.value.close()
    assert public.value.code == 404

    got = run(d)
    assert got["state"] == "promoted", got
    collect = got["steps"][0]
    assert collect["name"] == "collect_feedback"
    assert collect["figures"] == {"rows": len(ids), "train_rows": len(ids) - round(len(ids) * 0.3),
                                  "holdout_rows": round(len(ids) * 0.3)}  # fmt: skip
    assert got["challenger_score"] >= got["champion_score"] + 0.01
    wait_for(lambda: cli_json(d, "ps", "bc")["deployment"]["version"] == 2, "the rollout", 60)

    # The runtime that held the rows is gone (rolled out); the daemon kept them, through a restart too.
    d.stop()
    d.start()
    assert d.cli("maintain", "set", MODEL, "promote=approve", "min_improvement=0").returncode == 0
    waited = d.cli("maintain", "run-now", MODEL, "--wait", "--json")  # the same rows again: rarely better
    assert waited.returncode in (0, NOT_PROMOTED), waited.stderr
    again = json.loads(waited.stdout)
    assert again["steps"][0]["figures"]["rows"] == len(ids), again


def test_without_feedback_inputs_the_runtimes_keep_none_and_feedback_cannot_be_data(
    daemon_factory: Callable[[str], DaemonProcess], example_dir: Path, tmp_path: Path
) -> None:
    """``[deploy] feedback_inputs = false`` saves each runtime the memory of its predictions' inputs; a
    policy that would train on feedback is then refused at ``maintain set``, with the reason."""
    d = daemon_factory("d")
    Path(d.env["MODELTUI_CONFIG"]).write_text("[deploy]\nfeedback_inputs = false\n")
    d.start()
    assert d.cli("push", str(example_dir), "--alias", "production").returncode == 0
    dep = cli_json(d, "deploy", f"{MODEL}@production", "--name", "bc")["deployment"]
    rows, truth = eval_rows(example_dir)
    ids, _ = predict_ids(dep["endpoint"], rows[:20])
    path = tmp_path / "labels.csv"
    path.write_text("id,label\n" + "".join(f"{i},{t}\n" for i, t in zip(ids, truth[:20], strict=True)))
    assert d.cli("feedback", "bc", str(path)).returncode == 0
    rows_req = urllib.request.Request(
        dep["instance"]["admin_url"] + "/feedback/rows", headers={"Authorization": f"Bearer {admin_token(d, 'bc')}"}
    )
    with urllib.request.urlopen(rows_req, timeout=5) as resp:
        assert json.loads(resp.read())["rows"] == []
    refused = d.cli("maintain", "set", MODEL, "data=feedback", "holdout=feedback")
    assert refused.returncode == 4
    assert "the runtimes keep no inputs ([deploy] feedback_inputs = false)" in refused.stderr
