"""Manifest strings that reach terminals are printable, and nesting is bounded before anything recurses."""

from __future__ import annotations

import pytest

from daemon.protocol.manifest import MAX_NESTING, parse_manifest

BASE = b'name = "m"\nflavor = "sklearn"\nmodel_file = "model.skops"\n'


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        (b'[signature]\ninputs = [{name = "a\\u001b[2Jb"}]\n', "signature.inputs.0.name"),
        (b'[signature]\noutputs = [{name = "a\\u0085b"}]\n', "signature.outputs.0.name"),
        (b'[params]\nkernel = "r\\u009bbf"\n', "params.kernel"),
        (b'requirements = ["numpy\\n==1.0"]\n', "requirements.0"),
        (b'[evaluation]\ndata = "model.skops"\ntarget = "y\\u0007"\n', "evaluation.target"),
    ],
)
def test_control_characters_are_refused_naming_the_field(extra: bytes, where: str) -> None:
    with pytest.raises(ValueError, match="control character") as caught:
        parse_manifest(BASE + extra)
    assert where in str(caught.value)


def test_printable_strings_still_pass() -> None:
    m = parse_manifest(BASE + b'requirements = ["numpy>=1.26"]\n[params]\nkernel = "rbf"\nC = 1.5\nfit = true\n'
                       b'[signature]\ninputs = [{name = "mean radius (mm)"}]\n')  # fmt: skip
    assert m.params == {"kernel": "rbf", "C": 1.5, "fit": True}
    assert m.signature.inputs[0].name == "mean radius (mm)"


@pytest.mark.parametrize(
    "extra",
    [
        b"x = " + b"[" * 5000 + b"]" * 5000 + b"\n",  # the parser's own recursion
        b"x = " + b"{a=" * 900 + b"1" + b"}" * 900 + b"\n",
        b"[maintenance]\n" + b"a." * 5000 + b"b = 1\n",  # dotted keys: deep without any recursion in the parser
        b"x = " + b"[" * (MAX_NESTING + 1) + b"]" * (MAX_NESTING + 1) + b"\n",
    ],
)
def test_deep_nesting_is_refused_with_a_readable_message(extra: bytes) -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_manifest(BASE + extra)


def test_nesting_up_to_the_limit_is_accepted() -> None:
    depth = MAX_NESTING - 1  # the document itself is one level
    parse_manifest(BASE + b"[maintenance]\nx = " + b"[" * (depth - 1) + b"]" * (depth - 1) + b"\n")
