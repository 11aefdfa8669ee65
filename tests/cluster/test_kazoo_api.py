"""Every kazoo method the cluster code calls exists in the installed kazoo.

kazoo has no type hints, so mypy cannot see a misspelt method (``set_data_async`` instead of ``set_async``
left every deployment node "starting" on other hosts). This reads the cluster package's source and checks
each attribute taken from the ZooKeeper client (``….client.X``, a local ``client = self.zk.client``) and from
a transaction (``txn = client.transaction()``) against kazoo's classes.
"""

from __future__ import annotations

import ast
from pathlib import Path

from kazoo.client import KazooClient, TransactionRequest

CLUSTER = Path(__file__).resolve().parents[2] / "daemon" / "cluster"


def _is_client(node: ast.expr, clients: set[str]) -> bool:
    """``self.zk.client``, ``zk.client``, ``self.client`` (in Zk itself) or a local bound to one of them."""
    if isinstance(node, ast.Name):
        return node.id in clients
    return isinstance(node, ast.Attribute) and node.attr == "client" and not _is_module(node.value)


def _is_module(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "http"  # http.client is the standard library's


def kazoo_uses(source: str) -> list[tuple[str, str, int]]:
    """(kazoo class, attribute, line) for each attribute the source takes from a kazoo client or transaction."""
    uses: list[tuple[str, str, int]] = []
    for func in ast.walk(ast.parse(source)):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        clients: set[str] = set()
        transactions: set[str] = set()
        for node in ast.walk(func):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                value, name = node.value, node.targets[0].id
                if _is_client(value, clients):
                    clients.add(name)
                elif isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) \
                        and value.func.attr == "transaction" and _is_client(value.func.value, clients):  # fmt: skip
                    transactions.add(name)
        for node in ast.walk(func):
            if not isinstance(node, ast.Attribute):
                continue
            if _is_client(node.value, clients):
                uses.append(("KazooClient", node.attr, node.lineno))
            elif isinstance(node.value, ast.Name) and node.value.id in transactions:
                uses.append(("TransactionRequest", node.attr, node.lineno))
    return uses


def test_the_checker_sees_a_misspelt_method() -> None:
    source = "def f(self):\n    client = self.zk.client\n    self.zk.call('x', client.set_data_async, 'p', b'')\n"
    assert ("KazooClient", "set_data_async", 3) in kazoo_uses(source)


def test_every_kazoo_method_the_cluster_code_calls_exists() -> None:
    kinds = {"KazooClient": KazooClient, "TransactionRequest": TransactionRequest}
    seen: list[str] = []
    missing: list[str] = []
    for path in sorted(CLUSTER.glob("*.py")):
        for kind, attr, line in kazoo_uses(path.read_text()):
            seen.append(attr)
            if not hasattr(kinds[kind], attr):
                missing.append(f"{path.name}:{line}: {kind}.{attr}")
    assert not missing, f"not in the installed kazoo: {missing}"
    assert {"create_async", "get_async", "set_async", "delete_async", "commit_async"} <= set(seen)
