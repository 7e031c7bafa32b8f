"""Custom events Temporal refuses, through the one forwarder: each backs off on its own (newer
events still go out), is set aside after the limit and listed for ops
(``GET /v1/events?forwarding=failed``, an app's key seeing only its own), and goes out once
requeued (``POST /v1/events/requeue``) and the cause is fixed. On SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import update
from sqlmodel import col
from temporalio.client import Client, WorkflowExecutionStatus

from tests.api.conftest import Api, api
from tidings.inbound.forwarder import Forwarder, ForwarderOptions
from tidings.inbound.triggers import EntryOptions, entry_workflow_id
from tidings.journeys import parse_definition
from tidings.runs.start import activate_trigger
from tidings.store.models import CustomEvent
from tidings.store.types import utcnow
from workflows.contracts import EngineOptions

__all__ = ["api"]  # the API fixture of tests/api, on the test's store

APP = "events"
TOKEN = "ab" * 32
# Temporal answers INVALID_ARGUMENT to a start without a task queue: the event's own fault
# as far as the forwarder can tell, not an outage
REFUSED = EntryOptions(task_queue="", engine=EngineOptions())
OPTIONS = ForwarderOptions(row_initial_backoff=timedelta(hours=1), max_failures=2)


async def post(api: Api, key: str | None, profile_id: str, name: str, event_id: str) -> None:
    body = {"profile_id": profile_id, "name": name, "event_id": event_id}
    if key is None:
        answer = await api.admin.post("/v1/events", json=body)
    else:
        async with api.client(key) as client:
            answer = await client.post("/v1/events", json=body)
    assert answer.status_code == 202, answer.text
    assert (answer.json()["forwarded"], answer.json()["started"]) == (False, [])


async def time_passes(api: Api) -> None:
    async with api.db.write() as session:
        await session.exec(
            update(CustomEvent)
            .where(col(CustomEvent.next_attempt_at).is_not(None))
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )


async def test_refused_events_back_off_are_set_aside_and_go_out_once_requeued(
    api: Api, temporal_client: Client
) -> None:
    key = await api.create_app(APP)
    device = {"profile_id": "ann", "create_profile": True, "provider": "apns", "token": TOKEN}
    assert (await api.admin.post(f"/v1/apps/{APP}/devices", json=device)).status_code == 200
    trigger = f"joined-{uuid.uuid4().hex[:6]}"
    definition = parse_definition(
        {
            "id": f"greet-{uuid.uuid4().hex[:6]}",
            "name": "Greet",
            "app": APP,
            "trigger": {"event": trigger},
            "nodes": [{"id": "hello", "type": "push", "content": {"body": "hi"}}],
        }
    )
    await activate_trigger(api.db, definition)
    await post(api, key, "ann", trigger, "e-trigger")
    assert (await api.admin.put("/v1/profiles/bob", json={})).status_code in (200, 201)
    # another profile's event: a profile's events wait behind its refused one, others' do not
    await post(api, None, "bob", "nothing_listens", "e-quiet")
    refusing = Forwarder(temporal_client, api.db, OPTIONS, REFUSED)

    first = await refusing.forward_once()
    # the refused event backs off; the one that asks nothing of Temporal goes out
    assert (first.claimed, first.forwarded, first.failed, first.outage) == (2, 1, 1, False)
    assert "INVALID_ARGUMENT" in first.errors[0]
    assert (await refusing.forward_once()).claimed == 0  # backing off
    pending = (await api.admin.get("/v1/events/e-trigger")).json()
    assert pending["forwarding"] == "pending"
    assert pending["next_attempt_at"] is not None
    assert "INVALID_ARGUMENT" in pending["forward_note"]

    await time_passes(api)
    second = await refusing.forward_once()
    assert (second.claimed, second.given_up) == (1, 1)
    await time_passes(api)
    assert (await refusing.forward_once()).claimed == 0  # set aside: never tried again

    failed = (await api.admin.get("/v1/events", params={"forwarding": "failed"})).json()
    assert [e["event_id"] for e in failed["items"]] == ["e-trigger"]
    assert failed["items"][0]["forward_note"].startswith("gave up: INVALID_ARGUMENT")
    async with api.client(key) as app_client:
        # the app's key sees the events it posted, not the admin's
        mine = (await app_client.get("/v1/events")).json()
        assert [e["event_id"] for e in mine["items"]] == ["e-trigger"]
        assert (await app_client.get("/v1/events/e-quiet")).status_code == 404
        requeued = await app_client.post("/v1/events/requeue", json={})
    assert requeued.json() == {"requeued": 1}

    # the cause fixed (a forwarder with the worker's task queue), the event goes out
    fixed = Forwarder(
        temporal_client, api.db, OPTIONS, EntryOptions(api.settings.task_queue, EngineOptions())
    )
    third = await fixed.forward_once()
    assert (third.claimed, third.forwarded) == (1, 1)
    done = (await api.admin.get("/v1/events/e-trigger")).json()
    assert done["forwarding"] == "forwarded"
    assert done["outcome"] == {"started": [definition.id], "signalled": [], "skipped": {}}
    entry = temporal_client.get_workflow_handle(entry_workflow_id(definition.id, "ann"))
    assert (await entry.describe()).status == WorkflowExecutionStatus.RUNNING
    await entry.terminate("no worker in this test")
    quiet = (await api.admin.get("/v1/events/e-quiet")).json()
    assert quiet["outcome"] == {"started": [], "signalled": [], "skipped": {}}
