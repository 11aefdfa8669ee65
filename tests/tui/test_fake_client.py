"""The real App against the fake client (tests/helpers/fake_client.py): what the views show for the daemon's
answers, events and errors, in a fraction of a second each. The tests beside this one drive the same App
against a real daemon."""

from __future__ import annotations

import pytest

from daemon.protocol import requests
from daemon.protocol import results as r
from daemon.protocol.errors import ErrorCode, ProtocolError
from daemon.protocol.events import RegistryEvent
from modeltui.widgets import ModelsTable
from tests.helpers.canned import MODELS, canned_client, model
from tests.helpers.fake_client import FakeClient, fake_app
from tests.helpers.tui import SIZE, notifications, rows, until


async def test_the_models_view_lists_the_models_the_daemon_answers() -> None:
    client = canned_client()
    app = fake_app(client)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(ModelsTable)
        await until(pilot, lambda: table.row_count == 3, "three models")
        assert [row[:5] for row in rows(table)] == [
            ["churn", "3", "v3", "production→2, staging→3", "2026-11-27 14:00:05"],
            ["fraud", "1", "v1", "production→1", "2026-11-27 14:00:05"],
            ["iris", "2", "v2", "-", "2026-11-27 14:00:05"],
        ]
        assert "models 1-3 of 3" in str(app.screen.query_one("#page-status").render())
        assert client.sent_of(requests.Subscribe) == [requests.Subscribe(topics=["registry", "deployments", "alerts"])]


async def test_a_registry_event_reloads_the_models_list() -> None:
    client = canned_client()
    app = fake_app(client)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(ModelsTable)
        await until(pilot, lambda: table.row_count == 3, "three models")
        await pilot.pause(0.2)
        assert len(client.sent_of(requests.ListModels)) == 1  # nothing asks again without an event

        client.answer(requests.ListModels, r.ModelList(items=[*MODELS, model("spam", 1, {})], total=4))
        client.push(RegistryEvent(kind="version.pushed", model="spam", version=1))
        await until(pilot, lambda: "spam" in [row[0] for row in rows(table)], "the pushed model")
        assert len(client.sent_of(requests.ListModels)) == 2


async def test_a_daemon_error_is_notified_and_the_app_stays_connected() -> None:
    client = canned_client().answer(
        requests.ListModels, ProtocolError(ErrorCode.FORBIDDEN, "alice may not read models here")
    )
    app = fake_app(client)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: notifications(app, "alice may not read models here"), "the error notification")
        (note,) = notifications(app, "alice may not read models here")
        assert (note.title, note.severity) == ("FORBIDDEN", "error")
        assert app.connection == "connected"
        assert app.screen.query_one(ModelsTable).row_count == 0


async def test_the_daemon_going_away_shows_in_the_header_and_ctrl_r_reconnects() -> None:
    client = canned_client()
    app = fake_app(client)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected", "connected")
        client.hang_up()
        await until(pilot, lambda: app.connection == "disconnected", "disconnected")
        assert "DISCONNECTED" in app.sub_title
        assert notifications(app, "daemon unavailable")

        await pilot.press("ctrl+r")  # the daemon is back
        await until(pilot, lambda: app.connection == "connected", "reconnected")
        assert len(client.sent_of(requests.Subscribe)) == 2
        await until(pilot, lambda: len(client.sent_of(requests.ListModels)) == 2, "the view re-reads its models")


async def test_a_viewer_gets_a_read_only_app() -> None:
    client = canned_client()
    client.welcome = client.welcome.model_copy(update={"role": "viewer", "user": "bob"})
    app = fake_app(client)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected", "connected")
        assert app.readonly
        assert client.readonly  # the client refuses changes before anything is sent
        assert notifications(app, "bob has the viewer role here: read-only")


def test_a_canned_answer_must_be_of_the_requests_result_type() -> None:
    with pytest.raises(TypeError, match="ListModels answers ModelList, not DeploymentList"):
        FakeClient().answer(requests.ListModels, r.DeploymentList(items=[]))
