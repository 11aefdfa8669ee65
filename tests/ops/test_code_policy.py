"""``[policy] run_code`` with real users: an operator's deploy (or alias move) of a version whose manifest runs
code is refused under the default ("admin"), an admin's is allowed (and approves the version), an admin's
``approve-code`` lets the operator deploy it, and ``run_code = "operators"`` lets operators; pickles are
scanned at push time and ``show`` says the result."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib  # type: ignore[import-untyped]
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from tests.helpers.daemon import DaemonProcess
from tests.helpers.real_users import ACCESS_CONFIG, SERVICE, cli, system_daemon_process
from tests.helpers.serving import write_python_model

pytestmark = pytest.mark.integration

OPERATOR = "mtui-bob"
ADMIN = SERVICE  # the daemon's own user is admin
CODE = "def predict(X):\n    return [float(sum(row)) for row in X]\n"
TWO = '{ name = "a", type = "double" }, { name = "b", type = "double" }'


class _System:
    def __reduce__(self) -> Any:
        return (os.system, ("touch /tmp/modeltui-code-policy-pwned",))


@pytest.fixture(scope="module")
def models() -> Iterator[Path]:
    """Model directories every test user can read."""
    base = Path(tempfile.mkdtemp(prefix="mtui-code-"))
    write_python_model(base / "py1", CODE, inputs=TWO)
    write_python_model(base / "py2", CODE.replace("sum(row)", "sum(row) * 2"), inputs=TWO)
    for name, payload in (("evil", pickle.dumps(_System())), ("real", _joblib_model())):
        (base / name).mkdir()
        suffix = "pkl" if name == "evil" else "joblib"
        (base / name / f"model.{suffix}").write_bytes(payload)
        (base / name / "modeltui.toml").write_text(
            f'name = "{name}-pickle"\nflavor = "sklearn"\nmodel_file = "model.{suffix}"\ntrusted = true\n'
            f"[signature]\ninputs = [{TWO}]\n"
        )
    for root, _dirs, files in os.walk(base):
        os.chmod(root, 0o755)
        for f in files:
            os.chmod(Path(root) / f, 0o644)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def _joblib_model() -> bytes:
    x = np.random.default_rng(0).random((40, 2))
    out = io.BytesIO()
    joblib.dump(LogisticRegression().fit(x, (x[:, 0] > 0.5).astype(int)), out)
    return out.getvalue()


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    yield from system_daemon_process(ACCESS_CONFIG, "mtui-code-")


def ok(d: DaemonProcess, user: str, *args: str) -> str:
    got = cli(d, user, *args)
    assert got.returncode == 0, (args, got.stdout, got.stderr)
    return got.stdout


def refused(d: DaemonProcess, user: str, *args: str) -> str:
    got = cli(d, user, *args)
    assert got.returncode == 6, (args, got.stdout, got.stderr)  # FORBIDDEN
    return got.stderr


def test_python_flavour_needs_an_admin_or_an_approval(daemon: DaemonProcess, models: Path) -> None:
    d = daemon
    ok(d, OPERATOR, "push", str(models / "py1"))
    err = refused(d, OPERATOR, "deploy", "py-model:1", "--no-wait")
    assert "[policy] run_code" in err
    assert 'flavor = "python"' in err
    assert "modeltui approve-code py-model:1" in err
    assert "runs code" in ok(d, OPERATOR, "show", "py-model:1")
    assert "not approved" in ok(d, OPERATOR, "show", "py-model:1")

    # An admin may (and that approves the version).
    ok(d, ADMIN, "deploy", "py-model:1", "--name", "py-admin", "--no-wait")
    assert "approved by mtui-svc" in ok(d, OPERATOR, "show", "py-model:1")
    ok(d, ADMIN, "undeploy", "py-admin")

    # approve-code: admins only; then the operator deploys the approved version.
    ok(d, OPERATOR, "push", str(models / "py2"))
    refused(d, OPERATOR, "deploy", "py-model:2", "--no-wait")
    refused(d, OPERATOR, "approve-code", "py-model:2")
    ok(d, ADMIN, "approve-code", "py-model:2", "--reason", "reviewed predict.py")
    ok(d, OPERATOR, "deploy", "py-model:2", "--name", "py-op", "--no-wait")
    ok(d, OPERATOR, "undeploy", "py-op")

    # A maintenance policy's own training command: chosen by admins only.
    err = refused(d, OPERATOR, "maintain", "set", "py-model", "command=sh -c true")
    assert "[policy] run_code" in err
    assert "training command" in err


def test_an_alias_move_that_rolls_code_out_is_checked(daemon: DaemonProcess, models: Path) -> None:
    d = daemon
    ok(d, OPERATOR, "push", str(models / "real"), "--name", "alias-model")  # a pickle the scan passes
    ok(d, OPERATOR, "push", str(models / "py1"), "--name", "alias-model")  # version 2: python
    ok(d, OPERATOR, "alias", "set", "alias-model", "prod", "1")
    ok(d, OPERATOR, "deploy", "alias-model@prod", "--name", "follow", "--no-wait")
    err = refused(d, OPERATOR, "alias", "set", "alias-model", "prod", "2")
    assert "[policy] run_code" in err
    ok(d, OPERATOR, "alias", "set", "alias-model", "staging", "2")  # nothing follows staging: nothing runs
    # A push that moves the alias is stored, but nothing starts the unapproved code (whoever caused the start)
    ok(d, OPERATOR, "push", str(models / "py2"), "--name", "alias-model", "--alias", "prod")
    deadline = time.monotonic() + 60
    while "no admin approved it" not in (events := ok(d, OPERATOR, "ps", "follow", "--events", "50", "--json")):
        assert time.monotonic() < deadline, events
        time.sleep(0.5)
    ok(d, OPERATOR, "undeploy", "follow")


def test_pickles_are_scanned_at_push_and_a_refused_one_needs_an_admin(daemon: DaemonProcess, models: Path) -> None:
    d = daemon
    marker = Path("/tmp/modeltui-code-policy-pwned")
    marker.unlink(missing_ok=True)
    ok(d, OPERATOR, "push", str(models / "evil"))
    shown = ok(d, OPERATOR, "show", "evil-pickle:1")
    assert "refused: posix.system in model.pkl" in shown
    err = refused(d, OPERATOR, "deploy", "evil-pickle:1", "--no-wait")
    assert "trusted = true" in err
    assert "posix.system" in err

    ok(d, OPERATOR, "push", str(models / "real"))
    shown = ok(d, OPERATOR, "show", "real-pickle:1")
    assert "pickle scan  ok (" in shown
    assert "all allowed" in shown
    ok(d, OPERATOR, "deploy", "real-pickle:1", "--name", "real", "--no-wait")  # no code runs: operators may
    ok(d, OPERATOR, "undeploy", "real")
    assert not marker.exists()


@pytest.fixture
def operators_daemon() -> Iterator[DaemonProcess]:
    yield from system_daemon_process(ACCESS_CONFIG + '[policy]\nrun_code = "operators"\n', "mtui-code-ops-")


def test_run_code_operators_lets_operators(operators_daemon: DaemonProcess, models: Path) -> None:
    d = operators_daemon
    ok(d, OPERATOR, "push", str(models / "py1"))
    ok(d, OPERATOR, "deploy", "py-model:1", "--name", "py-op", "--no-wait")
    assert "not approved" in ok(d, OPERATOR, "show", "py-model:1")  # allowed by the setting, not approved
    ok(d, OPERATOR, "undeploy", "py-op")
