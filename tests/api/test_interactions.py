"""Interaction reports: idempotent on the event id, committed before the 202, unknown
tracking ids refused but kept."""

from __future__ import annotations

import asyncio

from sqlmodel import select

from tests.api.conftest import Api, sent_push
from tidings.store.models import Interaction


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
