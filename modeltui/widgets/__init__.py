"""Widgets of the TUI: one responsibility each; they display data and post messages, never call the daemon."""

from .alerts_tables import AlertHistoryTable, AlertsTable
from .deployments_table import DeploymentEventsTable, DeploymentFieldsTable, DeploymentsTable
from .detail_tables import FilesTable, LineageTable, ParamsTable
from .diff_tables import FileChangesTable, MetricChangesTable, RequirementsTable, ValueChangesTable
from .empty_registry import PUSH_EXAMPLE, EmptyRegistry
from .history_table import AliasHistoryTable
from .keyed_table import KeyedTable
from .log_view import LogView
from .metrics_plots import MetricsPlot
from .metrics_tables import ClassMetricsTable, DriftTable, MetricsSummary
from .models_table import ModelsTable
from .quiet_static import QuietStatic, literal
from .shell_footer import ShellFooter
from .status_header import ShellStatus, StatusHeader
from .versions_table import VersionsTable

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
