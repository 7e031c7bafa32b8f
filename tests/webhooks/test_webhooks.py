"""Webhooks end to end: events written with the facts they report, sent signed to a real
receiver, retried while it is down, set aside after the limit and requeued, and endpoints
held to the egress rules."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from tests.scene import FAST_WEBHOOKS, Scene, SceneFactory, journey, push
from tests.webhooks.conftest import Receiver, eventually
from tidings.egress import EgressPolicy
from tidings.store.models import WebhookDelivery
from tidings.store.types import utcnow
from tidings.store.webhooks import WebhookEvent, WebhookEventType, enqueue
from tidings.webhooks.dispatcher import Dispatcher, DispatcherOptions

ALL_TYPES = [
    "push.sent",
    "push.delivered",
    "push.failed",
    "token.invalidated",
    "push.opened",
    "push.clicked",
    "run.started",
    "run.finished",
]


def verified(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """What a receiver does, written from the README alone: HMAC-SHA256 keyed with the
    secret over "{timestamp}.{body}", base64, after "v1,"."""
    timestamp = headers["webhook-timestamp"]
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    offered = headers["webhook-signature"]
    return offered == "v1," + base64.b64encode(expected.digest()).decode()


def readme_verify() -> Callable[[str, dict[str, str], bytes], bool]:
    """The receiver's check exactly as the README prints it."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    [code] = re.findall(r"```python\n(import base64.*?def verify.*?)```", readme, re.S)
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    check: Callable[[str, dict[str, str], bytes], bool] = namespace["verify"]
    return check


def events_of(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in receiver.received]


async def run_journey(s: Scene, profiles: list[str]) -> str:
    for profile in profiles:
        await s.profile(profile)
    started = await s.start_journey(journey(push("hello")), profiles)
    await s.finish(started)
    return started.run_id


async def test_signed_events_reach_a_receiver_and_the_secret_is_shown_once(
    webhook_scene: SceneFactory, receiver: Receiver
) -> None:
    async with receiver.serving(), webhook_scene() as s:
        created = await s.subscribe(receiver.url, *ALL_TYPES, app_id="journeys")
        secret = created["secret"]
        assert secret.startswith("whsec_")

        run_id = await run_journey(s, ["ann", "bob"])
        rows = await s.ledger(run_id)
        await s.interact(rows[0], "opened")

        def told() -> set[str]:
            return {e["type"] for e in events_of(receiver)}

        await eventually(
            lambda: {"run.started", "push.sent", "run.finished", "push.opened"} <= told(),
            "the run's events and the open at the receiver",
        )
        readme_check = readme_verify()
        for request in receiver.received:
            assert verified(secret, request.headers, request.body)
            assert readme_check(secret, request.headers, request.body)
            assert not readme_check(secret, request.headers, request.body + b" ")
            assert not verified(secret + "x", request.headers, request.body)
            event = json.loads(request.body)
            assert request.headers["webhook-id"] == event["id"]
            assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 600
            assert event["app_id"] == "journeys"
        sent = [e for e in events_of(receiver) if e["type"] == "push.sent"]
        assert sorted(e["data"]["tracking_id"] for e in sent) == sorted(r.tracking_id for r in rows)
        assert all(e["data"]["run_id"] == run_id for e in sent)
        [opened] = [e for e in events_of(receiver) if e["type"] == "push.opened"]
        assert opened["data"]["tracking_id"] == rows[0].tracking_id
        [finished] = [e for e in events_of(receiver) if e["type"] == "run.finished"]
        assert finished["data"]["status"] == "completed"

        # the secret never again: not in a list, a read, or the deliveries
        endpoint = created["id"]
        for path in (
            "/v1/webhooks",
            f"/v1/webhooks/{endpoint}",
            f"/v1/webhooks/{endpoint}/deliveries",
        ):
            answer = await s.stack.http.get(path)
            assert answer.status_code == 200, answer.text
            assert secret not in answer.text
            assert "secret" not in answer.text
        async with s.db.read() as session:
            stored = (await session.exec(select(WebhookDelivery))).all()
        assert all(secret not in json.dumps(row.payload) for row in stored)


async def test_an_endpoint_takes_only_its_types_and_app(
    webhook_scene: SceneFactory, receiver: Receiver
) -> None:
    async with receiver.serving(), webhook_scene() as s:
        await s.subscribe(receiver.url, "run.finished")
        other = await s.stack.http.post("/v1/apps", json={"id": "other", "name": "Other"})
        assert other.status_code == 201, other.text
        elsewhere = await s.subscribe(receiver.url, "push.sent", app_id="other")

        run_id = await run_journey(s, ["cat"])

        await eventually(lambda: len(receiver.received) >= 1, "run.finished at the receiver")
        assert [e["type"] for e in events_of(receiver)] == ["run.finished"]
        assert events_of(receiver)[0]["data"]["run_id"] == run_id
        assert (await s.waiting(elsewhere["id"])) == {"pending": 0, "sent": 0, "failed": 0}


async def test_a_receiver_down_for_a_while_loses_nothing(
    webhook_scene: SceneFactory, receiver: Receiver
) -> None:
    async with webhook_scene() as s:
        created = await s.subscribe(receiver.url, "push.sent", "run.started", "run.finished")
        receiver.status = 500
        async with receiver.serving():
            run_id = await run_journey(s, ["dan", "eve", "fay"])
            # answered 500 a few times, then refusing connections (the receiver is gone)
            await eventually(lambda: receiver.refused >= 3, "the receiver refusing events")
        async with s.db.read() as session:
            queued = (
                await session.exec(
                    select(WebhookDelivery).where(col(WebhookDelivery.endpoint_id) == created["id"])
                )
            ).all()
        assert len(queued) == 5  # run.started, three push.sent, run.finished

        async def failed_while_gone() -> bool:
            async with s.db.read() as session:
                rows = (await session.exec(select(WebhookDelivery))).all()
            return any("ConnectError" in (row.last_error or "") for row in rows)

        await eventually(failed_while_gone, "attempts refused at the connection")
        assert not receiver.received

        receiver.status = 200
        async with receiver.serving():
            await eventually(
                lambda: len({e["id"] for e in events_of(receiver)}) == 5,
                "every event once the receiver is back",
            )
            assert (await s.waiting(created["id"]))["sent"] == 5
        told = events_of(receiver)
        assert {e["id"] for e in told} == {row.event_id for row in queued}
        sent = sorted(e["data"]["tracking_id"] for e in told if e["type"] == "push.sent")
        assert sent == sorted(r.tracking_id for r in await s.ledger(run_id))


async def test_events_set_aside_after_the_limit_go_out_once_requeued(
    webhook_scene: SceneFactory, receiver: Receiver
) -> None:
    limited = DispatcherOptions(
        idle_interval=FAST_WEBHOOKS.idle_interval,
        initial_backoff=timedelta(0),
        max_backoff=timedelta(0),
        max_failures=2,
        per_endpoint=1,
    )
    async with receiver.serving(), webhook_scene(background=False, options=limited) as s:
        assert s.dispatcher is not None
        created = await s.subscribe(receiver.url, "run.started", "run.finished")
        endpoint = created["id"]
        receiver.status = 503
        await run_journey(s, ["gus"])

        first = await s.dispatcher.dispatch_once()
        assert (first.claimed, first.retried, first.set_aside) == (2, 1, 0)
        assert first.released == 1  # the endpoint failed: its next event waits, untried
        second = await s.dispatcher.dispatch_once()
        assert second.set_aside == 1
        while (await s.waiting(endpoint))["failed"] < 2:
            assert (await s.dispatcher.dispatch_once()).claimed > 0
        assert (await s.dispatcher.dispatch_once()).claimed == 0  # set aside: left alone
        failed = await s.stack.http.get(f"/v1/webhooks/{endpoint}/deliveries?state=failed")
        assert failed.status_code == 200, failed.text
        assert len(failed.json()["items"]) == 2
        assert all("503" in item["last_error"] for item in failed.json()["items"])
        assert not receiver.received

        receiver.status = 200
        answer = await s.stack.http.post(f"/v1/webhooks/{endpoint}/requeue")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"requeued": 2}
        done = await s.dispatcher.dispatch_once()
        assert done.sent == 2
        assert sorted(e["type"] for e in events_of(receiver)) == ["run.finished", "run.started"]
        assert await s.waiting(endpoint) == {"pending": 0, "sent": 2, "failed": 0}


async def test_a_paused_endpoint_keeps_its_events_until_resumed(
    webhook_scene: SceneFactory, receiver: Receiver
) -> None:
    async with receiver.serving(), webhook_scene(background=False) as s:
        assert s.dispatcher is not None
        endpoint = (await s.subscribe(receiver.url, "run.started"))["id"]
        paused = await s.stack.http.post(f"/v1/webhooks/{endpoint}/pause")
        assert paused.status_code == 200
        assert paused.json()["paused"] is True
        await run_journey(s, ["hal"])
        assert (await s.dispatcher.dispatch_once()).claimed == 0
        assert (await s.waiting(endpoint))["pending"] == 1

        resumed = await s.stack.http.post(f"/v1/webhooks/{endpoint}/resume")
        assert resumed.json()["paused"] is False
        assert (await s.dispatcher.dispatch_once()).sent == 1
        assert [e["type"] for e in events_of(receiver)] == ["run.started"]

        deleted = await s.stack.http.delete(f"/v1/webhooks/{endpoint}")
        assert deleted.status_code == 204
        assert (await s.stack.http.get(f"/v1/webhooks/{endpoint}")).status_code == 404


async def test_endpoints_are_held_to_the_egress_rules(webhook_scene: SceneFactory) -> None:
    async with webhook_scene(callback_allowed=[]) as s:
        for url, why in (
            ("http://127.0.0.1:9/hooks", "loopback"),
            ("https://10.1.2.3/hooks", "private"),
            ("https://[::ffff:192.168.0.1]/hooks", "private"),
            ("http://93.184.216.34/hooks", "https"),
            ("ftp://93.184.216.34/hooks", "http(s)"),
            ("https://user:pw@93.184.216.34/hooks", "user name"),
        ):
            answer = await s.stack.http.post(
                "/v1/webhooks", json={"url": url, "event_types": ["push.sent"]}
            )
            assert answer.status_code == 422, (url, answer.text)
            error = answer.json()["error"]
            assert error["details"][0]["loc"] == ["body", "url"]
            assert why in error["message"], (url, error["message"])
        answer = await s.stack.http.post(
            "/v1/webhooks", json={"url": "https://93.184.216.34/", "event_types": ["nope"]}
        )
        assert answer.status_code == 422
        listed = await s.stack.http.get("/v1/webhooks")
        assert listed.json()["items"] == []


async def test_an_app_key_subscribes_for_its_own_app_only(
    webhook_scene: SceneFactory, receiver: Receiver
) -> None:
    async with webhook_scene() as s:
        key = await s.stack.http.post("/v1/apps/journeys/keys", json={"name": "hooks"})
        assert key.status_code == 201, key.text
        as_app = {"Authorization": f"Bearer {key.json()['key']}"}
        mine = await s.stack.http.post(
            "/v1/webhooks",
            json={"url": receiver.url, "event_types": ["push.opened"]},
            headers=as_app,
        )
        assert mine.status_code == 201, mine.text
        assert mine.json()["app_id"] == "journeys"
        other = await s.stack.http.post(
            "/v1/webhooks",
            json={"url": receiver.url, "event_types": ["push.opened"], "app_id": "other"},
            headers=as_app,
        )
        assert other.status_code == 403
        everyone = await s.subscribe(receiver.url, "push.sent")
        listed = await s.stack.http.get("/v1/webhooks", headers=as_app)
        assert [e["id"] for e in listed.json()["items"]] == [mine.json()["id"]]
        hidden = await s.stack.http.get(f"/v1/webhooks/{everyone['id']}", headers=as_app)
        assert hidden.status_code == 404


async def test_failures_are_told_with_their_class_and_reason(
    webhook_scene: SceneFactory, receiver: Receiver
) -> None:
    async with receiver.serving(), webhook_scene() as s:
        await s.subscribe(receiver.url, "push.failed", "token.invalidated", "push.sent")
        [gone] = await s.profile("kim")
        s.sims.apns.mark_unregistered([gone])
        await s.profile("lou", devices=())
        await s.profile("max")
        started = await s.start_journey(journey(push("hello")), ["kim", "lou", "max"])
        await s.finish(started)
        rows = {r.profile_id: r for r in await s.ledger(started.run_id)}

        def of(kind: str) -> list[dict[str, Any]]:
            return [e for e in events_of(receiver) if e["type"] == kind]

        await eventually(
            lambda: len(of("push.failed")) == 2 and of("token.invalidated") and of("push.sent"),
            "the failures, the invalidation and the send at the receiver",
        )
        failed = {e["data"]["profile_id"]: e["data"] for e in of("push.failed")}
        assert failed["kim"]["class"] == "token_gone"
        assert failed["kim"]["tracking_id"] == rows["kim"].tracking_id
        assert failed["kim"]["reason"]
        assert failed["lou"]["class"] == "not_sent"
        assert failed["lou"]["cause"] == "no_device"
        [invalidated] = of("token.invalidated")
        assert invalidated["data"]["device_id"] == rows["kim"].device_id
        assert invalidated["data"]["state"] == "invalid"
        assert [e["data"]["profile_id"] for e in of("push.sent")] == ["max"]


async def test_an_erased_profile_s_waiting_events_name_its_pseudonym(
    webhook_scene: SceneFactory, receiver: Receiver
) -> None:
    async with receiver.serving(), webhook_scene() as s:
        endpoint = (await s.subscribe(receiver.url, "push.sent"))["id"]
        await s.stack.http.post(f"/v1/webhooks/{endpoint}/pause")
        run_id = await run_journey(s, ["zed"])
        [row] = await s.ledger(run_id)
        assert (await s.waiting(endpoint))["pending"] == 1
        erased = await s.stack.http.delete("/v1/profiles/zed")
        assert erased.status_code == 200, erased.text

        await s.stack.http.post(f"/v1/webhooks/{endpoint}/resume")
        await eventually(lambda: len(receiver.received) == 1, "the push told after erasure")
        [event] = events_of(receiver)
        assert event["data"]["profile_id"].startswith("erased-")
        assert event["data"]["tracking_id"] == row.tracking_id
        assert b"zed" not in receiver.received[0].body


async def test_dispatchers_side_by_side_send_each_event_once(
    webhook_scene: SceneFactory, receiver: Receiver
) -> None:
    async with receiver.serving(), webhook_scene(background=False) as s:
        await s.subscribe(receiver.url, "run.started")
        now = utcnow()
        async with s.db.write() as session:
            events = [
                WebhookEvent(WebhookEventType.RUN_STARTED, f"r{n}", None, now, {"n": n})
                for n in range(120)
            ]
            await enqueue(session, events, now)
        policy = EgressPolicy.from_settings(s.stack.settings)
        small = DispatcherOptions(batch_size=25)
        others = [Dispatcher(s.db, s.stack.resources.secrets, policy, small) for _ in range(3)]
        try:
            sent = 0
            while sent < 120:
                rounds = await asyncio.gather(*(d.dispatch_once() for d in others))
                assert not [r for r in rounds if r.errors]
                sent += sum(r.sent for r in rounds)
        finally:
            for dispatcher in others:
                await dispatcher.close()
        ids = [e["id"] for e in events_of(receiver)]
        assert len(ids) == 120
        assert len(set(ids)) == 120
