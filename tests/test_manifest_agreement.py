"""The registry's manifest schema (daemon.protocol) and the serving runtime's own reader (daemon.serving,
which imports nothing else from daemon) must accept and refuse the same manifests: otherwise a version
could be pushed that no deployment can serve."""

from __future__ import annotations

import pytest

from daemon.protocol.manifest import parse_manifest as registry_parse
from daemon.serving.manifest import ManifestError
from daemon.serving.manifest import parse_manifest as serving_parse
from tests.helpers.paths import EXAMPLE

BASE = 'name = "m"\nflavor = "sklearn"\nmodel_file = "model.skops"\n'
SIG = '[signature]\ninputs = [{name = "a", type = "double"}, {name = "b", type = "long"}]\n'

CASES = {
    "example": ((EXAMPLE / "modeltui.toml").read_text(), True),
    "minimal": (BASE, True),
    "signature": (BASE + SIG, True),
    "python entry point": ('name = "p"\nflavor = "python"\nmodel_file = "predict.py:predict"\n', True),
    "unknown flavor": ('name = "m"\nflavor = "keras"\nmodel_file = "m.h5"\n', False),
    "unknown column type": (BASE + '[signature]\ninputs = [{name = "a", type = "decimal"}]\n', False),
    "duplicate input column": (BASE + '[signature]\ninputs = [{name = "a"}, {name = "a"}]\n', False),
    "no name": ('flavor = "sklearn"\nmodel_file = "model.skops"\n', False),
    "trusted not a bool": (BASE + 'trusted = "yes"\n', False),
    "trusted type list": (BASE + 'trusted = ["sklearn.tree._tree.Tree", "numpy.dtype"]\n', True),
    "trusted true": (BASE + "trusted = true\n", True),
    "trusted false": (BASE + "trusted = false\n", True),
    "trusted list with a non-type": (BASE + 'trusted = ["os; rm -rf /"]\n', False),
    "trusted list of numbers": (BASE + "trusted = [1]\n", False),
    "model_file not a string": ('name = "m"\nflavor = "sklearn"\nmodel_file = 3\n', False),
    "not TOML": ("name = ", False),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_both_readers_agree(case: str) -> None:
    text, accepted = CASES[case]
    data = text.encode()
    if accepted:
        registry_parse(data)
        serving_parse(data)
    else:
        with pytest.raises(ValueError, match=r"."):
            registry_parse(data)
        with pytest.raises(ManifestError):
            serving_parse(data)
