"""Which mouse reporting the TUI asks the terminal for (``MODELTUI_MOUSE``); the bytes themselves are
checked on a real pty in test_idle_bytes.py."""

from __future__ import annotations

from textual.drivers.headless_driver import HeadlessDriver
from textual.drivers.linux_driver import LinuxDriver

from modeltui.terminal import ClickMouseDriver, NoMouseDriver, driver_for, mouse_mode


def test_clicks_only_unless_asked_for_more() -> None:
    assert mouse_mode({}) == "clicks"
    assert mouse_mode({"MODELTUI_MOUSE": " ALL "}) == "all"
    assert mouse_mode({"MODELTUI_MOUSE": "off"}) == "off"
    assert mouse_mode({"MODELTUI_MOUSE": "hover please"}) == "clicks"
    assert driver_for(LinuxDriver, "clicks") is ClickMouseDriver
    assert driver_for(LinuxDriver, "off") is NoMouseDriver
    assert driver_for(LinuxDriver, "all") is LinuxDriver
    assert driver_for(HeadlessDriver, "clicks") is HeadlessDriver  # tests and other platforms: untouched
