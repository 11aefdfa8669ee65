"""The ```bash blocks of a Markdown file, in order, with what the README runner should do with each.

A block runs as written unless an HTML comment on the line just before its fence says otherwise:

* ``<!-- readme-runner: skip (why) -->``: not run (the TUI, ``systemctl``, the test suite itself);
* ``<!-- readme-runner: background until URL (why) -->``: a server, started in the background; the runner
  waits until ``URL`` answers 200, runs the blocks after it, and stops it when the document is done.

A marker with any other word, or a marker that is not followed by a ```bash block, is an error: a typo must
not quietly turn a block off.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

MARKER = re.compile(r"^<!--\s*readme-runner:\s*(?P<body>.*?)\s*-->\s*$")
BACKGROUND = re.compile(r"^background until (?P<url>https?://\S+)\s+\((?P<why>.+)\)$")
SKIP = re.compile(r"^skip \((?P<why>.+)\)$")


class MarkerError(ValueError):
    """A readme-runner marker the runner does not understand, or one without a block after it."""


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    code: str
    action: Literal["run", "skip", "background"] = "run"
    url: str = ""
    why: str = ""

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"


def _marker(path: Path, lineno: int, body: str) -> tuple[Literal["skip", "background"], str, str]:
    if found := SKIP.match(body):
        return "skip", "", found["why"]
    if found := BACKGROUND.match(body):
        return "background", found["url"], found["why"]
    raise MarkerError(f"{path.name}:{lineno}: unknown readme-runner marker {body!r} "
                      "(use 'skip (why)' or 'background until URL (why)')")


def bash_blocks(path: Path) -> list[Block]:
    """Every ```bash block of ``path`` in order, with its marker's action."""
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    pending: tuple[int, Literal["skip", "background"], str, str] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if found := MARKER.match(line.strip()):
            if pending is not None:
                raise MarkerError(f"{path.name}:{pending[0]}: readme-runner marker without a bash block after it")
            pending = (i + 1, *_marker(path, i + 1, found["body"]))
            i += 1
            continue
        if line.startswith("```"):
            lang = line[3:].strip()
            end = i + 1
            while end < len(lines) and not lines[end].startswith("```"):
                end += 1
            if lang == "bash":
                code = "\n".join(lines[i + 1 : end]) + "\n"
                if pending is None:
                    blocks.append(Block(path, i + 1, code))
                else:
                    blocks.append(Block(path, i + 1, code, pending[1], pending[2], pending[3]))
            elif pending is not None:
                raise MarkerError(f"{path.name}:{pending[0]}: readme-runner marker before a {lang or 'plain'} block")
            pending = None
            i = end + 1
            continue
        if line.strip() and pending is not None:
            raise MarkerError(f"{path.name}:{pending[0]}: readme-runner marker without a bash block right after it")
        i += 1
    if pending is not None:
        raise MarkerError(f"{path.name}:{pending[0]}: readme-runner marker at the end of the file")
    return blocks
