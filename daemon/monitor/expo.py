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
munging), so such a sample defers; label names starting with ``__`` and duplicate label names defer (the
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


def fast_samples(text: str, keep: Collection[str]) -> list[Sample] | None:
    """The samples named in ``keep`` in the exposition's order (values as the reference reads them), or
    None when the text is not entirely in the strict form (the reference parser must decide)."""
    out: list[Sample] = []
    append = out.append
    match_sample = _SAMPLE.fullmatch
    family = ""  # the parser's current family: its name, type and the sample names it holds
    typ = "untyped"
    allowed: tuple[str, ...] = ()
    cached = _label_cache.get
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    for line in lines:
        if line[:1] == "#":
            m = _HELP.fullmatch(line)
            if m is not None:
                if m.group(1) != family:
                    family, typ, allowed = m.group(1), "untyped", (m.group(1),)
                continue
            m = _TYPE.fullmatch(line)
            if m is None:
                return None
            name, typ = m.group(1), m.group(2)
            if typ == "counter" and name == "_total":
                return None  # the parser's family name would be empty
            family = name
            allowed = tuple(name + s for s in _SUFFIXES.get(typ, ("",)))
            continue
        m = match_sample(line)
        if m is None:
            return None
        name, block, token = m.groups()
        if name in allowed:
            if typ == "counter" and not family.endswith("_total"):
                return None  # the parser renames these samples to name_total
        else:
            family, typ, allowed = "", "untyped", ()
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
        value = float(token)
        if value == 0.0 and token[0] == "-" and _INTEGER.fullmatch(token):
            value = 0.0  # "-0" is an integer literal: the parser reads it through int, without the sign
        append((name, labels, value))
    return out
