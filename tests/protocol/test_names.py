"""Names and refs: what users type is accepted or refused with a message that says why."""

from __future__ import annotations

import pytest

from daemon.protocol.manifest import parse_manifest
from daemon.protocol.names import Ref, check_alias, check_model_name, check_rel_path, parse_ref


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("churn", Ref("churn")),
        ("churn:3", Ref("churn", number=3)),
        ("churn@production", Ref("churn", alias="production")),
        ("my.model-v2_x", Ref("my.model-v2_x")),
    ],
)
def test_refs_parse(text: str, ref: Ref) -> None:
    assert parse_ref(text) == ref
    assert str(ref) == text


@pytest.mark.parametrize("text", ["", "../x", "a/b", "a:0", "a:-1", "a:x", "a@", "a@B", "-a", "a\x00", "é" * 3,
                                  "x" * 129, "a:1@b", ".hidden", "a..b"])
def test_bad_refs_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"invalid|reserved"):
        parse_ref(text)


def test_messages_do_not_echo_long_or_control_input() -> None:
    with pytest.raises(ValueError, match="invalid model name") as info:
        check_model_name("\x1b]0;pwned\x07" + "x" * 10_000)
    assert len(str(info.value)) < 300


def test_reserved_aliases() -> None:
    with pytest.raises(ValueError, match="reserved"):
        check_alias("latest")


@pytest.mark.parametrize("path", ["a/../b", "/abs", "a//b", "./a", "a\\b", "a\nb", ""])
def test_bad_paths(path: str) -> None:
    with pytest.raises(ValueError, match=r"invalid file path|control"):
        check_rel_path(path)


def test_manifest_wrong_types_name_the_field() -> None:
    bad = b'name = "m"\nflavor = "sklearn"\nmodel_file = "m.skops"\n[metrics]\naccuracy = "high"\n'
    with pytest.raises(ValueError, match=r"metrics\.accuracy"):
        parse_manifest(bad)
    with pytest.raises(ValueError, match="not valid TOML"):
        parse_manifest(b"name = ")
    with pytest.raises(ValueError, match="flavor"):
        parse_manifest(b'name = "m"\nflavor = "keras"\nmodel_file = "m"\n')
