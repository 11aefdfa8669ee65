"""``maintain set`` and ``maintain policy`` print values as one writes them (``KEY=VALUE`` on the command
line, TOML in the manifest), never Python's reprs (``None``, ``[]``, quoted strings, ``3600.0``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modeltui.cli.maintain import NOT_SET, policy_value
from tests.helpers.daemon import DaemonProcess

MODEL = "breast-cancer"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, NOT_SET),
        ([], NOT_SET),
        (True, "true"),
        (False, "false"),
        (3600.0, "3600"),
        (0.01, "0.01"),
        (4096, "4096"),
        ("fresh train.csv", "fresh train.csv"),
        (["down", "errors"], "down, errors"),
        (
            {"method": "halving", "estimator": None, "space": {"clf__C": [1, 2]}},
            '{"method": "halving", "space": {"clf__C": [1, 2]}}',
        ),
    ],
)
def test_policy_values_are_shown_as_written(value: object, shown: str) -> None:
    assert policy_value(value) == shown


def policy_lines(text: str) -> dict[str, str]:
    """``  key   value  (set)`` lines → key: the rest."""
    lines = [line.split(None, 1) for line in text.splitlines()[1:] if line.startswith("  ") and "problem" not in line]
    return {parts[0]: parts[1] if len(parts) > 1 else "" for parts in lines}


def test_maintain_set_prints_values_as_typed(daemon: DaemonProcess, example_dir: Path) -> None:
    d = daemon
    assert d.cli("push", str(example_dir), "--alias", "production").returncode == 0
    done = d.cli("maintain", "set", MODEL, "data=eval.csv", "min_improvement=0.01", "alerts=down,errors",
                 'command=python train.py --data {data} --out {output}')  # fmt: skip
    assert done.returncode == 0, done.stderr
    shown = policy_lines(done.stdout)
    assert shown["data"] == "eval.csv  (set)"
    assert shown["alerts"] == "down, errors  (set)"
    assert shown["min_improvement"] == "0.01  (set)"
    assert shown["command"] == "python train.py --data {data} --out {output}  (set)"
    assert shown["holdout"] == "eval.csv"  # from the manifest's [evaluation]
    assert shown["schedule"] == NOT_SET
    assert shown["paused"] == "false"
    assert shown["timeout_seconds"] == "3600"
    for python in ("None", "[]", "'", "3600.0", "True", "False"):
        assert python not in done.stdout, (python, done.stdout)
    # --json keeps the values typed.
    policy = json.loads(d.cli("maintain", "policy", MODEL, "--json").stdout)["policy"]
    assert policy["schedule"] is None
    assert policy["alerts"] == ["down", "errors"]
