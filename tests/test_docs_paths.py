"""Every file the docs name exists: a module moved by a refactor leaves no reader looking for it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: ``daemon/handlers/``, ``tests/helpers/daemon.py``…: a path of the repository, not part of a longer one
#: (``/etc/modeltui/…``, ``~/.local/state/modeltui``) nor a name that only starts like one (``modeltui/m-<digest>``).
TOP_DIRS = "daemon|modeltui|tests|bench|scripts|config|docs|\\.ci"
REPO_PATH = re.compile(rf"(?<![\w/.~$<-])((?:{TOP_DIRS})/[\w./-]*\w/?)(?![\w<-])")
#: ``[text](target)`` with a relative target (an anchor after ``#`` is not checked here).
LINK = re.compile(r"\]\((?!https?://|mailto:|#)([^)#\s]+)")
#: ``../shared/DESIGN.md``: a path relative to the doc, named in code style instead of linked
RELATIVE = re.compile(r"`(\.\./[^`\s]+)`")


def named_paths(text: str) -> set[str]:
    return {m.group(1).rstrip("/") for m in REPO_PATH.finditer(text)}


def missing_paths(doc: Path) -> list[str]:
    text = doc.read_text()
    missing = [p for p in sorted(named_paths(text)) if not (ROOT / p).exists()]
    relative = set(LINK.findall(text)) | set(RELATIVE.findall(text))
    missing += [f"{t} (relative to {doc.name})" for t in sorted(relative) if not (doc.parent / t).exists()]
    return missing


def test_the_path_finder_takes_repository_paths_only() -> None:
    text = (
        "see `daemon/handlers/dispatch.py` and daemon/store/, not /etc/modeltui/daemon.toml, "
        "~/.local/state/modeltui/daemon.log or repository `modeltui/m-<sha256>`"
    )
    assert named_paths(text) == {"daemon/handlers/dispatch.py", "daemon/store"}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_path_a_doc_names_exists(doc: Path) -> None:
    assert missing_paths(doc) == []
