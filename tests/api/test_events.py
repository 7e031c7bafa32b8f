"""Custom events: an app's key posts only for the profiles its app knows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlmodel import select
from temporalio.client import Client

from tests.api.conftest import Api, serving
from tidings.store.db import Database
from tidings.store.models import CustomEvent

TOKEN = "ab" * 32


@pytest.fixture
async def api(
    tmp_path: Path, db: Database, temporal_client: Client, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Api]:
    """The API, forwarding events to the test session's Temporal server."""
    monkeypatch.setenv("TEMPORAL_ADDRESS", temporal_client.service_client.config.target_host)
    async with serving(tmp_path, db) as served:
        yield served


def event(profile_id: str, event_id: str) -> dict[str, object]:
    return {"profile_id": profile_id, "name": "order_placed", "event_id": event_id}


async def stored_events(api: Api) -> list[tuple[str, str]]:
    async with api.db.read() as session:
        rows = (await session.exec(select(CustomEvent))).all()
    return sorted((row.event_id, row.profile_id) for row in rows)


async def test_an_app_key_posts_events_only_for_profiles_its_app_knows(api: Api) -> None:
    key_a = await api.create_app("app-a")
    await api.create_app("app-b")
    device = {"profile_id": "bob", "create_profile": True, "provider": "apns", "token": TOKEN}
    assert (await api.admin.post("/v1/apps/app-b/devices", json=device)).status_code == 200
    mapped = await api.admin.put(
        "/v1/apps/app-a/users/u-ann", json={"profile_id": "ann", "create_profile": True}
    )
    assert mapped.status_code == 200
    carol = {
        "profile_id": "carol",
        "create_profile": True,
        "provider": "fcm",
        "token": "carol-token",
    }
    assert (await api.admin.post("/v1/apps/app-a/devices", json=carol)).status_code == 200

    async with api.client(key_a) as app_a:
        # bob exists only through app B: app A's key is answered as for no such profile
        foreign = await app_a.post("/v1/events", json=event("bob", "e-bob"))
        missing = await app_a.post("/v1/events", json=event("nobody", "e-nobody"))
        assert (foreign.status_code, missing.status_code) == (404, 404)
        assert foreign.json()["error"] == {
            "code": "unknown_profile",
            "message": "no profile 'bob'",
            "details": [],
        }
        assert missing.json()["error"]["message"] == "no profile 'nobody'"
        # its own profiles, through a user mapping or a device
        by_mapping = await app_a.post("/v1/events", json=event("ann", "e-ann"))
        by_device = await app_a.post("/v1/events", json=event("carol", "e-carol"))
        assert (by_mapping.status_code, by_device.status_code) == (202, 202)
    # the admin posts for any profile
    admin = await api.admin.post("/v1/events", json=event("bob", "e-bob-admin"))
    assert admin.status_code == 202, admin.text
    assert await stored_events(api) == [
        ("e-ann", "ann"),
        ("e-bob-admin", "bob"),
        ("e-carol", "carol"),
    ]


async def test_a_reused_event_id_names_another_apps_profile_to_nobody(api: Api) -> None:
    key_a = await api.create_app("app-a")
    await api.create_app("app-b")
    for app, profile, token in (("app-a", "ann", TOKEN), ("app-b", "bob", "cd" * 32)):
        device = {"profile_id": profile, "create_profile": True, "provider": "apns", "token": token}
        assert (await api.admin.post(f"/v1/apps/{app}/devices", json=device)).status_code == 200
    assert (await api.admin.post("/v1/events", json=event("bob", "shared"))).status_code == 202
    async with api.client(key_a) as app_a:
        reused = await app_a.post("/v1/events", json=event("ann", "shared"))
    assert reused.status_code == 409
    assert reused.json()["error"]["message"] == "event id 'shared' was stored for another event"
    assert "bob" not in reused.text
    # the admin is told which
    told = await api.admin.post("/v1/events", json=event("ann", "shared"))
    assert "'order_placed' of profile 'bob'" in told.json()["error"]["message"]


async def test_an_event_may_name_its_profile_by_the_app_user_id(api: Api) -> None:
    key_a = await api.create_app("app-a")
    await api.create_app("app-b")
    mapped = await api.admin.put(
        "/v1/apps/app-a/users/u-ann", json={"profile_id": "ann", "create_profile": True}
    )
    assert mapped.status_code == 200
    by_user = {"app_user_id": "u-ann", "name": "order_placed"}
    async with api.client(key_a) as backend:
        own = await backend.post("/v1/events", json=by_user | {"event_id": "u1"})
        assert own.status_code == 202, own.text
        unknown = await backend.post(
            "/v1/events", json=by_user | {"app_user_id": "u-nobody", "event_id": "u2"}
        )
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "unknown_app_user"
        other_app = await backend.post(
            "/v1/events", json=by_user | {"app": "app-b", "event_id": "u3"}
        )
        assert other_app.status_code == 403
    admin = await api.admin.post("/v1/events", json=by_user | {"app": "app-a", "event_id": "u4"})
    assert admin.status_code == 202, admin.text
    no_app = await api.admin.post("/v1/events", json=by_user | {"event_id": "u5"})
    assert no_app.status_code == 422
    both = await api.admin.post(
        "/v1/events", json=by_user | {"profile_id": "ann", "app": "app-a", "event_id": "u6"}
    )
    assert both.status_code == 422
    # an event never creates a profile
    ghost = await api.admin.post("/v1/events", json=event("ghost", "u7"))
    assert ghost.status_code == 404
    assert ghost.json()["error"]["code"] == "unknown_profile"
    assert await stored_events(api) == [("u1", "ann"), ("u4", "ann")]
