"""The import rules lint-imports cannot state: no cycle between any two modules, and what importing the client
really loads (the static graph misses imports made at run time, the loaded modules do not)."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("daemon", "modeltui")
#: What the client must never load: the daemon's features and the libraries only they need.
DAEMON_ONLY = (
    "daemon.app", "daemon.cluster", "daemon.deploy", "daemon.handlers", "daemon.maintain", "daemon.monitor",
    "daemon.registry", "daemon.server", "daemon.settings", "daemon.store",
    "sqlmodel", "sqlalchemy", "docker", "kazoo", "apscheduler",
)  # fmt: skip


def import_cycles(graph: grimp.ImportGraph, packages: tuple[str, ...]) -> list[list[str]]:
    """One shortest cycle (``a -> b -> … -> a``) through each group of modules of ``packages`` that import each
    other, directly or through others; empty when the modules form a DAG."""
    ours = {m for m in graph.modules if m.split(".")[0] in packages}
    cycles = []
    for group in _strongly_connected(graph, ours):
        start = min(group)
        step = min(m for m in graph.find_modules_directly_imported_by(start) if m in group)
        back = graph.find_shortest_chain(importer=step, imported=start)
        assert back is not None  # same group: a way back exists
        cycles.append([start, *back])
    return sorted(cycles)


def _strongly_connected(graph: grimp.ImportGraph, modules: set[str]) -> list[set[str]]:
    """Groups of two or more modules that all reach each other (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    for root in sorted(modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root) & modules)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            successor = next(successors, None)
            if successor is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.add(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(group)
            elif successor not in index:
                index[successor] = low[successor] = len(index)
                stack.append(successor)
                on_stack.add(successor)
                work.append((successor, iter(sorted(graph.find_modules_directly_imported_by(successor) & modules))))
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
    return groups


def test_the_cycle_finder_reports_the_chain_of_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for importer, imported in [("a.x", "a.y"), ("a.y", "a.z"), ("a.z", "a.x"), ("a.z", "a.w"), ("b.p", "a.x")]:
        graph.add_import(importer=importer, imported=imported)
    graph.add_import(importer="a.w", imported="a.v")
    assert import_cycles(graph, ("a", "b")) == [["a.x", "a.y", "a.z", "a.x"]]


def test_no_module_of_daemon_or_modeltui_is_part_of_an_import_cycle() -> None:
    """Every import counts, also those inside functions and under TYPE_CHECKING: a cycle is a cycle the day
    one of them moves to the top of its module."""
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    cycles = import_cycles(graph, PACKAGES)
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


@functools.cache
def loaded_after_import(module: str) -> frozenset[str]:
    """The modules a fresh interpreter has loaded after ``import module`` (one interpreter per module)."""
    code = f"import json, sys\nimport {module}\nprint(json.dumps(sorted(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return frozenset(json.loads(run.stdout))


def daemon_only(loaded: frozenset[str]) -> list[str]:
    return sorted(m for m in loaded if any(m == name or m.startswith(name + ".") for name in DAEMON_ONLY))


@pytest.mark.parametrize("module", ["modeltui", "modeltui.cli", "modeltui.app"])
def test_importing_the_client_loads_no_daemon_feature(module: str) -> None:
    assert daemon_only(loaded_after_import(module)) == []


def test_importing_the_cli_does_not_load_textual() -> None:
    """The TUI loads when it starts; a headless command never pays for it."""
    assert sorted(m for m in loaded_after_import("modeltui.cli") if m.split(".")[0] == "textual") == []


def test_the_load_check_sees_a_daemon_feature_that_is_loaded() -> None:
    """The check above could pass by looking at the wrong interpreter; the daemon's database module is seen."""
    assert {"daemon.store", "sqlalchemy"} <= set(daemon_only(loaded_after_import("daemon.store.engine")))
