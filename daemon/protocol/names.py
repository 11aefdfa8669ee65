"""Validation of every name a user or a peer can send: models, aliases, tags, file paths and refs.

Names end up in file paths, terminals and (later) ZooKeeper paths, so they are restricted to a safe,
printable alphabet with a bounded length; anything else is rejected with a message saying why.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator

MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ALIAS_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
TAG_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}$")
MAX_TAG_VALUE = 256
MAX_TEXT = 4096
MAX_PATH = 1024


def _describe(value: str) -> str:
    shown = value if len(value) <= 40 else value[:40] + "…"
    return repr(shown)


def check_model_name(value: str) -> str:
    if not MODEL_NAME_RE.fullmatch(value) or ".." in value:
        raise ValueError(
            f"invalid model name {_describe(value)}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def check_alias(value: str) -> str:
    if not ALIAS_RE.fullmatch(value):
        raise ValueError(
            f"invalid alias {_describe(value)}: use 1-63 lowercase letters, digits, '_' or '-', starting with a letter"
        )
    if value.isdigit() or value == "latest":
        raise ValueError(f"alias {value!r} is reserved")
    return value


def check_tag_key(value: str) -> str:
    if not TAG_KEY_RE.fullmatch(value):
        raise ValueError(f"invalid tag key {_describe(value)}: use 1-63 letters, digits, '_', '.' or '-'")
    return value


def check_text(value: str, *, limit: int = MAX_TEXT, what: str = "text", multiline: bool = True) -> str:
    """Printable text: no control characters (newlines allowed when multiline), bounded length."""
    if len(value) > limit:
        raise ValueError(f"{what} is {len(value)} characters long; the limit is {limit}")
    for ch in value:
        if ch in "\n\t" and multiline:
            continue
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            raise ValueError(f"{what} contains a control character {ch!r}")
    return value


def check_tag_value(value: str) -> str:
    return check_text(value, limit=MAX_TAG_VALUE, what="tag value", multiline=False)


def check_rel_path(value: str) -> str:
    """A relative POSIX path inside a model directory: no '..', no absolute path, no control characters."""
    check_text(value, limit=MAX_PATH, what="file path", multiline=False)
    if not value or value.startswith("/") or "\\" in value:
        raise ValueError(f"invalid file path {_describe(value)}: must be relative, '/'-separated")
    parts = value.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid file path {_describe(value)}: empty, '.' or '..' component")
    return value


def check_sha256(value: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError(f"invalid sha256 digest {_describe(value)}")
    return value


ModelName = Annotated[str, AfterValidator(check_model_name)]
AliasName = Annotated[str, AfterValidator(check_alias)]
TagKey = Annotated[str, AfterValidator(check_tag_key)]
TagValue = Annotated[str, AfterValidator(check_tag_value)]
Text = Annotated[str, AfterValidator(check_text)]
Line = Annotated[str, AfterValidator(lambda v: check_text(v, limit=512, what="text", multiline=False))]
RelPath = Annotated[str, AfterValidator(check_rel_path)]
Sha256 = Annotated[str, AfterValidator(check_sha256)]


@dataclass(frozen=True)
class Ref:
    """A parsed version reference: ``NAME`` (latest), ``NAME:3`` or ``NAME@alias``."""

    name: str
    number: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.number is not None:
            return f"{self.name}:{self.number}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


def parse_ref(value: str) -> Ref:
    """Parse ``NAME``, ``NAME:N`` or ``NAME@ALIAS``; raises ValueError with a readable message."""
    if "@" in value:
        name, _, alias = value.partition("@")
        return Ref(check_model_name(name), alias=check_alias(alias))
    if ":" in value:
        name, _, num = value.partition(":")
        if not num.isdigit() or not num.isascii() or int(num) < 1 or len(num) > 9:
            raise ValueError(f"invalid version number in {_describe(value)}: expected NAME:N with N >= 1")
        return Ref(check_model_name(name), number=int(num))
    return Ref(check_model_name(value))


def check_ref(value: str) -> str:
    parse_ref(value)
    return value


RefStr = Annotated[str, AfterValidator(check_ref)]
