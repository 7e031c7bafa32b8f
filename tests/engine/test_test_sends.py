"""Test sends on the real stack: one push node, rendered for a profile, sent by the worker to
exactly the chosen devices (counted at the simulators), recorded apart from runs and the
ledger; a gone token invalidated as in a run; bad requests named."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlmodel import select

from activities.declarations import SEND_TEST
from tests.engine.test_designer_cli import invoke
from tests.scene import APP, Scene, SceneFactory
from tidings.cli.app import app as tidings_cli
from tidings.sim import Simulators
from tidings.store.models import App, Delivery, Device, JourneyRun, Profile, Provider

JOURNEY: dict[str, Any] = {
    "id": "try-me",
    "name": "Try me",
    "app": APP,
    "nodes": [
        {
            "id": "hello",
            "type": "push",
            "content": {"title": "Hi {{ first_name }}", "body": "Your plan: {{ plan }}"},
            "locales": {"fr": {"title": "Salut {{ first_name }}", "body": "Forfait {{ plan }}"}},
            "next": "pause",
        },
        {"id": "pause", "type": "delay", "duration": "1h"},
    ],
}


async def save_journey(s: Scene, journey: dict[str, Any] = JOURNEY) -> None:
    answer = await s.stack.http.post("/v1/journeys", json=journey)
    assert answer.status_code in (200, 201), answer.text


async def devices_of(s: Scene, profile_id: str) -> list[Device]:
    async with s.db.read() as session:
        rows = await session.exec(select(Device).where(Device.profile_id == profile_id))
        return sorted(rows.all(), key=lambda d: d.id or 0)


def scheduled_queues(history: Any, activity: str) -> list[str]:
    """The task queues a workflow's history scheduled ``activity`` on."""
    return [
        event.activity_task_scheduled_event_attributes.task_queue.name
        for event in history.events
        if event.WhichOneof("attributes") == "activity_task_scheduled_event_attributes"
        and event.activity_task_scheduled_event_attributes.activity_type.name == activity
    ]


def received(sims: Simulators) -> dict[str, list[str]]:
    """Per token, the payloads the simulators accepted for it (as JSON text)."""
    found: dict[str, list[str]] = {}
    for record in [*sims.apns.accepted(), *sims.fcm.accepted()]:
        found.setdefault(record.token, []).append(json.dumps(record.payload))
    return found


async def test_a_node_goes_to_the_profiles_own_devices_rendered_for_it_and_nowhere_else(
    scene: SceneFactory,
) -> None:
    async with scene() as s:
        mine = await s.profile(
            "ada", devices=("apns", "fcm"), attributes={"first_name": "Ada", "plan": "pro"}
        )
        others = await s.profile("bob", devices=("apns",), attributes={"first_name": "Bob"})
        await save_journey(s)

        answer = await s.stack.http.post(
            "/v1/test-sends", json={"journey_id": "try-me", "node_id": "hello", "profile_id": "ada"}
        )

        assert answer.status_code == 201, answer.text
        sent = answer.json()
        assert answer.headers["location"] == f"/v1/test-sends/{sent['id']}"
        assert sent["status"] == "done"
        assert sent["requested_by"] == "api"
        assert (sent["journey_id"], sent["journey_version"], sent["node_id"]) == (
            "try-me",
            1,
            "hello",
        )
        assert sent["message"]["title"] == "Hi Ada"
        assert sorted(d["status"] for d in sent["devices"]) == ["sent", "sent"]
        assert [d["reason"] for d in sent["devices"]] == [None, None]
        assert sorted(d["provider"] for d in sent["devices"]) == ["apns", "fcm"]
        # the answer never carries a whole token
        assert not any(token in answer.text for token in mine)
        got = received(s.sims)
        assert sorted(got) == sorted(mine)
        for token in mine:
            assert len(got[token]) == 1
            assert "Hi Ada" in got[token][0]
            assert "Your plan: pro" in got[token][0]
        assert others[0] not in got
        # the tracking id the device received is the one the test send records
        apns_entry = next(d for d in sent["devices"] if d["provider"] == "apns")
        assert len(s.sims.apns.accepted(tracking_id=apns_entry["tracking_id"])) == 1

        # the same record, read back and listed
        again = await s.stack.http.get(f"/v1/test-sends/{sent['id']}")
        assert again.status_code == 200
        assert again.json() == sent
        listed = await s.stack.http.get("/v1/test-sends", params={"journey_id": "try-me"})
        assert [t["id"] for t in listed.json()["items"]] == [sent["id"]]

        # never a run, never the ledger
        async with s.db.read() as session:
            assert (await session.exec(select(Delivery))).all() == []
            assert (await session.exec(select(JourneyRun))).all() == []
        assert (await s.stack.http.get("/v1/runs")).json()["items"] == []


async def test_a_test_device_gets_the_push_rendered_for_another_profile_in_its_locale(
    scene: SceneFactory,
) -> None:
    async with scene() as s:
        await s.profile(
            "ada", devices=("apns",), attributes={"first_name": "Ada", "plan": "pro"}, locale="fr"
        )
        phone, tablet = await s.profile("designer", devices=("apns", "fcm"))
        unused = await s.profile("someone", devices=("fcm",))
        await save_journey(s)
        designer = await devices_of(s, "designer")

        answer = await s.stack.http.post(
            "/v1/test-sends",
            json={
                "journey_id": "try-me",
                "version": 1,
                "node_id": "hello",
                "profile_id": "ada",
                "device_ids": [designer[0].id],
                "tokens": [tablet],
            },
        )

        assert answer.status_code == 201, answer.text
        assert [d["status"] for d in answer.json()["devices"]] == ["sent", "sent"]
        got = received(s.sims)
        assert sorted(got) == sorted([phone, tablet])
        assert all("Salut Ada" in payloads[0] for payloads in got.values())
        assert unused[0] not in got


async def test_a_gone_token_is_invalidated_and_its_reason_reported(scene: SceneFactory) -> None:
    async with scene() as s:
        gone, fine = await s.profile(
            "ada", devices=("apns", "fcm"), attributes={"first_name": "Ada", "plan": "x"}
        )
        await save_journey(s)
        s.sims.apns.mark_unregistered([gone])

        answer = await s.stack.http.post(
            "/v1/test-sends",
            json={"journey_id": "try-me", "node_id": "hello", "profile_id": "ada", "wait_s": 20},
        )

        assert answer.status_code == 201, answer.text
        outcome = {d["provider"]: d for d in answer.json()["devices"]}
        assert outcome["apns"]["status"] == "token_gone"
        assert "Unregistered" in (outcome["apns"]["reason"] or "")
        assert outcome["fcm"]["status"] == "sent"
        assert sorted(received(s.sims)) == [fine]
        states = {d.provider: d.state for d in await devices_of(s, "ada")}
        assert states == {"apns": "invalid", "fcm": "valid"}
        # an invalid device is refused up front, naming it
        refused = await s.stack.http.post(
            "/v1/test-sends",
            json={
                "journey_id": "try-me",
                "node_id": "hello",
                "profile_id": "ada",
                "tokens": [gone],
            },
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "device_not_valid"


async def test_bad_requests_name_what_is_wrong_and_send_nothing(scene: SceneFactory) -> None:
    async with scene() as s:
        await s.profile("ada", attributes={"plan": "x"})
        await s.profile("nobody", devices=())
        await save_journey(s)
        async with s.db.write() as session:
            session.add(App(id="elsewhere", name="Elsewhere", credentials_version=1))
            session.add(Profile(id="eve", attributes={}))
            await session.flush()
            session.add(
                Device(
                    app_id="elsewhere",
                    profile_id="eve",
                    provider=Provider.FCM,
                    token="fcm-x:APA91b" + "e" * 40,
                )
            )
        async with s.db.read() as session:
            foreign = (await session.exec(select(Device).where(Device.app_id == "elsewhere"))).one()
        base = {"journey_id": "try-me", "node_id": "hello", "profile_id": "ada"}
        cases: list[tuple[dict[str, Any], int, str, str]] = [
            (base | {"journey_id": "nope"}, 404, "journey_not_found", "journey_id"),
            (base | {"version": 7}, 404, "journey_not_found", "journey_id"),
            (base | {"node_id": "pause"}, 422, "not_a_push", "node_id"),
            (base | {"node_id": "ghost"}, 422, "unknown_node", "node_id"),
            (base | {"profile_id": "ghost"}, 422, "unknown_profile", "profile_id"),
            (base | {"profile_id": "nobody"}, 422, "no_device", "profile_id"),
            (base | {"device_ids": [987654]}, 422, "unknown_device", "device_ids"),
            (base | {"tokens": ["f" * 64]}, 422, "unknown_device", "tokens"),
            (base | {"device_ids": [foreign.id]}, 422, "device_of_another_app", "device_ids"),
            (base | {"tokens": [foreign.token]}, 422, "device_of_another_app", "tokens"),
            # ada has no first_name: the title cannot be rendered for her
            (base, 422, "template_error", "profile_id"),
        ]
        for body, status, code, field in cases:
            answer = await s.stack.http.post("/v1/test-sends", json=body)
            assert answer.status_code == status, (body, answer.text)
            error = answer.json()["error"]
            assert error["code"] == code, (body, error)
            assert error["details"][0]["loc"] == ["body", field], (body, error)
        # a body the schema refuses names its field too
        answer = await s.stack.http.post("/v1/test-sends", json=base | {"wait_s": 99})
        assert answer.status_code == 422
        assert "wait_s" in answer.text
        missing = await s.stack.http.get("/v1/test-sends/ts-0123456789abcdef")
        assert missing.status_code == 404
        assert (await s.stack.http.get("/v1/test-sends")).json()["items"] == []
        assert received(s.sims) == {}


async def test_the_cli_sends_to_a_named_device_and_names_a_bad_node(scene: SceneFactory) -> None:
    async with scene() as s:
        await s.profile("ada", devices=("fcm",), attributes={"first_name": "Ada", "plan": "pro"})
        (phone,) = await s.profile("designer", devices=("apns",))
        await save_journey(s)
        (device,) = await devices_of(s, "designer")

        done = await invoke(
            s,
            tidings_cli,
            "test-send",
            "try-me",
            "hello",
            "--profile",
            "ada",
            "--device",
            str(device.id),
        )

        assert done.exit_code == 0, done.output
        assert "sent" in done.output
        assert list(received(s.sims)) == [phone]
        assert "Hi Ada" in received(s.sims)[phone][0]
        listed = (await s.stack.http.get("/v1/test-sends")).json()["items"]
        assert [(t["requested_by"], t["profile_id"]) for t in listed] == [("cli", "ada")]

        refused = await invoke(s, tidings_cli, "test-send", "try-me", "pause", "--profile", "ada")
        assert refused.exit_code == 1
        assert "node_id" in refused.output
        assert "not a push" in refused.output


async def test_without_waiting_it_answers_202_and_is_sent_on_the_delivery_queue(
    scene: SceneFactory,
) -> None:
    delivery_queue = f"tidings-delivery-{uuid.uuid4().hex[:8]}"
    async with scene(delivery_task_queue=delivery_queue) as s:
        attributes = {"first_name": "Ada", "plan": "pro"}
        (token,) = await s.profile("ada", devices=("fcm",), attributes=attributes)
        await save_journey(s)

        answer = await s.stack.http.post(
            "/v1/test-sends",
            json={"journey_id": "try-me", "node_id": "hello", "profile_id": "ada", "wait_s": 0},
        )

        assert answer.status_code == 202, answer.text
        assert answer.json()["devices"][0]["status"] == "pending"
        location = answer.headers["location"]
        found: dict[str, Any] = {}

        async def done() -> bool:
            found.update((await s.stack.http.get(location)).json())
            return bool(found["status"] == "done")

        await s.until(done, "the test send done")
        assert [d["status"] for d in found["devices"]] == ["sent"]
        assert found["completed_at"] is not None
        assert list(received(s.sims)) == [token]
        workflow = s.client.get_workflow_handle(f"test-send/{found['id']}")
        assert scheduled_queues(await workflow.fetch_history(), SEND_TEST) == [delivery_queue]
