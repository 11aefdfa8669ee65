#!/usr/bin/env bash
# Create bench/registry/.venv-mlflow: an isolated venv holding MLflow, the peer that
# bench/registry/run.py compares modeltui's registry against. Kept out of the project's
# own venv on purpose (MLflow pins many packages). Idempotent: re-running upgrades nothing
# unless MLFLOW_SPEC changes.
#
#   bash bench/registry/setup_mlflow.sh            # full mlflow (default)
#   MLFLOW_SPEC="mlflow==3.*" bash bench/registry/setup_mlflow.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${MLFLOW_VENV:-$here/.venv-mlflow}"
spec="${MLFLOW_SPEC:-mlflow}"
python="${PYTHON:-python3}"

start=$(date +%s)
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
fi
"$venv/bin/python" -m pip install --quiet "$spec"
"$venv/bin/python" -c 'import mlflow; print("mlflow", mlflow.__version__)'
end=$(date +%s)
echo "venv: $venv"
echo "install time: $((end - start)) s"
echo "size: $(du -sh "$venv" | cut -f1)"
