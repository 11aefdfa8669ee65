"""Maintenance under ``[signing] require = "promote"`` (docs/security.md, "Signed versions"): a challenger the
daemon pushed is unsigned, so an operator's approval is refused (the run still awaits approval) until someone
signs the challenger with an allowed key; a real daemon, real worker processes, the example's own training
command and a real ``ssh-keygen``."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tests.helpers.daemon import DaemonProcess, cli_json
from tests.helpers.example_data import EXAMPLE_MODEL, shifted_model
from tests.helpers.prerequisites import need

MODEL = EXAMPLE_MODEL
POLICY = ["data=fresh_train.csv", "holdout=fresh_holdout.csv", "target=target", "metric=f1", "min_improvement=0"]


def test_an_unsigned_challenger_is_not_promoted_until_it_is_signed(
    daemon_factory: object, example_dir: Path, tmp_path: Path
) -> None:
    need(shutil.which("ssh-keygen") is not None, "versions are signed with a real ssh-keygen")
    key = tmp_path / "alice"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    kind, blob = key.with_suffix(".pub").read_text().split()[:2]
    (tmp_path / "allowed_signers").write_text(f"alice@example.com {kind} {blob}\n")
    d: DaemonProcess = daemon_factory()  # type: ignore[operator]
    config = f'[signing]\nallowed_signers = "{tmp_path / "allowed_signers"}"\nrequire = "promote"\n'
    Path(d.env["MODELTUI_CONFIG"]).write_text(config)
    d.start()
    model = shifted_model(example_dir, tmp_path)
    pushed = d.cli("push", str(model), "--sign", "-k", str(key), "--alias", "production")
    assert pushed.returncode == 0, pushed.stderr

    assert d.cli("maintain", "set", MODEL, *POLICY, "promote=approve").returncode == 0
    waiting = json.loads(d.cli("maintain", "run-now", MODEL, "--wait", "--json").stdout)
    assert waiting["state"] == "awaiting_approval"
    challenger = waiting["challenger"]
    refused = d.cli("maintain", "approve", str(waiting["id"]))
    assert refused.returncode == 5
    assert f'{MODEL}:{challenger} is unsigned and [signing] require = "promote"' in refused.stderr
    assert cli_json(d, "maintain", "show", str(waiting["id"]))["state"] == "awaiting_approval"

    assert d.cli("sign", f"{MODEL}:{challenger}", "-k", str(key)).returncode == 0
    assert cli_json(d, "maintain", "approve", str(waiting["id"]))["state"] == "promoted"
    assert cli_json(d, "show", f"{MODEL}@production")["version"]["number"] == challenger
