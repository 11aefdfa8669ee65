"""The shipped Grafana dashboard's "Firing alerts" panel, evaluated by Prometheus' own engine (``promtool test
rules``): 0 while the exporter answers and nothing fires, even when no alert series exists at all (Grafana
would show "No data"); "No data" only when Prometheus has nothing from the exporter."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.helpers.paths import REPO
from tests.helpers.prerequisites import need

DASHBOARD = REPO / "config" / "grafana-dashboard.json"
ALL_DEPLOYMENTS = ".*"  # what Grafana puts for $deployment when "All" is selected (the variable's allValue)


def panel(title: str) -> dict[str, Any]:
    panels: list[dict[str, Any]] = json.loads(DASHBOARD.read_text())["panels"]
    return next(p for p in panels if p["title"] == title)


def firing_alerts_expr(deployment: str = ALL_DEPLOYMENTS) -> str:
    (target,) = panel("Firing alerts")["targets"]
    expr: str = target["expr"]
    return expr.replace("$deployment", deployment)


#: The exporter answers: it always exposes its window (one series per daemon).
EXPORTER_UP = {"series": 'modeltui_exporter_window_seconds{instance="127.0.0.1:9464",job="modeltui"}',
               "values": "3600 3600 3600"}  # fmt: skip


def firing(deployment: str, rule: str, values: str) -> dict[str, str]:
    """An input series of modeltui_alert_firing (1 firing, 0 pending or resolved), one value a minute."""
    return {"series": f'modeltui_alert_firing{{deployment="{deployment}",rule="{rule}",severity="warning"}}',
            "values": values}  # fmt: skip


def promtool_eval(tmp_path: Path, series: list[dict[str, str]], expected: list[dict[str, Any]],
                  deployment: str = ALL_DEPLOYMENTS) -> None:  # fmt: skip
    """Evaluate the panel's query over ``series`` at 2 min with promtool and require exactly ``expected``."""
    promtool = shutil.which("promtool")
    need(promtool is not None, "promtool (Debian's prometheus package)")
    assert promtool is not None
    test = {
        "rule_files": [],
        "tests": [{
            "interval": "1m",
            "input_series": series,
            "promql_expr_test": [{"expr": firing_alerts_expr(deployment), "eval_time": "2m", "exp_samples": expected}],
        }],
    }  # fmt: skip
    path = tmp_path / "dashboard_test.yml"
    path.write_text(json.dumps(test))  # YAML reads JSON
    done = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_firing_alerts_is_0_when_no_alert_series_exists(tmp_path: Path) -> None:
    """No alert ever fired or pended (or no alerts engine): the exporter has no modeltui_alert_firing series."""
    promtool_eval(tmp_path, [EXPORTER_UP], [{"labels": "{}", "value": 0}])


def test_firing_alerts_is_0_when_the_selected_deployment_has_no_alert(tmp_path: Path) -> None:
    series = [EXPORTER_UP, firing("churn", "error_rate", "1 1 1")]
    promtool_eval(tmp_path, series, [{"labels": "{}", "value": 0}], deployment="fraud")


def test_firing_alerts_counts_per_deployment_while_alerts_fire(tmp_path: Path) -> None:
    series = [EXPORTER_UP, firing("churn", "error_rate", "1 1 1"), firing("churn", "latency_p99", "0 1 1"),
              firing("fraud", "low_f1", "1 1 0")]  # fmt: skip
    promtool_eval(tmp_path, series, [{"labels": '{deployment="churn"}', "value": 2},
                                     {"labels": '{deployment="fraud"}', "value": 0}])  # fmt: skip


def test_firing_alerts_is_no_data_when_prometheus_has_nothing_from_the_exporter(tmp_path: Path) -> None:
    promtool_eval(tmp_path, [], [])


def test_the_panel_is_a_stat_of_the_last_value() -> None:
    stat = panel("Firing alerts")
    assert stat["type"] == "stat"
    assert stat["options"]["reduceOptions"]["calcs"] == ["lastNotNull"]
