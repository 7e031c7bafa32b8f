"""Per-app API keys: shown once, stored as a digest, revocable, and confined to their app."""

from __future__ import annotations

import hashlib

from sqlmodel import select

from tests.api.conftest import Api, sent_push
from tidings.store.models import ApiKey, AppUserMapping, Device, Interaction

TOKEN = "ab" * 32


async def test_a_key_is_shown_once_stored_as_a_digest_and_revocable(api: Api) -> None:
    key = await api.create_app("shop")
    second = (await api.admin.post("/v1/apps/shop/keys", json={"name": "ci"})).json()
    listed = (await api.admin.get("/v1/apps/shop/keys")).json()
    assert {k["name"] for k in listed["items"]} == {"backend", "ci"}
    assert "key" not in listed["items"][0]
    assert key not in (await api.admin.get("/v1/apps/shop/keys")).text
    async with api.db.read() as session:
        rows = (await session.exec(select(ApiKey))).all()
    assert {r.secret_digest for r in rows} == {
        hashlib.sha256(k.encode()).hexdigest() for k in (key, second["key"])
    }

    async with api.client(key) as backend:
        device = {"profile_id": "ann", "create_profile": True, "provider": "apns", "token": TOKEN}
        assert (await backend.post("/v1/apps/shop/devices", json=device)).status_code == 200
        key_id = key.split("_")[1]
        revoked = await api.admin.delete(f"/v1/apps/shop/keys/{key_id}")
        assert revoked.status_code == 200
        assert revoked.json()["revoked_at"] is not None
        refused = await backend.post("/v1/apps/shop/devices", json=device)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthorized"
    # the other key still works; revoking twice is harmless; an unknown key id is a 404
    async with api.client(second["key"]) as other:
        assert (await other.get("/v1/apps/shop/devices")).status_code == 200
    assert (await api.admin.delete(f"/v1/apps/shop/keys/{key_id}")).status_code == 200
    missing = await api.admin.delete("/v1/apps/shop/keys/0123456789abcdef")
    assert missing.json()["error"]["code"] == "key_not_found"


async def test_an_app_key_cannot_touch_another_app_and_nothing_changes(api: Api) -> None:
    key_a = await api.create_app("app-a")
    await api.create_app("app-b")
    device = {"profile_id": "bob", "create_profile": True, "provider": "apns", "token": TOKEN}
    assert (await api.admin.post("/v1/apps/app-b/devices", json=device)).status_code == 200
    mapping = await api.admin.put(
        "/v1/apps/app-b/users/u-1", json={"profile_id": "bob", "create_profile": True}
    )
    assert mapping.status_code == 200
    tracking_b = await sent_push(api.db, app_id="app-b", profile_id="bob")

    async def snapshot() -> tuple[list[tuple[str, str, str]], list[str], list[str]]:
        async with api.db.read() as session:
            devices = [
                (d.app_id, d.profile_id, d.token) for d in (await session.exec(select(Device)))
            ]
            mappings = [m.profile_id for m in (await session.exec(select(AppUserMapping)))]
            interactions = [i.event_id for i in (await session.exec(select(Interaction)))]
        return devices, mappings, interactions

    before = await snapshot()
    async with api.client(key_a) as app_a:
        attempts = [
            await app_a.post("/v1/apps/app-b/devices", json=device | {"profile_id": "mallory"}),
            await app_a.post("/v1/apps/app-b/devices/batch", json={"items": [device]}),
            await app_a.post("/v1/apps/app-b/devices/cleanup", json={"profile_id": "bob"}),
            await app_a.post(
                "/v1/apps/app-b/devices/refresh",
                json={"old_token": TOKEN, "new_token": "cd" * 32},
            ),
            await app_a.get("/v1/apps/app-b/devices"),
            await app_a.delete("/v1/apps/app-b/devices/1"),
            await app_a.put(
                "/v1/apps/app-b/users/u-1", json={"profile_id": "mallory", "create_profile": True}
            ),
            await app_a.get("/v1/apps/app-b/users/u-1"),
            await app_a.delete("/v1/apps/app-b/users/u-1"),
            await app_a.post(
                "/v1/interactions", json={"tracking_id": tracking_b, "kind": "opened"}
            ),
        ]
        for answer in attempts:
            assert answer.status_code == 403, (answer.request.url, answer.text)
            assert answer.json()["error"]["code"] == "forbidden"
        # admin-only resources are refused to any app key
        for answer in (
            await app_a.get("/v1/apps"),
            await app_a.get("/v1/apps/app-a"),
            await app_a.patch("/v1/apps/app-a", json={"name": "Mine now"}),
            await app_a.post("/v1/apps/app-a/keys", json={"name": "more"}),
            await app_a.get("/v1/profiles/bob"),
            await app_a.delete("/v1/profiles/bob"),
            await app_a.get("/v1/erasures"),
        ):
            assert answer.status_code == 403, (answer.request.url, answer.text)
        # its own app is fine, and its interaction listing shows none of app B's
        assert (await app_a.get("/v1/apps/app-a/devices")).status_code == 200
        assert (await app_a.get("/v1/interactions")).json()["items"] == []
    assert await snapshot() == before


async def test_interactions_reported_with_an_app_key_must_be_its_own_pushes(api: Api) -> None:
    key = await api.create_app("own")
    tracking = await sent_push(api.db, app_id="own", profile_id="cy")
    async with api.client(key) as backend:
        answer = await backend.post(
            "/v1/interactions",
            json={"tracking_id": tracking, "kind": "clicked", "action_id": "buy"},
        )
        assert answer.status_code == 202, answer.text
        unknown = await backend.post(
            "/v1/interactions", json={"tracking_id": "nobody-sent-this", "kind": "opened"}
        )
        assert unknown.status_code == 404
        listed = (await backend.get("/v1/interactions")).json()["items"]
    # the app sees its matched report and the unmatched one it made, nothing else
    assert {(i["tracking_id"], i["status"]) for i in listed} == {
        (tracking, "matched"),
        ("nobody-sent-this", "unmatched"),
    }
    assert [i["action_id"] for i in listed if i["status"] == "matched"] == ["buy"]


async def test_unknown_and_malformed_keys_are_refused(api: Api) -> None:
    await api.create_app("k")
    for key in ("tdk_0123456789abcdef_" + "x" * 43, "nonsense", ""):
        async with api.client(key) as client:
            answer = await client.get("/v1/apps/k/devices")
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == "Bearer"
