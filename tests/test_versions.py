"""Registry behaviour through the public API: push, log, show, diff, checkout, tags, aliases, rm, gc."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon.protocol import requests as q
from daemon.protocol.errors import ErrorCode, ProtocolError
from daemon.protocol.manifest import parse_manifest
from daemon.registry.service import Registry, version_digest

MANIFEST = """name = "{name}"
flavor = "sklearn"
model_file = "model.bin"
description = "a test model"
requirements = {requirements}

[params]
C = {c}

[metrics]
f1 = {f1}

[signature]
inputs = [{{name = "age", type = "double"}}, {{name = "{col}", type = "{col_type}"}}]
outputs = [{{name = "label", type = "long"}}]
"""


def write_model(
    d: Path,
    *,
    name: str = "iris",
    weights: bytes = b"weights-v1",
    c: float = 1.0,
    f1: float = 0.9,
    col: str = "height",
    col_type: str = "double",
    requirements: tuple[str, ...] = ("scikit-learn",),
    extra: dict[str, bytes] | None = None,
) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    reqs = "[" + ", ".join(f'"{r}"' for r in requirements) + "]"
    text = MANIFEST.format(name=name, c=c, f1=f1, col=col, col_type=col_type, requirements=reqs)
    (d / "modeltui.toml").write_text(text)
    (d / "model.bin").write_bytes(weights)
    for rel, data in (extra or {}).items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(data)
    return d


def upload(reg: Registry, d: Path) -> list[q.PushFile]:
    files = []
    for p in sorted(x for x in d.rglob("*") if x.is_file()):
        fd = os.open(p, os.O_RDONLY)
        try:
            got = reg.ingest(fd, p.stat().st_size)
        finally:
            os.close(fd)
        files.append(q.PushFile(path=p.relative_to(d).as_posix(), sha256=got.sha256, size=got.size))
    return files


PushDir = Callable[..., q.PushFile]


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[Registry]:
    registry = Registry(tmp_path / "state", gc_grace_seconds=3600)
    yield registry
    registry.close()


@pytest.fixture
def push(reg: Registry, tmp_path: Path) -> Callable[..., object]:
    counter = iter(range(10_000))

    def _push(user: str = "alice", alias: str | None = None, message: str = "", **model: object):
        d = write_model(tmp_path / f"m{next(counter)}", **model)  # type: ignore[arg-type]
        return reg.push(q.Push(files=upload(reg, d), alias=alias, message=message), user)

    return _push


def code_of(exc: pytest.ExceptionInfo[ProtocolError]) -> ErrorCode:
    return exc.value.code


def test_push_creates_versions_with_parent_and_dedups(reg: Registry, push) -> None:
    first = push(message="first")
    assert first.created
    assert (first.version.model, first.version.number, first.version.parent) == ("iris", 1, None)
    assert first.version.created_by == "alice"
    assert first.version.file_count == 2
    assert first.version.created_at.tzinfo is not None

    again = push(user="bob")
    assert not again.created
    assert again.version.number == 1
    assert again.version.digest == first.version.digest

    second = push(weights=b"weights-v2")
    assert second.created
    assert (second.version.number, second.version.parent) == (2, 1)
    assert reg.counts() == (1, 2, 3, second.version.size + len(b"weights-v1"))


def test_push_identical_content_applies_alias(reg: Registry, push) -> None:
    push()
    push(weights=b"v2")
    again = push(alias="production")
    assert not again.created
    assert again.version.number == 1
    assert again.version.aliases == ["production"]


def test_digest_is_order_independent() -> None:
    a = q.PushFile(path="a", sha256="0" * 64, size=1)
    b = q.PushFile(path="b", sha256="1" * 64, size=1)
    assert version_digest([a, b]) == version_digest([b, a])
    assert version_digest([a, b]) != version_digest([a, b.model_copy(update={"executable": True})])


def test_push_name_overrides_manifest(reg: Registry, tmp_path: Path) -> None:
    files = upload(reg, write_model(tmp_path / "m"))
    res = reg.push(q.Push(files=files, name="other"), "alice")
    assert res.version.model == "other"


def test_push_requires_uploaded_objects_and_manifest(reg: Registry, tmp_path: Path) -> None:
    files = upload(reg, write_model(tmp_path / "m"))
    missing = [*files, q.PushFile(path="extra.bin", sha256="ab" * 32, size=3)]
    with pytest.raises(ProtocolError, match="upload it first") as exc:
        reg.push(q.Push(files=missing), "alice")
    assert code_of(exc) == ErrorCode.INVALID

    wrong_size = [f.model_copy(update={"size": f.size + 1}) if f.path == "model.bin" else f for f in files]
    with pytest.raises(ProtocolError, match="upload it first"):
        reg.push(q.Push(files=wrong_size), "alice")

    no_manifest = [f for f in files if f.path != "modeltui.toml"]
    with pytest.raises(ProtocolError, match=r"modeltui\.toml is missing"):
        reg.push(q.Push(files=no_manifest), "alice")

    (tmp_path / "m" / "model.bin").unlink()
    (tmp_path / "m" / "other.bin").write_bytes(b"x")
    with pytest.raises(ProtocolError, match=r"model_file 'model\.bin' is not among"):
        reg.push(q.Push(files=upload(reg, tmp_path / "m")), "alice")
    assert reg.list_models(q.ListModels()).total == 0


@pytest.mark.parametrize("nested", ["dir/a/b", "dir/a/b/c/d"])
def test_a_file_that_is_also_a_directory_is_refused(reg: Registry, tmp_path: Path, nested: str) -> None:
    files = upload(reg, write_model(tmp_path / "m", extra={"dir/a": b"file"}))
    sha = next(f.sha256 for f in files if f.path == "dir/a")
    clash = [*files, q.PushFile(path=nested, sha256=sha, size=4)]
    with pytest.raises(ProtocolError, match="path dir/a is also a directory") as exc:
        reg.push(q.Push(files=clash), "alice")
    assert code_of(exc) == ErrorCode.INVALID
    assert reg.list_models(q.ListModels()).total == 0
    siblings = [*files, q.PushFile(path="dir/ab", sha256=sha, size=4), q.PushFile(path="dir/b/a", sha256=sha, size=4)]
    assert reg.push(q.Push(files=siblings), "alice").created  # prefixes that are not parents are fine


def test_manifest_with_wrong_types_is_invalid(reg: Registry, tmp_path: Path) -> None:
    d = tmp_path / "bad"
    d.mkdir()
    (d / "modeltui.toml").write_text('name = "iris"\nflavor = "sklearn"\nmodel_file = 3\n[metrics]\nf1 = "high"\n')
    (d / "model.bin").write_bytes(b"x")
    with pytest.raises(ProtocolError) as exc:
        reg.push(q.Push(files=upload(reg, d)), "alice")
    assert code_of(exc) == ErrorCode.INVALID
    assert "model_file" in exc.value.message
    assert "metrics.f1" in exc.value.message


def test_log_show_lineage_children(reg: Registry, push) -> None:
    for i in range(3):
        push(weights=f"w{i}".encode(), message=f"m{i}")
    log = reg.log(q.Log(name="iris"))
    assert [v.number for v in log.items] == [3, 2, 1]
    assert log.total == 3
    assert [v.number for v in reg.log(q.Log(name="iris", limit=1, offset=1)).items] == [2]

    detail = reg.show(q.Show(ref="iris:2"))
    assert detail.version.message == "m1"
    assert detail.children == [3]
    assert detail.lineage == [1]
    assert [f.path for f in detail.files] == ["model.bin", "modeltui.toml"]
    assert detail.params == {"C": 1.0}
    assert detail.metrics == {"f1": 0.9}
    assert detail.signature["inputs"][0] == {"name": "age", "type": "double"}
    assert detail.requirements == ["scikit-learn"]
    assert 'name = "iris"' in detail.manifest
    assert reg.show(q.Show(ref="iris")).version.number == 3
    assert reg.show(q.Show(ref="iris:3")).lineage == [2, 1]


def test_lineage_stops_at_a_removed_version(reg: Registry, push) -> None:
    for i in range(4):
        push(weights=f"w{i}".encode())
    assert reg.show(q.Show(ref="iris:4")).lineage == [3, 2, 1]
    reg.remove_version(q.RemoveVersion(ref="iris:2"), "alice")
    assert reg.show(q.Show(ref="iris:3")).lineage == []
    assert reg.show(q.Show(ref="iris:4")).lineage == [3]
    push(weights=b"w5")
    assert reg.show(q.Show(ref="iris:5")).lineage == [4, 3]
    assert reg.show(q.Show(ref="iris:1")).children == []
    assert reg.show(q.Show(ref="iris:3")).children == [4]


def test_not_found_messages(reg: Registry, push) -> None:
    push()
    push(weights=b"2")
    push(weights=b"3")
    with pytest.raises(ProtocolError, match="model 'iris' has no version 7; latest is 3") as exc:
        reg.show(q.Show(ref="iris:7"))
    assert code_of(exc) == ErrorCode.NOT_FOUND
    with pytest.raises(ProtocolError, match="no model named 'nope'"):
        reg.log(q.Log(name="nope"))
    with pytest.raises(ProtocolError, match="has no alias 'production'"):
        reg.checkout(q.Checkout(ref="iris@production"))
    with pytest.raises(ProtocolError) as exc2:
        reg.alias_set(q.AliasSet(name="iris", alias="staging", version=9), "alice")
    assert code_of(exc2) == ErrorCode.NOT_FOUND


def test_diff(reg: Registry, push) -> None:
    push(extra={"data/a.csv": b"1,2", "data/b.csv": b"3,4"})
    push(
        weights=b"weights-v2-longer",
        c=2.0,
        f1=0.95,
        col="weight",
        col_type="long",
        requirements=("scikit-learn", "numpy"),
        extra={"data/a.csv": b"1,2", "data/c.csv": b"5"},
    )
    d = reg.diff(q.Diff(a="iris:1", b="iris:2"))
    changes = {f.path: f.status for f in d.files}
    assert changes == {
        "data/b.csv": "removed",
        "data/c.csv": "added",
        "model.bin": "changed",
        "modeltui.toml": "changed",
    }
    assert d.unchanged_files == 1
    model_change = next(f for f in d.files if f.path == "model.bin")
    assert (model_change.size_a, model_change.size_b) == (10, 17)
    assert [(p.key, p.a, p.b) for p in d.params] == [("C", 1.0, 2.0)]
    (metric,) = d.metrics
    assert metric.key == "f1"
    assert metric.delta == pytest.approx(0.05)
    assert {(s.key, s.a, s.b) for s in d.signature} == {
        ("inputs.height", "double", None),
        ("inputs.weight", None, "long"),
    }
    assert d.requirements_added == ["numpy"]
    assert d.requirements_removed == []
    assert d.flavor is None


def test_checkout_returns_fds_in_file_order(reg: Registry, push, tmp_path: Path) -> None:
    push(extra={"sub/x.txt": b"hello"})
    result, fds = reg.checkout(q.Checkout(ref="iris"))
    try:
        assert [f.path for f in result.files] == ["model.bin", "modeltui.toml", "sub/x.txt"]
        contents = [os.pread(fd, 1 << 16, 0) for fd in fds]
    finally:
        for fd in fds:
            os.close(fd)
    assert contents[0] == b"weights-v1"
    assert contents[2] == b"hello"


def test_tags(reg: Registry, push) -> None:
    push()
    v = reg.tag(q.Tag(ref="iris:1", set={"stage": "dev", "team": "ml"}), "alice")
    assert v.tags == {"stage": "dev", "team": "ml"}
    v = reg.tag(q.Tag(ref="iris:1", set={"stage": "prod"}, unset=["team"]), "alice")
    assert v.tags == {"stage": "prod"}
    assert reg.show(q.Show(ref="iris:1")).version.tags == {"stage": "prod"}
    with pytest.raises(ProtocolError, match="both set and unset"):
        reg.tag(q.Tag(ref="iris:1", set={"a": "1"}, unset=["a"]), "alice")


def test_remove_version_never_reuses_number(reg: Registry, push) -> None:
    push()
    push(weights=b"2", alias="production")
    with pytest.raises(ProtocolError, match="held by alias") as exc:
        reg.remove_version(q.RemoveVersion(ref="iris:2"), "alice")
    assert code_of(exc) == ErrorCode.CONFLICT
    removed = reg.remove_version(q.RemoveVersion(ref="iris:2", force=True), "alice")
    assert removed.removed_versions == [2]
    history = reg.alias_history(q.AliasHistoryRequest(name="iris", alias="production"))
    assert (history.events[0].from_version, history.events[0].to_version) == (2, None)
    assert reg.list_models(q.ListModels()).items[0].aliases == {}

    third = push(weights=b"3")
    assert third.version.number == 3
    assert third.version.parent == 1
    # Same content as the removed version 2: a new number, never 2 again.
    assert push(weights=b"2").version.number == 4


def test_remove_model(reg: Registry, push) -> None:
    push(alias="production")
    push(weights=b"2")
    with pytest.raises(ProtocolError) as exc:
        reg.remove_model(q.RemoveModel(name="iris"), "alice")
    assert code_of(exc) == ErrorCode.CONFLICT
    assert reg.remove_model(q.RemoveModel(name="iris", force=True), "alice").removed_versions == [1, 2]
    assert reg.list_models(q.ListModels()).total == 0
    assert reg.counts()[:2] == (0, 0)


def test_list_and_describe_models(reg: Registry, push) -> None:
    push(name="Iris-Classifier")
    push(name="wine")
    push(name="iris2")
    found = reg.list_models(q.ListModels(query="IRIS"))
    assert [m.name for m in found.items] == ["Iris-Classifier", "iris2"]
    assert found.total == 2
    page = reg.list_models(q.ListModels(limit=1, offset=1))
    assert [m.name for m in page.items] == ["iris2"]
    assert page.total == 3
    assert page.items[0].latest == 1
    detail = reg.describe_model(q.DescribeModel(name="wine", description="red or white"), "alice")
    assert detail.model.description == "red or white"
    assert reg.get_model(q.GetModel(name="wine")).model.description == "red or white"


def test_alias_set_rollback_and_history(reg: Registry, push) -> None:
    for i in range(3):
        push(weights=f"w{i}".encode())
    t0 = datetime.now(UTC)
    e1 = reg.alias_set(q.AliasSet(name="iris", alias="production", version=1, reason="launch"), "alice")
    assert (e1.from_version, e1.to_version, e1.by, e1.reason) == (None, 1, "alice", "launch")
    with pytest.raises(ProtocolError, match="no previous version") as exc:
        reg.rollback(q.Rollback(name="iris", alias="production"), "alice")
    assert code_of(exc) == ErrorCode.CONFLICT

    t1 = datetime.now(UTC)
    reg.alias_set(q.AliasSet(name="iris", alias="production", version=3), "bob")
    noop = reg.alias_set(q.AliasSet(name="iris", alias="production", version=3), "carol")
    assert (noop.from_version, noop.to_version, noop.by) == (1, 3, "bob")
    reg.alias_set(q.AliasSet(name="iris", alias="staging", version=2), "bob")
    t2 = datetime.now(UTC)

    back = reg.rollback(q.Rollback(name="iris", alias="production"), "dave")
    assert (back.from_version, back.to_version, back.by) == (3, 1, "dave")
    assert reg.show(q.Show(ref="iris@production")).version.number == 1

    history = reg.alias_history(q.AliasHistoryRequest(name="iris"))
    assert [(e.alias, e.from_version, e.to_version) for e in history.events] == [
        ("production", 3, 1),
        ("staging", None, 2),
        ("production", 1, 3),
        ("production", None, 1),
    ]
    assert history.targets_at is None
    assert all(e.at.tzinfo is not None for e in history.events)
    only_prod = reg.alias_history(q.AliasHistoryRequest(name="iris", alias="production", limit=2))
    assert [e.to_version for e in only_prod.events] == [1, 3]

    def at(t: datetime) -> dict[str, int] | None:
        return reg.alias_history(q.AliasHistoryRequest(name="iris", at=t)).targets_at

    assert at(t0 - timedelta(seconds=1)) == {}
    assert at(t1) == {"production": 1}
    assert at(t2) == {"production": 3, "staging": 2}
    assert at(datetime.now(UTC)) == {"production": 1, "staging": 2}
    assert at(t2.replace(tzinfo=None)) == {"production": 3, "staging": 2}  # naive means UTC

    removed = reg.alias_remove(q.AliasRemove(name="iris", alias="staging", reason="done"), "bob")
    assert (removed.from_version, removed.to_version) == (2, None)
    assert at(datetime.now(UTC)) == {"production": 1}
    restored = reg.rollback(q.Rollback(name="iris", alias="staging"), "bob")
    assert restored.to_version == 2
    with pytest.raises(ProtocolError) as exc3:
        reg.alias_remove(q.AliasRemove(name="iris", alias="canary"), "bob")
    assert code_of(exc3) == ErrorCode.NOT_FOUND


def test_rollback_to_removed_version_is_conflict(reg: Registry, push) -> None:
    push()
    push(weights=b"2")
    reg.alias_set(q.AliasSet(name="iris", alias="production", version=1), "a")
    reg.alias_set(q.AliasSet(name="iris", alias="production", version=2), "a")
    reg.remove_version(q.RemoveVersion(ref="iris:1"), "a")
    with pytest.raises(ProtocolError, match="that version was removed") as exc:
        reg.rollback(q.Rollback(name="iris", alias="production"), "a")
    assert code_of(exc) == ErrorCode.CONFLICT


def test_a_checked_rollback_moves_only_to_the_target_that_was_checked(reg: Registry, push) -> None:
    """The handler checks the target (signing, run code) first: if the alias moved meanwhile, the rollback
    would go elsewhere, and is refused instead (review 15 finding 8)."""
    for i in range(3):
        push(weights=f"w{i}".encode())
    reg.alias_set(q.AliasSet(name="iris", alias="production", version=1), "a")
    reg.alias_set(q.AliasSet(name="iris", alias="production", version=2), "a")  # checked target: 1
    reg.alias_set(q.AliasSet(name="iris", alias="production", version=3), "b")  # moved meanwhile: now 2
    with pytest.raises(ProtocolError, match="moved while its rollback was checked") as exc:
        reg.rollback(q.Rollback(name="iris", alias="production"), "a", checked=True, expect=1)
    assert code_of(exc) == ErrorCode.CONFLICT
    assert reg.show(q.Show(ref="iris@production")).version.number == 3
    with pytest.raises(ProtocolError, match="moved while"):  # checked "nothing to roll back to", now there is
        reg.rollback(q.Rollback(name="iris", alias="production"), "a", checked=True, expect=None)
    assert reg.rollback(q.Rollback(name="iris", alias="production"), "a", checked=True, expect=2).to_version == 2


def test_gc_keeps_referenced_objects(reg: Registry, push, tmp_path: Path) -> None:
    push()
    second = push(weights=b"only-in-v2")
    reg.remove_version(q.RemoveVersion(ref="iris:2"), "alice")
    assert reg.gc(q.Gc()).objects_removed == 0  # within the grace period
    dry = reg.gc(q.Gc(dry_run=True, grace_seconds=0))
    # Only v2's weights: its manifest is identical to v1's, so that object is shared and still referenced.
    assert (dry.objects_removed, dry.bytes_removed, dry.dry_run) == (1, len(b"only-in-v2"), True)
    res = reg.gc(q.Gc(grace_seconds=0))
    assert (res.objects_removed, res.bytes_removed, res.dry_run) == (1, len(b"only-in-v2"), False)
    assert reg.gc(q.Gc(grace_seconds=0)).objects_removed == 0
    assert second.version.file_count == 2
    result, fds = reg.checkout(q.Checkout(ref="iris:1"))
    for fd in fds:
        os.close(fd)
    assert all(reg.objects.verify(f.sha256) for f in result.files)


def test_concurrent_pushes_from_threads(reg: Registry, tmp_path: Path) -> None:
    dirs = [write_model(tmp_path / f"c{i}", weights=f"w{i}".encode()) for i in range(8)]
    uploads = [upload(reg, d) for d in dirs]
    errors: list[BaseException] = []

    def worker(files: list[q.PushFile]) -> None:
        try:
            reg.push(q.Push(files=files), "alice")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(u,)) for u in uploads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    log = reg.log(q.Log(name="iris"))
    assert sorted(v.number for v in log.items) == list(range(1, 9))
    assert sorted(v.parent or 0 for v in log.items) == list(range(0, 8))


def test_duplicate_paths_are_found_in_linear_time() -> None:
    """20,000 files took 7 s with a quadratic duplicate check; the whole check must stay well under a second."""
    manifest = parse_manifest(b'name = "iris"\nflavor = "sklearn"\nmodel_file = "f0"\n')
    files = [q.PushFile(path=f"f{i}", sha256="0" * 64, size=1) for i in range(20_000)]
    started = time.process_time()  # this process's CPU time: other processes on a loaded machine do not count
    Registry._check_files(files, manifest)
    with pytest.raises(ProtocolError, match="duplicate file paths: f1, f7") as exc:
        Registry._check_files([*files, files[7], files[1], files[7]], manifest)
    assert code_of(exc) == ErrorCode.INVALID
    assert time.process_time() - started < 1.0


def test_push_result_matches_what_show_reads_back(reg: Registry, push) -> None:
    """A new version's summary is built from the inserted values, not read back: it must be the same."""
    first = push(alias="production", message="m", weights=b"1")
    assert first.version == reg.show(q.Show(ref="iris:1")).version
    second = push(weights=b"2")
    assert second.version == reg.show(q.Show(ref="iris:2")).version
    again = push(alias="staging", weights=b"1")
    assert not again.created
    assert again.version == reg.show(q.Show(ref="iris:1")).version
    assert again.version.aliases == ["production", "staging"]


def test_remembered_manifest_still_needs_its_object(reg: Registry, tmp_path: Path) -> None:
    """Parsed manifests are remembered by digest, but a push still needs the object itself to be stored."""
    files = upload(reg, write_model(tmp_path / "m"))
    reg.push(q.Push(files=files), "alice")
    reg.remove_model(q.RemoveModel(name="iris"), "alice")
    assert reg.gc(q.Gc(grace_seconds=0)).objects_removed == 2
    (tmp_path / "m" / "modeltui.toml").rename(tmp_path / "manifest")
    weights_only = upload(reg, tmp_path / "m")  # the weights are uploaded again, the manifest is not
    with pytest.raises(ProtocolError, match=r"modeltui\.toml: object .* upload it first"):
        reg.push(q.Push(files=[*weights_only, *(f for f in files if f.path == "modeltui.toml")]), "alice")
    (tmp_path / "manifest").rename(tmp_path / "m" / "modeltui.toml")
    assert reg.push(q.Push(files=upload(reg, tmp_path / "m")), "alice").created
