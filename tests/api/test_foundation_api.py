"""The API's first endpoints on both stores: apps, profiles, devices, interactions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from tests.harness import ADMIN_KEY, app_credentials, make_settings, unique_ids
from tidings.api.app import create_app
from tidings.sim import Simulators
from tidings.store.db import Database
from tidings.store.models import App, Device, Interaction


@pytest.fixture
async def api(tmp_path: Path, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(tmp_path, db.url, None)
    app = create_app(settings, db)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://tidings.test",
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        ) as client,
    ):
        yield client


async def test_requests_without_the_key_are_refused(api: httpx.AsyncClient) -> None:
    answer = await api.get("/v1/apps/x", headers={"Authorization": ""})
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"
    wrong = await api.get("/v1/apps/x", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


async def test_app_credentials_are_stored_sealed_and_never_returned(
    api: httpx.AsyncClient, db: Database, sims: Simulators
) -> None:
    team, key_id, project = unique_ids()
    credentials = app_credentials(sims, team_id=team, key_id=key_id, project_id=project)
    answer = await api.post("/v1/apps", json={"id": "shop", "name": "Shop"} | credentials)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["platforms"] == ["ios", "android"]
    assert body["apns"]["key_id"] == key_id
    private_key = credentials["apns"]["signing_key"]
    for text in (answer.text, (await api.get("/v1/apps/shop")).text):
        assert "PRIVATE KEY" not in text
        assert "private_key" not in text
    async with db.read() as session:
        app = await session.get(App, "shop")
    assert app is not None
    assert app.apns_secret is not None
    assert app.apns_secret.startswith("enc:")
    assert private_key not in app.apns_secret
    again = await api.post("/v1/apps", json={"id": "shop", "name": "Shop"} | credentials)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "app_exists"


async def test_bad_credentials_name_the_field_and_echo_nothing(api: httpx.AsyncClient) -> None:
    body = {
        "id": "bad",
        "name": "Bad",
        "apns": {
            "team_id": "short",
            "key_id": "ABCDEFGHIJ",
            "bundle_id": "com.example.app",
            "signing_key": "-----BEGIN PRIVATE KEY-----\nnot-a-key\n-----END PRIVATE KEY-----",
        },
    }
    answer = await api.post("/v1/apps", json=body)
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "invalid_request"
    fields = {".".join(d["loc"]) for d in error["details"]}
    assert "body.apns.token.team_id" in fields
    assert "body.apns.token.signing_key" in fields
    assert "not-a-key" not in answer.text


async def test_device_registration_is_an_idempotent_upsert_that_moves_tokens(
    api: httpx.AsyncClient, db: Database
) -> None:
    assert (await api.post("/v1/apps", json={"id": "a1", "name": "A1"})).status_code == 201
    token = "ab" * 32
    first = await api.post(
        "/v1/apps/a1/devices",
        json={"profile_id": "alice", "create_profile": True, "provider": "apns", "token": token},
    )
    assert first.status_code == 200, first.text
    again = await api.post(
        "/v1/apps/a1/devices",
        json={"profile_id": "alice", "create_profile": True, "provider": "apns", "token": token},
    )
    assert again.json()["id"] == first.json()["id"]
    moved = await api.post(
        "/v1/apps/a1/devices",
        json={
            "profile_id": "bob",
            "create_profile": True,
            "provider": "apns",
            "token": token.upper(),
        },
    )
    assert moved.json()["id"] == first.json()["id"]
    assert moved.json()["profile_id"] == "bob"
    async with db.read() as session:
        devices = (await session.exec(select(Device))).all()
    assert [(d.profile_id, d.token) for d in devices] == [("bob", token)]


@pytest.mark.parametrize(
    ("provider", "token", "problem"),
    [
        ("apns", "abc", "even-length hex"),
        ("apns", "zz" * 32, "even-length hex"),
        ("apns", "ab" * 101, "even-length hex"),
        ("fcm", "has space", "whitespace"),
    ],
)
async def test_bad_tokens_are_refused_with_the_reason(
    api: httpx.AsyncClient, provider: str, token: str, problem: str
) -> None:
    await api.post("/v1/apps", json={"id": "a2", "name": "A2"})
    answer = await api.post(
        "/v1/apps/a2/devices",
        json={"profile_id": "p", "create_profile": True, "provider": provider, "token": token},
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_token"
    assert problem in answer.json()["error"]["message"]


async def test_unknown_tracking_ids_are_refused_but_kept(
    api: httpx.AsyncClient, db: Database
) -> None:
    answer = await api.post("/v1/interactions", json={"tracking_id": "nope", "kind": "opened"})
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "unknown_tracking_id"
    async with db.read() as session:
        kept = (await session.exec(select(Interaction))).all()
    assert [(i.tracking_id, i.status) for i in kept] == [("nope", "unmatched")]


async def test_validation_errors_share_one_shape(api: httpx.AsyncClient) -> None:
    answer = await api.post("/v1/interactions", json={"kind": "licked"})
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "invalid_request"
    assert {tuple(d["loc"]) for d in error["details"]} >= {
        ("body", "tracking_id"),
        ("body", "kind"),
    }


async def test_openapi_is_served(api: httpx.AsyncClient) -> None:
    spec = (await api.get("/openapi.json")).json()
    assert "/v1/apps" in spec["paths"]
    assert (await api.get("/docs")).status_code == 200
