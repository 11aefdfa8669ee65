"""``modeltui feedback`` end to end: a real daemon, the breast-cancer example deployed as a real process,
labels sent from CSV and JSONL files, and the confusion matrix read back from the instance's /metrics."""

from __future__ import annotations

import csv
import json
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import DaemonProcess, cli_json
from tests.helpers.endpoints import predict_ids
from tests.helpers.example_data import eval_rows
from tests.helpers.prometheus import samples

pytestmark = pytest.mark.integration

def scrape(admin_url: str) -> str:
    with urllib.request.urlopen(admin_url.rstrip("/") + "/metrics", timeout=10) as resp:
        return resp.read().decode()  # type: ignore[no-any-return]


def confusion(text: str) -> Counter[tuple[str, str]]:
    return Counter(
        {(lab["predicted"], lab["actual"]): int(v) for lab, v in samples(text, "modeltui_feedback_total") if v}
    )


def value(text: str, name: str) -> float:
    found = samples(text, name)
    return found[0][1] if found else 0.0


def deploy_example(d: DaemonProcess, example_dir: Path) -> dict[str, Any]:
    assert d.cli("push", str(example_dir), "--alias", "production").returncode == 0
    dep: dict[str, Any] = cli_json(d, "deploy", "breast-cancer@production")["deployment"]
    assert dep["state"] == "running", dep
    assert dep["instance"]["admin_url"]
    return dep


def test_feedback_from_csv_and_jsonl_builds_the_confusion_matrix(
    daemon: DaemonProcess, example_dir: Path, tmp_path: Path
) -> None:
    dep = deploy_example(daemon, example_dir)
    endpoint, admin = dep["endpoint"], dep["instance"]["admin_url"]
    rows, truth = eval_rows(example_dir)
    ids, preds = predict_ids(endpoint, rows[:80])
    assert len(ids) == 80

    # CSV: extra columns, quoted header, and labels spelled the way spreadsheets write them (1.0, " 0").
    spelled = {0: ["0", " 0", "0.0"], 1: ["1", "1.0", "01"]}
    csv_file = tmp_path / "labels.csv"
    with csv_file.open("w", newline="") as fh:
        w = csv.writer(fh, quoting=csv.QUOTE_MINIMAL)
        w.writerow(["when", "id", "label"])
        for i in range(40):
            w.writerow(["2024-01-01", ids[i], spelled[truth[i]][i % 3]])
    res = daemon.cli("feedback", "breast-cancer-production", str(csv_file), "--json")
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert got["format"] == "csv"
    assert (got["sent"], got["matched"], got["unknown"]) == (40, 40, 0)

    # JSONL, found by the ref rather than the deployment name; one id the instance never issued.
    jsonl = tmp_path / "labels.jsonl"
    lines = [json.dumps({"id": ids[i], "label": truth[i]}) for i in range(40, 80)]
    lines.insert(3, "")  # blank lines are skipped
    lines.append(json.dumps({"id": "f" * 28, "label": 1, "note": "other keys are ignored"}))
    jsonl.write_text("\n".join(lines) + "\n")
    res = daemon.cli("feedback", "breast-cancer@production", str(jsonl), "--json")
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert (got["format"], got["sent"], got["matched"], got["unknown"]) == ("jsonl", 41, 40, 1)

    # Human output: the totals. Sending the same labels again: each id takes one label, so all unknown.
    res = daemon.cli("feedback", "breast-cancer-production", str(csv_file))
    assert res.returncode == 0, res.stderr
    assert "40 labels sent, 0 matched, 40 unknown" in res.stdout

    text = scrape(admin)
    want = Counter((str(p), str(t)) for p, t in zip(preds, truth[:80], strict=True))
    assert confusion(text) == want
    assert value(text, "modeltui_feedback_unknown_total") == 41
    assert value(text, "modeltui_feedback_unclassified_total") == 0
    # The deployed version carries eval.csv, so its instance exposes the input-drift histograms too.
    assert len(samples(text, "modeltui_feature_value_count")) == 30
    assert all(v == 80 for _, v in samples(text, "modeltui_feature_value_count"))


def _bad_files(tmp_path: Path, ids: list[str]) -> dict[str, tuple[Path, str]]:
    """name → (file, what the error message must say)."""
    cases: dict[str, tuple[str, str, str]] = {
        "empty": ("empty.csv", "", "empty.csv is empty"),
        "only blank lines": ("blank.jsonl", "\n\n  \n", "blank.jsonl is empty"),
        "no label column": ("nolabel.csv", f"id,truth\n{ids[0]},1\n", "line 1: the header must name"),
        "short row": ("short.csv", f"id,label\n{ids[0]},1\n{ids[1]}\n", "line 3: 1 fields; the header has 2"),
        "empty label": ("nolab.csv", f"id,label\n{ids[0]},1\n{ids[1]},\n", "line 3: label is empty"),
        "bad JSON": ("bad.jsonl", f'{{"id": "{ids[0]}", "label": 1}}\n{{"id": "{ids[1]}", "label": \n',
                     "line 2: not valid JSON"),
        "id not a string": ("num.jsonl", f'{{"id": "{ids[0]}", "label": 1}}\n\n{{"id": 17, "label": 1}}\n',
                            "line 3: id must be a string"),
        "no label key": ("nokey.jsonl", f'{{"id": "{ids[0]}"}}\n', "line 1: no 'label' key"),
        "label is a list": ("list.jsonl", f'{{"id": "{ids[0]}", "label": [1]}}\n', "line 1: label must be"),
        "not an object": ("arr.jsonl", f'["{ids[0]}", 1]\n', "line 1: expected an object"),
        "duplicate id": ("dup.csv", f"id,label\n{ids[0]},1\n{ids[1]},0\n{ids[0]},0\n",
                         "line 4: id '" + ids[0] + "' already has a label on line 2"),
        "not UTF-8": ("latin.csv", f"id,label\n{ids[0]},1\n", "line 3: not UTF-8"),
    }
    out: dict[str, tuple[Path, str]] = {}
    for case, (name, content, message) in cases.items():
        path = tmp_path / name
        path.write_text(content)
        out[case] = (path, message)
    with (tmp_path / "latin.csv").open("ab") as fh:
        fh.write(b"caf\xe9,1\n")
    # Valid for 2,500 lines (real ids: they would match if sent), then one bad line: nothing is sent.
    late = tmp_path / "late.jsonl"
    good = [json.dumps({"id": ids[i % len(ids)] if i < len(ids) else f"x{i}", "label": 1}) for i in range(2500)]
    late.write_text("\n".join([*good, '{"id": "y", "label": null}']) + "\n")
    out["bad line after the first chunks"] = (late, "line 2501: label must be a string, number or boolean")
    big = tmp_path / "big.csv"
    with big.open("w") as fh:
        fh.write("id,label\n")
        fh.writelines(f"i{n},1\n" for n in range(1_000_001))
    out["more than 1,000,000 lines"] = (big, "more than 1,000,000 labels")
    return out


def test_bad_files_exit_4_and_send_nothing(daemon: DaemonProcess, example_dir: Path, tmp_path: Path) -> None:
    dep = deploy_example(daemon, example_dir)
    rows, _ = eval_rows(example_dir)
    ids, _ = predict_ids(dep["endpoint"], rows[:20])
    for case, (path, message) in _bad_files(tmp_path, ids).items():
        res = daemon.cli("feedback", "breast-cancer-production", str(path), "--json")
        assert res.returncode == 4, (case, res.returncode, res.stderr)
        assert message in res.stderr, (case, res.stderr)
        assert "nothing was sent" in res.stderr, case
        assert res.stdout == "", case
    text = scrape(dep["instance"]["admin_url"])
    assert confusion(text) == Counter()
    assert value(text, "modeltui_feedback_unknown_total") == 0
    assert not [lab for lab, _ in samples(text, "modeltui_requests_total") if lab["endpoint"] == "/feedback"]
    # The same ids still take their labels afterwards: nothing was consumed.
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({"id": i, "label": 1}) + "\n" for i in ids))
    got = cli_json(daemon, "feedback", "breast-cancer-production", str(good))
    assert (got["matched"], got["unknown"]) == (20, 0)


def test_unknown_target_and_missing_file(daemon: DaemonProcess, tmp_path: Path) -> None:
    f = tmp_path / "labels.jsonl"
    f.write_text('{"id": "abc", "label": 1}\n')
    res = daemon.cli("feedback", "nothing-here", str(f))
    assert res.returncode == 3, res.stderr
    assert "no deployment serves 'nothing-here'" in res.stderr
    res = daemon.cli("feedback", "nothing-here", str(tmp_path / "absent.csv"))
    assert res.returncode == 2  # click: the file does not exist (usage)
