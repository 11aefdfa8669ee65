"""The fast exposition parser against prometheus_client's: identical samples where it answers, deferral (and
then the reference's verdict, acceptance or rejection) everywhere else."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from daemon.monitor.derive import KEPT
from daemon.monitor.expo import Reader, fast_samples
from daemon.monitor.scrape import parse, parse_reference
from daemon.serving.drift import Feature, FeatureHistograms
from daemon.serving.metrics import Metrics

EVERYTHING = type("Everything", (), {"__contains__": lambda self, x: True})()


def reference_all(text: str) -> list[tuple[str, tuple[tuple[str, str], ...], str]]:
    """Every sample of every family as prometheus_client parses it (values by repr: NaN compares)."""
    return [
        (s.name, tuple(sorted(s.labels.items())), repr(float(s.value)))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def fast_all(text: str) -> list[tuple[str, tuple[tuple[str, str], ...], str]] | None:
    got = fast_samples(text, EVERYTHING)
    return None if got is None else [(n, lab, repr(v)) for n, lab, v in got]


def outcome(fn: Callable[[str], object], text: str) -> object:
    try:
        return fn(text)
    except Exception as exc:  # the kind of failure is part of the behaviour
        return type(exc)


def runtime_exposition(seed: int = 0, *, features: int = 10, classes: int = 3) -> str:
    rng = np.random.default_rng(seed)
    m = Metrics(f"model-{seed:04d}", "3", "sklearn")
    m.ready = True
    feats = [
        Feature(f"f{j}", j, tuple(float(b) for b in np.round(np.sort(rng.normal(j, j + 1, 9)), 6)),
                tuple(round(0.1 * (k + 1), 2) for k in range(9)), 10_000)
        for j in range(features)
    ]  # fmt: skip
    m.features = FeatureHistograms(feats)
    for i in range(int(rng.integers(50, 400))):
        m.request(("/invocations", "/predict", "/health", "/feedback")[i % 4], (200, 200, 400, 500)[i % 4],
                  float(rng.lognormal(-5, 1)))  # fmt: skip
        m.batch.observe(int(rng.integers(1, 9)))
        m.predict_seconds.observe(float(rng.lognormal(-6, 0.5)))
    m.class_labels([str(c) for c in rng.integers(0, classes, 300)])
    for p in range(classes):
        for a in range(classes):
            m.feedback[(str(p), str(a))] += int(rng.integers(0, 30))
    m.feedback_unknown = 2
    m.features.observe(rng.normal(np.arange(features), np.arange(1, features + 1), size=(500, features)))
    return m.render().decode()


@pytest.mark.parametrize("seed", range(8))
def test_runtime_exposition_is_read_exactly_like_the_reference(seed: int) -> None:
    text = runtime_exposition(seed, features=seed + 1, classes=2 + seed % 4)
    fast = fast_all(text)
    assert fast is not None  # the runtime's own exposition never needs the slow parser
    assert fast == reference_all(text)
    assert len(fast) > 100
    assert parse(text) == parse_reference(text)
    names = {n for n, _, _ in parse(text)}
    assert {"modeltui_requests_total", "modeltui_feedback_total", "modeltui_feature_value_bucket"} <= names
    assert names <= KEPT


PLAIN = (
    "# HELP modeltui_requests_total Requests.\n"
    "# TYPE modeltui_requests_total counter\n"
    'modeltui_requests_total{endpoint="/predict",status="200"} 12\n'
)

# Each is the plain exposition with one line changed; the fast path must hand every one to the reference.
DEFERRED = {
    "escaped quote": 'modeltui_requests_total{endpoint="/a\\"b",status="200"} 1',
    "escaped backslash": 'modeltui_requests_total{endpoint="a\\\\b",status="200"} 1',
    "escaped newline": 'modeltui_requests_total{endpoint="a\\nb",status="200"} 1',
    "exemplar": 'modeltui_requests_total{endpoint="/p",status="200"} 1 # {trace_id="abc"} 1.0',
    "timestamp": 'modeltui_requests_total{endpoint="/p",status="200"} 1 1700000000000',
    "NaN value": 'modeltui_requests_total{endpoint="/p",status="200"} NaN',
    "+Inf value": "modeltui_feature_reference_ratio +Inf",
    "-Inf value": "modeltui_feature_reference_ratio -Inf",
    "nan value": "modeltui_feature_reference_ratio nan",
    "plain comment": "# just a comment",
    "comment without space": "#TYPE modeltui_requests_total counter",
    "blank line": "",
    "whitespace line": "   ",
    "leading space": ' modeltui_requests_total{endpoint="/p",status="200"} 1',
    "two spaces": 'modeltui_requests_total{endpoint="/p",status="200"}  1',
    "tab": 'modeltui_requests_total{endpoint="/p",status="200"}\t1',
    "spaces in labels": 'modeltui_requests_total{endpoint = "/p", status="200"} 1',
    "carriage return": 'modeltui_requests_total{endpoint="/p",status="200"} 1\r',
    "underscore value": 'modeltui_requests_total{endpoint="/p",status="200"} 1_000',
    "hex value": 'modeltui_requests_total{endpoint="/p",status="200"} 0x10',
    "leading plus": 'modeltui_requests_total{endpoint="/p",status="200"} +1',
    "huge integer": "modeltui_feature_reference_ratio " + "9" * 400,
    "duplicate label": 'modeltui_requests_total{status="200",status="500"} 1',
    "reserved label": 'modeltui_requests_total{__name__="x",status="200"} 1',
    "missing comma": 'modeltui_requests_total{endpoint="/p"status="200"} 1',
    "unquoted value": "modeltui_requests_total{endpoint=/p} 1",
    "no value": 'modeltui_requests_total{endpoint="/p"}',
    "garbage": "\x00\x01 this is { not metrics",
    "html": "<html>}}}",
    "unknown type": "# TYPE modeltui_requests_total bogus",
    "info type": "# TYPE modeltui_requests_total info",
    "short TYPE": "# TYPE modeltui_requests_total",
    "counter renamed": "# TYPE modeltui_feedback counter\nmodeltui_feedback 3",
    "empty counter name": "# TYPE _total counter",
    "utf-8 name in braces": '{"modeltui.requests",status="200"} 1',
    "label name with dash": 'modeltui_requests_total{end-point="/p"} 1',
    "unicode digits": "modeltui_feature_reference_ratio ١٢",
}


@pytest.mark.parametrize("line", DEFERRED.values(), ids=DEFERRED.keys())
def test_anything_outside_the_strict_form_goes_to_the_reference(line: str) -> None:
    for text in (PLAIN + line + "\n", line + "\n" + PLAIN, *([PLAIN + line] if line else [])):
        assert fast_samples(text, KEPT) is None, repr(text)
        assert outcome(parse, text) == outcome(parse_reference, text)


def test_garbage_is_still_rejected_and_odd_but_valid_text_still_accepted() -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the reference's own message
        parse("\x00\x01 this is { not metrics\n<html>}}}\n")
    odd = PLAIN + '\n\nmodeltui_requests_total{endpoint="a\\"b",status="500"}   3   1700000000000\n'
    assert parse(odd) == parse_reference(odd)
    assert ("modeltui_requests_total", (("endpoint", 'a"b'), ("status", "500")), 3.0) in parse(odd)


def test_values_like_the_reference() -> None:
    values = ["0", "-0", "12", "-3", "1.5", "1.", "2.5e-05", "3E+20", "1e400", "-1e400", "Inf", "+Inf", "-Inf",
              "inf", "NaN", "nan", "9" * 30, "0.1000000000000000055511151231257827"]  # fmt: skip
    for v in values:
        text = f'# TYPE modeltui_feature_reference_ratio gauge\nmodeltui_feature_reference_ratio{{a="1"}} {v}\n'
        fast = fast_all(text)
        if fast is None:
            assert v.lstrip("+-").lower() in {"inf", "nan"}, v  # only the non-finite spellings defer
        else:
            assert fast == reference_all(text), v
        assert parse(text) == parse_reference(text), v
    # Non-finite values are dropped (as before); -0 is an integer literal, read through int as the parser does.
    assert parse("modeltui_feature_reference_ratio NaN\nup +Inf\n") == []
    (only,) = parse("modeltui_feature_reference_ratio -0\n")
    assert math.copysign(1.0, only[2]) == 1.0


def test_families_and_renames_follow_the_reference() -> None:
    text = (
        "# HELP modeltui_feature_value x\n# TYPE modeltui_feature_value histogram\n"
        'modeltui_feature_value_bucket{feature="f",le="+Inf"} 3\n'
        "modeltui_feature_value_sum 1.5\nmodeltui_feature_value_count 3\n"
        "# HELP other_total y\n# TYPE other_total counter\nother_total 4\n"
        "# TYPE modeltui_requests counter\n"  # a counter family without samples of its own name: no rename
        'modeltui_requests_total{endpoint="/p",status="200"} 2\n'
        "stray_sample 1\n"
        "# HELP help_only with \"quotes\" and 'apostrophes' (and {braces})\n"
        "help_only 5\n"
        'modeltui_feedback_total{predicted="a,b}",actual="=#"} 7\n'
        "modeltui_feedback_total{} 1\n"
        'modeltui_feedback_total{predicted="x",} 1\n'
    )
    assert fast_all(text) == reference_all(text)
    assert parse(text) == parse_reference(text)
    # A type after its family's samples (found by the generated test): the parser renames the samples it
    # already read (to ..._total here, which is not kept), so the fast path defers.
    late = (
        "# HELP modeltui_feature_reference_ratio counter\nmodeltui_feature_reference_ratio 0\n"
        "# TYPE modeltui_feature_reference_ratio counter\n"
    )
    assert fast_all(late) is None
    assert parse(late) == parse_reference(late) == []


# -- generated expositions -------------------------------------------------------------------------------------

_names = st.sampled_from([*sorted(KEPT), "modeltui_model_info", "other", "x:y", "_u", "modeltui_feedback", "9bad"])
_label_names = st.sampled_from(["le", "feature", "endpoint", "a", "_b", "__c", "le", "x-y", ""])
_label_values = st.text(st.sampled_from(list('abc01/.+-=,{}# "\\\n\t\rλ')), max_size=6)
_values = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["NaN", "+Inf", "-Inf", "1e400", "1_0", "0x1", " 1", "", "1 2", "1 # {} 1", "-0", "1."]),
)


@st.composite
def _sample_line(draw: st.DrawFn) -> str:
    name = draw(_names)
    pairs = draw(st.lists(st.tuples(_label_names, _label_values), max_size=3))
    block = ",".join(f'{k}="{v}"' for k, v in pairs)
    if draw(st.booleans()) and block:
        block += ","
    braces = f"{{{block}}}" if pairs or draw(st.booleans()) else ""
    return f"{name}{braces}{draw(st.sampled_from([' ', ' ', ' ', '  ', chr(9)]))}{draw(_values)}"


_comment = st.builds(
    lambda kind, name, rest: f"# {kind} {name}{rest}",
    st.sampled_from(["HELP", "TYPE", "TYPE", "other"]),
    _names,
    st.sampled_from(["", " counter", " gauge", " histogram", " summary", " untyped", " info", " doc text", " "]),
)
_line = st.one_of(_sample_line(), _sample_line(), _sample_line(), _comment, st.sampled_from(["", " ", "#", "garbage"]))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_line, max_size=12), st.booleans())
def test_generated_expositions_agree_with_the_reference(lines: list[str], trailing_newline: bool) -> None:
    text = "\n".join(lines) + ("\n" if trailing_newline else "")
    assert outcome(parse, text) == outcome(parse_reference, text)
    fast = fast_all(text)
    if fast is not None:
        assert fast == reference_all(text)


_safe_values = st.text(st.sampled_from(list("abc01/.+-=,{}# \tλ")), max_size=6)


@st.composite
def _strict_sample(draw: st.DrawFn) -> str:
    """Lines the fast path reads (mostly): what the runtime renders, with odd but escape-free label values."""
    name = draw(_names)
    pairs = draw(st.lists(st.tuples(st.sampled_from(["le", "feature", "a", "_b"]), _safe_values), max_size=3))
    block = ",".join(f'{k}="{v}"' for k, v in pairs)
    braces = f"{{{block}}}" if pairs else ""
    value = draw(st.one_of(st.integers(-(10**18), 10**18).map(str),
                           st.floats(allow_nan=False, allow_infinity=False).map(repr)))  # fmt: skip
    return f"{name}{braces} {value}"


_strict_comment = st.builds(
    lambda kind, name, rest: f"# {kind} {name}{rest}",
    st.sampled_from(["HELP", "TYPE"]),
    _names,
    st.sampled_from([" counter", " gauge", " histogram", " summary", " untyped", " doc text"]),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_strict_sample(), _strict_sample(), _strict_comment), max_size=15))
def test_generated_plain_expositions_read_like_the_reference(lines: list[str]) -> None:
    text = "".join(line + "\n" for line in lines)
    assert outcome(parse, text) == outcome(parse_reference, text)
    fast = fast_all(text)
    if fast is not None:
        assert fast == reference_all(text)


# -- the reader's memory of each target's last exposition ------------------------------------------------------


def test_the_reader_reads_a_runtime_s_next_exposition_like_the_parser() -> None:
    reader = Reader(KEPT)
    first = runtime_exposition(1)
    assert reader.samples("dep", first) == fast_samples(first, KEPT)
    # The same runtime later: same lines, other values (the counters moved on).
    later = first.replace("0.", "-0.") + 'modeltui_requests_total{endpoint="/x",status="200"} 1\n'
    for text in (first.replace(" 1\n", " 7\n"), first.replace(" 1\n", " -0\n"), later, first):
        assert reader.samples("dep", text) == fast_samples(text, KEPT)
    assert reader.samples("other", later) == fast_samples(later, KEPT)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_strict_sample(), _strict_sample(), _strict_comment), max_size=15), st.data())
def test_the_reader_agrees_with_the_fast_path_whatever_the_next_values(lines: list[str], data: st.DataObject) -> None:
    """Same skeleton, any value tokens (garbage included): the reader answers exactly what a full read does."""
    text = "".join(line + "\n" for line in lines)
    reader = Reader(EVERYTHING)
    assert reader.samples("t", text) == fast_samples(text, EVERYTHING)
    changed = []
    for line in lines:
        if line.startswith("#"):
            changed.append(line)
        else:
            head, _, _ = line.rpartition(" ")
            changed.append(f"{head} {data.draw(_values)}")
    again = "".join(line + "\n" for line in changed)
    assert reader.samples("t", again) == fast_samples(again, EVERYTHING)
