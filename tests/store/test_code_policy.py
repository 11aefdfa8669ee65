"""The run-code policy's decisions against a real registry (no daemon): what runs code, who may, approvals, the
gate before any start (system mode only), maintenance runs and their challengers, the recorded pickle scan."""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from daemon.protocol import requests as q
from daemon.protocol.errors import ProtocolError
from daemon.registry.codepolicy import PICKLE_ALLOW_ENV, CodePolicy
from daemon.registry.service import Registry
from daemon.settings import load_settings
from modeltui.cli.render import code_rows
from modeltui.widgets.detail_tables import code_pairs

Ingest = Callable[[Registry, Path], q.PushFile]
OWNER = os.getuid()


@dataclass(frozen=True)
class Who:
    uid: int
    user: str
    groups: frozenset[str] = field(default_factory=frozenset)


ADMIN = Who(OWNER, "owner")
OPERATOR = Who(OWNER + 4242, "bob", frozenset({"ops"}))


class _System:
    def __reduce__(self) -> Any:
        return (os.system, ("true",))


def _policy(reg: Registry, tmp_path: Path, run_code: str, mode: str = "system") -> CodePolicy:
    cfg = tmp_path / f"daemon-{run_code}-{mode}.toml"
    cfg.write_text(f'[access]\noperators = ["@ops"]\n[policy]\nrun_code = "{run_code}"\n')
    env = {"MODELTUI_MODE": mode, "MODELTUI_STATE_DIR": str(tmp_path / "state")}
    return CodePolicy(reg, load_settings(cfg, environ=env))


def _push(reg: Registry, ingest: Ingest, d: Path, manifest: str, files: dict[str, bytes]) -> int:
    d.mkdir()
    (d / "modeltui.toml").write_text(manifest)
    for name, data in files.items():
        (d / name).write_bytes(data)
    pushed = [ingest(reg, p) for p in sorted(d.iterdir())]
    return reg.push(q.Push(files=pushed), "bob").version.number


PY = 'name = "py"\nflavor = "python"\nmodel_file = "predict.py:predict"\n'
EVIL = 'name = "evil"\nflavor = "sklearn"\nmodel_file = "model.pkl"\ntrusted = true\n'
TRAIN = '\n[training]\ncommand = "python train.py --out {output}"\n'


def test_operators_are_refused_admins_approve_and_approvals_open_the_gate(
    reg: Registry, tmp_path: Path, ingest_path: Ingest
) -> None:
    n = _push(reg, ingest_path, tmp_path / "py", PY, {"predict.py": b"def predict(X):\n    return X\n"})
    policy = _policy(reg, tmp_path, "admin")
    with pytest.raises(ProtocolError) as refused:
        policy.check(OPERATOR, "py", n, "deploy")
    assert refused.value.code == "FORBIDDEN"
    assert '[policy] run_code = "admin"' in refused.value.message
    assert 'flavor = "python"' in refused.value.message
    with pytest.raises(ProtocolError):  # whoever causes a start (a rollout, a scheduled run): not approved
        policy.runtime_env("py", n)
    assert policy.start_refusal("py", n, None) is not None

    policy.check(ADMIN, "py", n, "deploy")  # the admin may, and that approves the version
    assert policy.version_code("py", n).approved_by == "owner"
    policy.check(OPERATOR, "py", n, "deploy")
    assert policy.runtime_env("py", n) == {}
    assert policy.start_refusal("py", n, None) is None


def test_operators_setting_and_user_mode(reg: Registry, tmp_path: Path, ingest_path: Ingest) -> None:
    n = _push(reg, ingest_path, tmp_path / "py", PY, {"predict.py": b"def predict(X):\n    return X\n"})
    _policy(reg, tmp_path, "operators").check(OPERATOR, "py", n, "deploy")
    assert _policy(reg, tmp_path, "operators").version_code("py", n).approved_by is None  # allowed, not approved
    assert _policy(reg, tmp_path, "admin", mode="user").runtime_env("py", n) == {}  # only the owner reaches it


def test_a_refused_pickle_is_code_and_the_runtime_gets_exactly_its_globals(
    reg: Registry, tmp_path: Path, ingest_path: Ingest
) -> None:
    n = _push(reg, ingest_path, tmp_path / "evil", EVIL, {"model.pkl": pickle.dumps(_System())})
    policy = _policy(reg, tmp_path, "admin")
    code = policy.version_code("evil", n)  # scanned on first need (the daemon scans right after the push)
    assert code.scan is not None
    assert code.refused_globals == ["posix.system"]
    assert any(k.startswith("trusted = true") and "posix.system" in k for k in code.runs_code)
    with pytest.raises(ProtocolError, match=r"posix\.system"):
        policy.check(OPERATOR, "evil", n, "deploy")
    policy.approve(f"evil:{n}", None, "reviewed", "owner")
    assert policy.runtime_env("evil", n) == {PICKLE_ALLOW_ENV: "posix.system"}
    detail = reg.show(q.Show(ref=f"evil:{n}"))
    shown = detail.code
    assert shown is not None
    assert shown.pickle_scan == "refused: posix.system in model.pkl"
    assert shown.approved_by == "owner"
    # what `modeltui show` and the TUI's version detail print from it
    rows = dict(code_rows(shown))
    assert rows["pickle scan"] == "refused: posix.system in model.pkl"
    assert rows["runs code"].endswith("(approved by owner)")
    assert dict(code_pairs(detail)) == rows


def test_training_commands_and_challengers(reg: Registry, tmp_path: Path, ingest_path: Ingest) -> None:
    files = {"model.skops": b"not read", "train.py": b""}
    sk = 'name = "sk"\nflavor = "sklearn"\nmodel_file = "model.skops"\n'
    n = _push(reg, ingest_path, tmp_path / "sk", sk + TRAIN, files)
    policy = _policy(reg, tmp_path, "admin")
    command = "python train.py --out {output}"
    assert policy.start_refusal("sk", n, command) is not None  # the manifest's own command, not approved
    assert policy.start_refusal("sk", n, "python other.py") is None  # set by maintain set (checked there)
    assert policy.start_refusal("sk", n, None) is None  # no command runs: nothing here runs code
    with pytest.raises(ProtocolError):
        policy.require_command(OPERATOR, "sk", "command")
    policy.require_command(ADMIN, "sk", "command")

    policy.approve(f"sk:{n}", None, "", "owner")
    child = _push(reg, ingest_path, tmp_path / "sk2", sk + TRAIN, {**files, "model.skops": b"retrained"})
    policy.inherit("sk", child, n, "maintenance run 1")
    assert policy.version_code("sk", child).approved_by == "owner"


def test_a_file_not_here_yet_is_refused_and_scanned_once_it_is(
    reg: Registry, tmp_path: Path, ingest_path: Ingest
) -> None:
    payload = pickle.dumps({"pad": b"x" * (2 << 20), "m": _System()})  # big enough to be a file object
    n = _push(reg, ingest_path, tmp_path / "evil", EVIL, {"model.pkl": payload})
    policy = _policy(reg, tmp_path, "admin")
    stored = reg.objects.path_of(hashlib.sha256(payload).hexdigest())
    aside = stored.with_name("aside")
    stored.rename(aside)  # as a cluster host has a mirrored version before its files arrive
    try:
        early = policy.version_code("evil", n)
        assert early.scan is not None
        assert early.scan["error"]
        assert early.runs_code  # refused meanwhile
    finally:
        aside.rename(stored)
    assert policy.version_code("evil", n).refused_globals == ["posix.system"]  # not the early error


def test_a_skops_trusted_list_is_code(reg: Registry, tmp_path: Path, ingest_path: Ingest) -> None:
    """``trusted = ["builtins.eval"]`` makes skops load that type: an operator's deploy is refused under the
    default policy until an admin approves (review finding 4); an empty list trusts nothing more."""
    listed = 'name = "sk"\nflavor = "sklearn"\nmodel_file = "Model.SKOPS"\ntrusted = ["builtins.eval"]\n'
    n = _push(reg, ingest_path, tmp_path / "sk", listed, {"Model.SKOPS": b"not read"})
    policy = _policy(reg, tmp_path, "admin")
    code = policy.version_code("sk", n)
    assert code.runs_code == ["trusted = [builtins.eval] (skops loads the listed types from Model.SKOPS)"]
    with pytest.raises(ProtocolError, match=r"builtins\.eval") as refused:
        policy.check(OPERATOR, "sk", n, "deploy")
    assert refused.value.code == "FORBIDDEN"
    with pytest.raises(ProtocolError):  # and no start whoever causes it
        policy.runtime_env("sk", n)
    policy.approve(f"sk:{n}", None, "reviewed", "owner")
    policy.check(OPERATOR, "sk", n, "deploy")
    assert policy.runtime_env("sk", n) == {}

    empty = 'name = "sk0"\nflavor = "sklearn"\nmodel_file = "model.skops"\ntrusted = []\n'
    m = _push(reg, ingest_path, tmp_path / "sk0", empty, {"model.skops": b"not read"})
    assert policy.version_code("sk0", m).runs_code == []
    policy.check(OPERATOR, "sk0", m, "deploy")


def test_the_policy_uses_no_private_registry_state() -> None:
    """codepolicy.py reads and records through the registry's public CodeStore (review finding 15)."""
    import daemon.registry.codepolicy as codepolicy

    source = Path(codepolicy.__file__).read_text()
    assert "registry._" not in source
    assert "sqlite3" not in source
