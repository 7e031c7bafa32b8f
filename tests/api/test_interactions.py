"""Interaction reports: idempotent on the event id, committed before the 202, unknown
tracking ids refused but kept."""

from __future__ import annotations

import asyncio

from sqlmodel import select

from tests.api.conftest import Api, sent_push
from tidings.store.interactions import forward_state, give_up_forwarding
from tidings.store.models import Interaction
from tidings.store.outbox import ForwardState
from tidings.store.types import utcnow


async def stored(api: Api) -> list[Interaction]:
    async with api.db.read() as session:
        return list((await session.exec(select(Interaction))).all())


async def test_each_report_is_stored_once_and_before_the_answer(api: Api) -> None:
    await api.create_app("io")
    tracking = await sent_push(api.db, app_id="io", profile_id="p", node_id="welcome")
    body = {"tracking_id": tracking, "kind": "opened", "event_id": "evt-1"}
    first = await api.admin.post("/v1/interactions", json=body)
    assert first.status_code == 202, first.text
    assert first.json() == {"event_id": "evt-1", "status": "matched", "duplicate": False}
    # committed: another connection sees it as soon as the answer arrives
    rows = await stored(api)
    assert [(r.event_id, r.profile_id, r.node_id, r.forwarded_at) for r in rows] == [
        ("evt-1", "p", "welcome", None)
    ]
    again = await asyncio.gather(*(api.admin.post("/v1/interactions", json=body) for _ in range(5)))
    assert {a.status_code for a in again} == {202}
    assert all(a.json()["duplicate"] for a in again)
    assert len(await stored(api)) == 1


async def test_kinds_without_event_ids_count_once_per_push_kind_and_action(api: Api) -> None:
    await api.create_app("io")
    tracking = await sent_push(api.db, app_id="io", profile_id="p")
    reports = [
        {"kind": "delivered"},
        {"kind": "opened"},
        {"kind": "opened"},
        {"kind": "clicked", "action_id": "buy"},
        {"kind": "clicked", "action_id": "later"},
        {"kind": "clicked", "action_id": "buy"},
        {"kind": "dismissed"},
    ]
    for report in reports:
        answer = await api.admin.post("/v1/interactions", json={"tracking_id": tracking} | report)
        assert answer.status_code == 202, answer.text
    rows = await stored(api)
    assert sorted((r.kind, r.action_id) for r in rows) == [
        ("clicked", "buy"),
        ("clicked", "later"),
        ("delivered", None),
        ("dismissed", None),
        ("opened", None),
    ]


async def test_unknown_tracking_ids_are_refused_kept_and_listed(api: Api) -> None:
    answer = await api.admin.post(
        "/v1/interactions",
        json={"tracking_id": "ghost", "kind": "opened", "device_token": "ab" * 32},
    )
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "unknown_tracking_id"
    unmatched = (await api.admin.get("/v1/interactions", params={"status": "unmatched"})).json()
    assert [(i["tracking_id"], i["status"]) for i in unmatched["items"]] == [("ghost", "unmatched")]
    [row] = await stored(api)
    assert row.details == {"device_token": "ababab…abab"}  # masked, never whole
    assert row.forwarded_at is None


async def test_bad_reports_are_refused_by_field(api: Api) -> None:
    for body, field in (
        ({"tracking_id": "t", "kind": "licked"}, "kind"),
        (
            {"tracking_id": "t", "kind": "opened", "occurred_at": "2026-01-01T10:00:00"},
            "occurred_at",
        ),
        ({"tracking_id": "", "kind": "opened"}, "tracking_id"),
    ):
        answer = await api.admin.post("/v1/interactions", json=body)
        assert answer.status_code == 422
        assert [d["loc"][:2] for d in answer.json()["error"]["details"]] == [["body", field]]
    assert await stored(api) == []


async def test_a_batch_of_reports_is_stored_and_answered_by_position(api: Api) -> None:
    key = await api.create_app("own")
    await api.create_app("other")
    mine = await sent_push(api.db, app_id="own", profile_id="p", workflow_id="w1")
    theirs = await sent_push(api.db, app_id="other", profile_id="q", workflow_id="w2")
    items = [
        {"tracking_id": mine, "kind": "opened"},
        {"tracking_id": mine, "kind": "opened"},  # the same event twice in one batch
        {"tracking_id": mine, "kind": "clicked", "action_id": "buy"},
        {"tracking_id": "nobody", "kind": "opened"},
        {"tracking_id": theirs, "kind": "opened"},
    ]
    async with api.client(key) as backend:
        answer = await backend.post("/v1/interactions/batch", json={"items": items})
        assert answer.status_code == 202, answer.text
        again = await backend.post("/v1/interactions/batch", json={"items": items[:1]})
    assert [i["outcome"] for i in answer.json()["items"]] == [
        "accepted",
        "duplicate",
        "accepted",
        "unknown_tracking_id",
        "forbidden",
    ]
    assert answer.json()["accepted"] == 2
    assert again.json()["items"][0]["outcome"] == "duplicate"
    rows = await stored(api)
    assert sorted((r.tracking_id, r.kind, r.status) for r in rows) == sorted(
        [
            (mine, "opened", "matched"),
            (mine, "clicked", "matched"),
            ("nobody", "opened", "unmatched"),
        ]
    )
    too_many = await api.admin.post("/v1/interactions/batch", json={"items": items * 21})
    assert too_many.status_code == 422


async def test_event_ids_are_scoped_to_the_app(api: Api) -> None:
    """App A using an event id first does not turn app B's report into a duplicate."""
    key_a = await api.create_app("app-a")
    key_b = await api.create_app("app-b")
    push_a = await sent_push(api.db, app_id="app-a", profile_id="p", workflow_id="wa")
    push_b = await sent_push(api.db, app_id="app-b", profile_id="q", workflow_id="wb")
    async with api.client(key_a) as a, api.client(key_b) as b:
        first = await a.post(
            "/v1/interactions", json={"tracking_id": push_a, "kind": "opened", "event_id": "e-1"}
        )
        second = await b.post(
            "/v1/interactions", json={"tracking_id": push_b, "kind": "opened", "event_id": "e-1"}
        )
        batch = await b.post(
            "/v1/interactions/batch",
            json={"items": [{"tracking_id": push_b, "kind": "clicked", "event_id": "e-2"}]},
        )
        # the admin reporting for app A's push shares app A's scope
        await a.post(
            "/v1/interactions", json={"tracking_id": push_a, "kind": "clicked", "event_id": "e-2"}
        )
    assert [first.status_code, second.status_code] == [202, 202]
    assert [first.json()["duplicate"], second.json()["duplicate"]] == [False, False]
    assert batch.json()["items"][0]["outcome"] == "accepted"
    admin = await api.admin.post(
        "/v1/interactions", json={"tracking_id": push_a, "kind": "opened", "event_id": "e-1"}
    )
    assert admin.json()["duplicate"] is True
    rows = await stored(api)
    assert sorted((r.app_id, r.event_id, r.tracking_id) for r in rows) == [
        ("app-a", "e-1", push_a),
        ("app-a", "e-2", push_a),
        ("app-b", "e-1", push_b),
        ("app-b", "e-2", push_b),
    ]


async def test_an_event_id_reused_for_another_report_is_a_conflict(api: Api) -> None:
    await api.create_app("io")
    push = await sent_push(api.db, app_id="io", profile_id="p", workflow_id="w1")
    other = await sent_push(api.db, app_id="io", profile_id="p", workflow_id="w2")
    opened = {"tracking_id": push, "kind": "opened", "event_id": "evt"}
    assert (await api.admin.post("/v1/interactions", json=opened)).status_code == 202
    # a true repeat is still a duplicate
    repeat = await api.admin.post("/v1/interactions", json=opened)
    assert (repeat.status_code, repeat.json()["duplicate"]) == (202, True)
    for changed in (
        {"kind": "clicked"},
        {"tracking_id": other},
        {"kind": "clicked", "action_id": "buy"},
    ):
        answer = await api.admin.post("/v1/interactions", json=opened | changed)
        assert answer.status_code == 409, changed
        error = answer.json()["error"]
        assert error["code"] == "event_id_reused"
        assert "'evt'" in error["message"]
    clicked = {"tracking_id": push, "kind": "clicked", "action_id": "buy", "event_id": "evt-2"}
    answer = await api.admin.post(
        "/v1/interactions/batch",
        json={
            "items": [opened, opened | {"kind": "dismissed"}, clicked, clicked | {"action_id": "x"}]
        },
    )
    assert answer.status_code == 202
    assert [(i["outcome"], i["message"] is not None) for i in answer.json()["items"]] == [
        ("duplicate", False),
        ("event_id_reused", True),
        ("accepted", False),
        ("event_id_reused", True),  # reused within the same batch
    ]
    rows = await stored(api)
    assert sorted((r.event_id, r.kind, r.action_id) for r in rows) == [
        ("evt", "opened", None),
        ("evt-2", "clicked", "buy"),
    ]


async def test_interactions_the_forwarder_gave_up_on_can_be_requeued(api: Api) -> None:
    """Ops fix what Temporal refused and give the set-aside rows another round; an app's key
    requeues only its own app's, and rows that were never given up are left alone."""
    key_a = await api.create_app("rq-a")
    await api.create_app("rq-b")
    push_a = await sent_push(api.db, app_id="rq-a", profile_id="p", workflow_id="wa")
    push_b = await sent_push(api.db, app_id="rq-b", profile_id="q", workflow_id="wb")
    for tracking, event in ((push_a, "a-1"), (push_a, "a-2"), (push_b, "b-1")):
        answer = await api.admin.post(
            "/v1/interactions",
            json={
                "tracking_id": tracking,
                "kind": "opened" if event != "a-2" else "clicked",
                "event_id": event,
            },
        )
        assert answer.status_code == 202, answer.text
    ids = {r.event_id: r.id for r in await stored(api) if r.id is not None}
    async with api.db.write() as session:
        await give_up_forwarding(session, [ids["a-1"], ids["b-1"]], "NOT_FOUND: gone", utcnow())
    async with api.client(key_a) as a:
        failed = await a.get("/v1/interactions", params={"forwarding": "failed"})
        assert [i["event_id"] for i in failed.json()["items"]] == ["a-1"]
        mine = await a.post("/v1/interactions/requeue", json={})
    assert mine.json() == {"requeued": 1}
    states = {r.event_id: forward_state(r) for r in await stored(api)}
    assert states == {
        "a-1": ForwardState.PENDING,
        "a-2": ForwardState.PENDING,
        "b-1": ForwardState.FAILED,  # another app's: untouched
    }
    picked = await api.admin.post("/v1/interactions/requeue", json={"event_ids": ["nope"]})
    assert picked.json() == {"requeued": 0}
    everything = await api.admin.post("/v1/interactions/requeue", json={})
    assert everything.json() == {"requeued": 1}
    again = {r.event_id: r for r in await stored(api)}
    assert (again["b-1"].forward_failures, again["b-1"].last_error) == (0, None)
