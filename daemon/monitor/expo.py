"""A strict fast path for the plain Prometheus text exposition, with ``prometheus_client`` as the reference.

:func:`fast_samples` reads only the narrow form the runtime renders: ``# HELP``/``# TYPE`` lines, and
sample lines ``name{label="value",...} value`` with single spaces, decimal values (no NaN or infinities),
no escapes in label values, no timestamps, no exemplars, no blank lines but the last. Any line outside that
form makes it answer None, and the caller hands the whole text to ``prometheus_client``'s parser, which
decides (accepts it, or rejects it exactly as before). Where it answers, its samples are exactly the
parser's (tests compare both on the runtime's exposition and on generated ones).

The details it mirrors: a sample's value is read like the parser does (``float``, and an integer literal
through ``int``: ``-0`` is 0.0, and integers of up to 30 digits convert to the same float either way);
a counter family whose name does not end in ``_total`` renames its samples (the parser's OpenMetrics
munging), so such a sample defers, and so does a ``# TYPE`` line after samples of its family (the parser
gives them that type); label names starting with ``__`` and duplicate label names defer (the
parser rejects or reinterprets them).
"""

from __future__ import annotations

import re
from collections.abc import Collection

Labels = tuple[tuple[str, str], ...]
Sample = tuple[str, Labels, float]

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'(?!__)[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*"'
_VALUE = r"-?[0-9]{1,30}(?:\.[0-9]{0,40})?(?:[eE][+-]?[0-9]{1,3})?"
_SAMPLE = re.compile(rf"({_NAME})(?:\{{((?:{_LABEL}(?:,{_LABEL})*,?)?)\}})? ({_VALUE})")
_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"')
_HELP = re.compile(rf"# HELP ({_NAME})(?: [^\n]*)?")
_TYPE = re.compile(rf"# TYPE ({_NAME}) (counter|gauge|histogram|summary|untyped)")
_INTEGER = re.compile(r"-?[0-9]+")
#: Sample names a family of each type holds (the parser's ``allowed_names`` suffixes).
_SUFFIXES = {"summary": ("_count", "_sum", ""), "histogram": ("_count", "_sum", "_bucket")}

_label_cache: dict[str, Labels | None] = {}
_MISSING: Labels = (("", ""),)  # never a parsed label set (names are not empty)
_CACHE_MAX = 100_000


def _labels(text: str) -> Labels | None:
    """Sorted labels of a matched label block; None if a name repeats (the parser rejects that)."""
    got = _label_cache.get(text)
    if got is None and text not in _label_cache:
        pairs = _PAIR.findall(text)
        got = tuple(sorted(pairs)) if len({k for k, _ in pairs}) == len(pairs) else None
        if len(_label_cache) < _CACHE_MAX:
            _label_cache[text] = got
    return got


def fast_samples(text: str, keep: Collection[str], positions: list[int] | None = None) -> list[Sample] | None:
    """The samples named in ``keep`` in the exposition's order (values as the reference reads them), or
    None when the text is not entirely in the strict form (the reference parser must decide). With
    ``positions``, each kept sample's index among the text's sample lines is appended to it."""
    out: list[Sample] = []
    index = -1
    append = out.append
    match_sample = _SAMPLE.fullmatch
    family = ""  # the parser's current family: its name, type and the sample names it holds
    typ = "untyped"
    allowed: tuple[str, ...] = ()
    sampled = False  # the current family has had samples
    cached = _label_cache.get
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    for line in lines:
        if line[:1] == "#":
            m = _HELP.fullmatch(line)
            if m is not None:
                if m.group(1) != family:
                    family, typ, allowed, sampled = m.group(1), "untyped", (m.group(1),), False
                continue
            m = _TYPE.fullmatch(line)
            if m is None:
                return None
            name, typ = m.group(1), m.group(2)
            if typ == "counter" and name == "_total":
                return None  # the parser's family name would be empty
            if name == family and sampled:
                return None  # a type after the family's samples: the parser applies it to them
            family, sampled = name, False
            allowed = tuple(name + s for s in _SUFFIXES.get(typ, ("",)))
            continue
        m = match_sample(line)
        if m is None:
            return None
        index += 1
        name, block, token = m.groups()
        if name in allowed:
            if typ == "counter" and not family.endswith("_total"):
                return None  # the parser renames these samples to name_total
            sampled = True
        else:
            family, typ, allowed, sampled = "", "untyped", (), False
        if block:
            labels = cached(block, _MISSING)
            if labels is _MISSING:
                labels = _labels(block)
            if labels is None:
                return None
        else:
            labels = ()
        if name not in keep:
            continue
        append((name, labels, _value(token)))
        if positions is not None:
            positions.append(index)
    return out


def _value(token: str) -> float:
    value = float(token)
    if value == 0.0 and token[0] == "-" and _INTEGER.fullmatch(token):
        value = 0.0  # "-0" is an integer literal: the parser reads it through int, without the sign
    return value


_VALUES = re.compile(rf"(?:{_VALUE}\n)*")


class Reader:
    """:func:`fast_samples` with a memory of each target's last exposition: a runtime renders the same lines
    every time but for their values, so when the text without its value tokens (its skeleton) is the one
    read last time and every token is a strict decimal, the samples are the last ones with the new values,
    read at the remembered positions. Anything else is read in full (and remembered)."""

    def __init__(self, keep: Collection[str], max_targets: int = 10_000) -> None:
        self.keep = keep
        self.max_targets = max_targets
        self._plans: dict[str, tuple[str, list[tuple[int, str, Labels]]]] = {}

    def samples(self, target: str, text: str) -> list[Sample] | None:
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()
        heads: list[str] = []
        tokens: list[str] = []
        for line in lines:
            if line[:1] == "#":
                heads.append(line)
            else:
                head, _, token = line.rpartition(" ")
                heads.append(head)
                tokens.append(token)
        skeleton = "\n".join(heads)
        plan = self._plans.get(target)
        if plan is not None and plan[0] == skeleton:
            joined = "\n".join(tokens) + "\n"
            if _VALUES.fullmatch(joined):
                if "-" in joined:
                    return [(name, labels, _value(tokens[i])) for i, name, labels in plan[1]]
                return [(name, labels, float(tokens[i])) for i, name, labels in plan[1]]
        positions: list[int] = []
        out = fast_samples(text, self.keep, positions)
        if out is None:
            self._plans.pop(target, None)
            return None
        if len(self._plans) >= self.max_targets and target not in self._plans:
            self._plans.pop(next(iter(self._plans)))
        kept = [(i, name, labels) for i, (name, labels, _) in zip(positions, out, strict=True)]
        self._plans[target] = (skeleton, kept)
        return out

    def forget(self, target: str) -> None:
        self._plans.pop(target, None)
