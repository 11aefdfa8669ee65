#!/usr/bin/env bash
# Create bench/serving/.venv-bentoml: an isolated venv holding BentoML, the second peer that
# bench/serving/run.py compares modeltui's serving runtime against. Kept out of the project's own
# venv (BentoML pins many packages) and out of git (.gitignore). scikit-learn and numpy are pinned to
# the project venv's versions when that venv exists, so the model run.py trains and hands over is the
# same model on both sides (bento_service.py refuses to go on otherwise). Idempotent.
#
#   bash bench/serving/setup_bentoml.sh
#   BENTOML_SPEC="bentoml==1.4.*" bash bench/serving/setup_bentoml.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${BENTOML_VENV:-$here/.venv-bentoml}"
spec="${BENTOML_SPEC:-bentoml}"
python="${PYTHON:-python3}"

sk_spec="scikit-learn"
np_spec="numpy"
if [ -x "$repo/.venv/bin/python" ]; then
    sk="$("$repo/.venv/bin/python" -c 'import sklearn; print(sklearn.__version__)' 2>/dev/null || true)"
    np="$("$repo/.venv/bin/python" -c 'import numpy; print(numpy.__version__)' 2>/dev/null || true)"
    [ -n "$sk" ] && sk_spec="scikit-learn==$sk"
    [ -n "$np" ] && np_spec="numpy==$np"
fi

start=$(date +%s)
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
fi
"$venv/bin/python" -m pip install --quiet "$spec" "$sk_spec" "$np_spec"
"$venv/bin/python" -c 'import bentoml, sklearn, numpy; print("bentoml", bentoml.__version__, "scikit-learn", sklearn.__version__, "numpy", numpy.__version__)'
end=$(date +%s)
echo "venv: $venv"
echo "install time: $((end - start)) s"
echo "size: $(du -sh "$venv" | cut -f1)"
