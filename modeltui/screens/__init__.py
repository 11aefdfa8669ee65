"""Screens of the TUI, one per view. They post :class:`RegistryScreen.Call` messages; the App talks to the daemon."""

from .alerts import AlertsScreen
from .base import RegistryScreen
from .deployments import DeploymentScreen, DeploymentsScreen
from .dialogs import AliasChoice, AliasDialog, ConfirmDialog, DeployChoice, DeployDialog, RollbackDialog
from .diff import DiffScreen
from .fleet import FleetScreen
from .help import HelpScreen
from .history import HistoryScreen
from .home import HomeScreen
from .hosts import HostsScreen
from .maintenance import MaintenanceScreen, PolicyDialog, ReasonDialog
from .metrics import MetricsScreen
from .model import ModelScreen
from .models import ModelsScreen
from .version import VersionScreen

__all__ = [
    "AlertsScreen",
    "AliasChoice",
    "AliasDialog",
    "ConfirmDialog",
    "DeployChoice",
    "DeployDialog",
    "DeploymentScreen",
    "DeploymentsScreen",
    "DiffScreen",
    "FleetScreen",
    "HelpScreen",
    "HistoryScreen",
    "HomeScreen",
    "HostsScreen",
    "MaintenanceScreen",
    "MetricsScreen",
    "ModelScreen",
    "ModelsScreen",
    "PolicyDialog",
    "ReasonDialog",
    "RegistryScreen",
    "RollbackDialog",
    "VersionScreen",
]
