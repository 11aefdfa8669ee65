"""The version detail says who signed the version (docs/security.md, "Signed versions"), against the fake
client: a verified signer, a key not allowed, and an unsigned version."""

from __future__ import annotations

from datetime import UTC, datetime

from daemon.protocol import requests
from daemon.protocol import results as r
from modeltui.screens import VersionScreen
from modeltui.widgets import LineageTable
from tests.helpers.canned import canned_client
from tests.helpers.fake_client import fake_app
from tests.helpers.tui import SIZE, rows, until

NOW = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)
SUMMARY = r.VersionSummary(
    model="churn",
    number=3,
    digest="a" * 64,
    parent=2,
    flavor="sklearn",
    message="m",
    tags={},
    created_by="alice",
    created_at=NOW,
    size=10,
    file_count=1,
    aliases=[],
)
FP = "SHA256:" + "A" * 43


def detail(*signatures: r.SignatureInfo) -> r.VersionDetail:
    return r.VersionDetail(
        version=SUMMARY,
        description="",
        model_file="model.skops",
        manifest="name = 'churn'",
        params={},
        metrics={},
        signature={},
        requirements=[],
        source=r.SourceInfo(),
        files=[],
        children=[],
        lineage=[2],
        signatures=list(signatures),
    )


def sig(status: str, principal: str | None, by: str) -> r.SignatureInfo:
    return r.SignatureInfo.model_validate(
        {
            "status": status,
            "principal": principal,
            "fingerprint": FP,
            "key_type": "ssh-ed25519",
            "signed_by": by,
            "signed_at": NOW,
            "checked_at": NOW,
        }
    )


async def lineage_of(answer: r.VersionDetail) -> dict[str, str]:
    client = canned_client().answer(requests.Show, answer)
    app = fake_app(client)
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(VersionScreen("churn", 3))
        table = app.screen.query_one(LineageTable)
        await until(pilot, lambda: any(row[0] == "signed" for row in rows(table)), "the signed row")
        return {row[0]: row[1] for row in rows(table)}


async def test_the_version_detail_names_the_signers() -> None:
    seen = await lineage_of(detail(sig("verified", "alice@example.com", "alice"), sig("not allowed", None, "bob")))
    assert seen["signed"] == f"verified alice@example.com (ED25519 {FP}, sent by alice)"
    assert seen["signed (2)"] == f"not allowed (ED25519 {FP}, sent by bob)"


async def test_an_unsigned_version_says_so() -> None:
    assert (await lineage_of(detail()))["signed"] == "unsigned"
