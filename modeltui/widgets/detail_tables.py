"""Tables of the Version screen: files, params & metrics, lineage."""

from __future__ import annotations

from collections.abc import Sequence

from daemon.protocol.results import FileInfo, VersionDetail

from ..format import code_rows, signer, size, value, version_label, when
from .keyed_table import KeyedTable


class FilesTable(KeyedTable):
    """The files of a version with their size and full sha256."""

    COLUMNS = ("path", "size", "sha256")

    def show(self, files: Sequence[FileInfo]) -> None:
        self.replace_rows((f.path, (f.path, size(f.size), f.sha256)) for f in files)


class ParamsTable(KeyedTable):
    """Params and metrics of a version, one per row."""

    COLUMNS = ("kind", "key", "value")

    def show(self, detail: VersionDetail) -> None:
        rows = [(f"param:{k}", ("param", k, value(v))) for k, v in sorted(detail.params.items())]
        rows += [(f"metric:{k}", ("metric", k, f"{v:.6g}")) for k, v in sorted(detail.metrics.items())]
        self.replace_rows(rows)


def code_pairs(detail: VersionDetail) -> list[tuple[str, str]]:
    """The pickle scan and what runs code (docs/security.md), as ``modeltui show`` says them."""
    return code_rows(detail.code)


def signer_pairs(detail: VersionDetail) -> list[tuple[str, str]]:
    """Who signed the version (docs/security.md, "Signed versions"): one row per signature, or "unsigned"."""
    if not detail.signatures:
        return [("signed", "unsigned")]
    return [(f"signed ({i})" if i > 1 else "signed", signer(s, long=True)) for i, s in enumerate(detail.signatures, 1)]


class LineageTable(KeyedTable):
    """Where a version comes from: parent, ancestors, children and its source."""

    COLUMNS = ("field", "value")

    def show(self, detail: VersionDetail) -> None:
        v = detail.version
        source = detail.source
        pairs = [
            ("parent", version_label(v.parent)),
            ("ancestors", ", ".join(f"v{n}" for n in detail.lineage) or "-"),
            ("children", ", ".join(f"v{n}" for n in detail.children) or "-"),
            ("git commit", source.git_commit or "-"),
            ("git dirty", "yes" if source.git_dirty else "no"),
            ("source path", source.path or "-"),
            ("flavor", v.flavor),
            ("model file", detail.model_file),
            *code_pairs(detail),
            ("digest", v.digest),
            ("created by", v.created_by),
            ("created at", when(v.created_at)),
            *signer_pairs(detail),
            ("requirements", ", ".join(detail.requirements) or "-"),
        ]
        self.replace_rows((k, (k, val)) for k, val in pairs)
