"""Widgets of the TUI: one responsibility each; they display data and post messages, never call the daemon."""

from typing import TYPE_CHECKING

from .alerts_tables import AlertHistoryTable, AlertsTable
from .deployments_table import DeploymentEventsTable, DeploymentFieldsTable, DeploymentsTable
from .detail_tables import FilesTable, LineageTable, ParamsTable
from .diff_tables import FileChangesTable, MetricChangesTable, RequirementsTable, ValueChangesTable
from .empty_registry import PUSH_EXAMPLE, EmptyRegistry
from .history_table import AliasHistoryTable
from .keyed_table import KeyedTable
from .log_view import LogView
from .metrics_tables import ClassMetricsTable, DriftTable, MetricsSummary
from .models_table import ModelsTable
from .quiet_static import QuietStatic, literal
from .shell_footer import ShellFooter
from .status_header import ShellStatus, StatusHeader
from .versions_table import VersionsTable

if TYPE_CHECKING:
    from .metrics_plots import MetricsPlot


def __getattr__(name: str) -> object:
    """MetricsPlot is imported on first use: Plotext costs some 17 ms that the first paint does not need."""
    if name == "MetricsPlot":
        from .metrics_plots import MetricsPlot

        return MetricsPlot
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "PUSH_EXAMPLE",
    "AlertHistoryTable",
    "AlertsTable",
    "AliasHistoryTable",
    "ClassMetricsTable",
    "DeploymentEventsTable",
    "DeploymentFieldsTable",
    "DeploymentsTable",
    "DriftTable",
    "EmptyRegistry",
    "FileChangesTable",
    "FilesTable",
    "KeyedTable",
    "LineageTable",
    "LogView",
    "MetricChangesTable",
    "MetricsPlot",
    "MetricsSummary",
    "ModelsTable",
    "ParamsTable",
    "QuietStatic",
    "RequirementsTable",
    "ShellFooter",
    "ShellStatus",
    "StatusHeader",
    "ValueChangesTable",
    "VersionsTable",
    "literal",
]
