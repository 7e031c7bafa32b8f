"""Devices: idempotent registration under concurrency, batches answered per item, refresh,
cleanup, and listing with each device's state."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from tests.api.conftest import Api
from tidings.store.models import Device, Profile
from tidings.store.targeting import invalidate_gone, quarantine
from tidings.store.types import utcnow


def apns(n: int) -> str:
    return f"{n:064x}"


async def stored_devices(api: Api) -> list[tuple[str, str]]:
    async with api.db.read() as session:
        rows = (await session.exec(select(Device).order_by(col(Device.id)))).all()
    return [(d.profile_id, d.token) for d in rows]


async def test_concurrent_registrations_of_one_token_end_with_one_row(api: Api) -> None:
    key = await api.create_app("busy")
    token = "a1" * 32
    async with api.client(key) as backend:
        answers = await asyncio.gather(
            *(
                backend.post(
                    "/v1/apps/busy/devices",
                    json={"profile_id": f"p{n % 5}", "provider": "apns", "token": token},
                )
                for n in range(20)
            )
        )
    assert [a.status_code for a in answers] == [200] * 20, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    devices = await stored_devices(api)
    assert len(devices) == 1
    assert devices[0][1] == token
    async with api.db.read() as session:
        assert len((await session.exec(select(Profile))).all()) == 5


async def test_concurrent_batches_sharing_tokens_neither_deadlock_nor_duplicate(api: Api) -> None:
    await api.create_app("bat")
    tokens = [apns(n) for n in range(30)]

    def batch(order: list[str], profile: str) -> dict[str, object]:
        return {"items": [{"profile_id": profile, "provider": "apns", "token": t} for t in order]}

    answers = await asyncio.gather(
        api.admin.post("/v1/apps/bat/devices/batch", json=batch(tokens, "x")),
        api.admin.post("/v1/apps/bat/devices/batch", json=batch(tokens[::-1], "y")),
        api.admin.post("/v1/apps/bat/devices/batch", json=batch(tokens[10:] + tokens[:10], "z")),
    )
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    devices = await stored_devices(api)
    assert sorted(t for _, t in devices) == sorted(tokens)
    # every token ended with one of the three profiles, once
    assert {p for p, _ in devices} <= {"x", "y", "z"}


async def test_a_batch_answers_each_item_and_keeps_the_valid_ones(api: Api) -> None:
    await api.create_app("mix")
    items = [
        {"profile_id": "a", "provider": "apns", "token": apns(1)},
        {"profile_id": "a", "provider": "apns", "token": "not-hex"},
        {"profile_id": "b", "provider": "fcm", "token": "fcm-token:APA91b-1"},
        {"profile_id": "b", "provider": "fcm", "token": "has space"},
        {"profile_id": "c", "provider": "apns", "token": "ab" * 101},
    ]
    answer = await api.admin.post("/v1/apps/mix/devices/batch", json={"items": items})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["registered"], body["failed"]) == (2, 3)
    assert [i["index"] for i in body["items"]] == [0, 1, 2, 3, 4]
    assert [i["status"] for i in body["items"]] == [
        "registered",
        "failed",
        "registered",
        "failed",
        "failed",
    ]
    assert body["items"][1]["error"]["code"] == "invalid_token"
    assert "whitespace" in body["items"][3]["error"]["message"]
    assert body["items"][2]["device"]["profile_id"] == "b"
    assert sorted(await stored_devices(api)) == [("a", apns(1)), ("b", "fcm-token:APA91b-1")]
    too_many = {"items": [items[0]] * 101}
    assert (await api.admin.post("/v1/apps/mix/devices/batch", json=too_many)).status_code == 422


async def test_refresh_replaces_the_token_and_keeps_the_profile(api: Api) -> None:
    await api.create_app("ref")
    first = (
        await api.admin.post(
            "/v1/apps/ref/devices", json={"profile_id": "r", "provider": "apns", "token": apns(1)}
        )
    ).json()
    refreshed = await api.admin.post(
        "/v1/apps/ref/devices/refresh",
        json={"old_token": apns(1).upper(), "new_token": apns(2)},
    )
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["id"] == first["id"]
    assert await stored_devices(api) == [("r", apns(2))]
    # the new token was registered already (to someone else): that device is kept, for "r"
    await api.admin.post(
        "/v1/apps/ref/devices", json={"profile_id": "s", "provider": "apns", "token": apns(3)}
    )
    merged = await api.admin.post(
        "/v1/apps/ref/devices/refresh", json={"old_token": apns(2), "new_token": apns(3)}
    )
    assert merged.json()["profile_id"] == "r"
    assert await stored_devices(api) == [("r", apns(3))]
    unknown = await api.admin.post(
        "/v1/apps/ref/devices/refresh", json={"old_token": apns(9), "new_token": apns(8)}
    )
    assert unknown.json()["error"]["code"] == "token_not_registered"
    bad = await api.admin.post(
        "/v1/apps/ref/devices/refresh", json={"old_token": apns(3), "new_token": "zz"}
    )
    assert bad.json()["error"]["code"] == "invalid_token"
    assert await stored_devices(api) == [("r", apns(3))]


async def test_cleanup_one_device_all_of_a_profile_or_a_batch(api: Api) -> None:
    await api.create_app("cln")
    for profile, n in (("a", 1), ("a", 2), ("a", 3), ("b", 4), ("b", 5), ("c", 6)):
        await api.admin.post(
            "/v1/apps/cln/devices",
            json={"profile_id": profile, "provider": "apns", "token": apns(n)},
        )
    one = await api.admin.post(
        "/v1/apps/cln/devices/cleanup", json={"profile_id": "a", "token": apns(1).upper()}
    )
    assert one.json() == {"removed": 1}
    # a token is only removed for the profile that owns it
    other = await api.admin.post(
        "/v1/apps/cln/devices/cleanup", json={"profile_id": "b", "token": apns(2)}
    )
    assert other.json() == {"removed": 0}
    everything = await api.admin.post("/v1/apps/cln/devices/cleanup", json={"profile_id": "a"})
    assert everything.json() == {"removed": 2}
    batch = await api.admin.post(
        "/v1/apps/cln/devices/cleanup/batch",
        json={"items": [{"profile_id": "b", "token": apns(4)}, {"profile_id": "zzz"}]},
    )
    assert batch.json() == {
        "removed": 1,
        "items": [{"removed": 1, "index": 0}, {"removed": 0, "index": 1}],
    }
    device_id = (await api.admin.get("/v1/apps/cln/devices", params={"profile_id": "c"})).json()[
        "items"
    ][0]["id"]
    assert (await api.admin.delete(f"/v1/apps/cln/devices/{device_id}")).status_code == 204
    assert (await api.admin.delete(f"/v1/apps/cln/devices/{device_id}")).status_code == 404
    assert await stored_devices(api) == [("b", apns(5))]


async def test_devices_are_listed_with_their_state(api: Api) -> None:
    await api.create_app("lst")
    ids = {}
    for name, n in (("valid", 1), ("invalid", 2), ("quarantined", 3), ("stale", 4)):
        answer = await api.admin.post(
            "/v1/apps/lst/devices", json={"profile_id": "p", "provider": "apns", "token": apns(n)}
        )
        ids[name] = answer.json()["id"]
    now = utcnow()
    async with api.db.write() as session:
        assert await invalidate_gone(session, ids["invalid"], now, "Unregistered", now)
        assert await quarantine(session, ids["quarantined"], "BadDeviceToken", now)
        await session.exec(
            update(Device)
            .where(col(Device.id) == ids["stale"])
            .values(registered_at=now - timedelta(days=40))
        )
    listed = (await api.admin.get("/v1/apps/lst/devices", params={"profile_id": "p"})).json()
    states = {d["id"]: (d["state"], d["state_reason"]) for d in listed["items"]}
    assert states == {
        ids["valid"]: ("valid", None),
        ids["invalid"]: ("invalid", "Unregistered"),
        ids["quarantined"]: ("quarantined", "BadDeviceToken"),
        ids["stale"]: ("stale", "not refreshed for 30 days"),
    }
    stale = next(d for d in listed["items"] if d["id"] == ids["stale"])
    assert stale["state_changed_at"] is not None
    only_stale = (await api.admin.get("/v1/apps/lst/devices", params={"state": "stale"})).json()
    assert [d["id"] for d in only_stale["items"]] == [ids["stale"]]
    only_valid = (await api.admin.get("/v1/apps/lst/devices", params={"state": "valid"})).json()
    assert [d["id"] for d in only_valid["items"]] == [ids["valid"]]
    # registering the stale token again revives it
    await api.admin.post(
        "/v1/apps/lst/devices", json={"profile_id": "p", "provider": "apns", "token": apns(4)}
    )
    read = (await api.admin.get(f"/v1/apps/lst/devices/{ids['stale']}")).json()
    assert read["state"] == "valid"
    page = (await api.admin.get("/v1/apps/lst/devices", params={"limit": 3})).json()
    rest = (
        await api.admin.get(
            "/v1/apps/lst/devices", params={"limit": 3, "cursor": page["next_cursor"]}
        )
    ).json()
    assert len(page["items"]) == 3
    assert len(rest["items"]) == 1
    assert rest["next_cursor"] is None


async def test_tokens_are_masked_in_logs(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    await api.create_app("log")
    caplog.set_level("DEBUG", logger="tidings")
    token = "c0ffee" * 20
    body = {"profile_id": "p", "provider": "apns", "token": token}
    assert (await api.admin.post("/v1/apps/log/devices", json=body)).is_success
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "c0ffee…" in logged
    assert token not in logged


async def test_mappings_are_looked_up_both_ways(api: Api) -> None:
    key = await api.create_app("map")
    async with api.client(key) as backend:
        for user, profile in (("u1", "p1"), ("u2", "p1"), ("u3", "p2")):
            answer = await backend.put(f"/v1/apps/map/users/{user}", json={"profile_id": profile})
            assert answer.status_code == 200, answer.text
        assert (await backend.get("/v1/apps/map/users/u2")).json()["profile_id"] == "p1"
        reverse = (await backend.get("/v1/apps/map/users", params={"profile_id": "p1"})).json()
        assert [m["app_user_id"] for m in reverse["items"]] == ["u1", "u2"]
        moved = await backend.put("/v1/apps/map/users/u2", json={"profile_id": "p2"})
        assert moved.json()["profile_id"] == "p2"
        reverse = (await backend.get("/v1/apps/map/users", params={"profile_id": "p2"})).json()
        assert [m["app_user_id"] for m in reverse["items"]] == ["u2", "u3"]
        assert (await backend.delete("/v1/apps/map/users/u2")).status_code == 204
        missing = await backend.get("/v1/apps/map/users/u2")
        assert missing.json()["error"]["code"] == "mapping_not_found"
    # mapping to a new profile id creates that (empty) profile
    assert (await api.admin.get("/v1/profiles/p2")).status_code == 200
