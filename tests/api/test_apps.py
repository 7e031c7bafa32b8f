"""Apps: listed by page, deleted with what hangs off them, credentials sealed or referenced,
rotated without a restart (the version moves), and never echoed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import select

from tests.api.conftest import Api
from tests.harness import app_credentials, unique_ids
from tidings.sim import Simulators
from tidings.store.apps import open_credentials
from tidings.store.models import ApiKey, App, AppUserMapping, Device


async def test_apps_are_listed_by_page_in_id_order(api: Api) -> None:
    for n in range(5):
        assert (await api.admin.post("/v1/apps", json={"id": f"app-{n}", "name": "A"})).is_success
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await api.admin.get("/v1/apps", params=params)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"app-{n}" for n in range(5)]
    bad = await api.admin.get("/v1/apps", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_cursor"


async def test_deleting_an_app_removes_its_devices_mappings_and_keys(api: Api) -> None:
    key = await api.create_app("gone")
    await api.create_app("kept")
    for app_id in ("gone", "kept"):
        device = {"profile_id": "p", "provider": "fcm", "token": f"{app_id}-token"}
        assert (await api.admin.post(f"/v1/apps/{app_id}/devices", json=device)).is_success
        assert (
            await api.admin.put(f"/v1/apps/{app_id}/users/u", json={"profile_id": "p"})
        ).is_success
    assert (await api.admin.delete("/v1/apps/gone")).status_code == 204
    assert (await api.admin.get("/v1/apps/gone")).json()["error"]["code"] == "app_not_found"
    assert (await api.admin.delete("/v1/apps/gone")).status_code == 404
    async with api.db.read() as session:
        assert [d.app_id for d in (await session.exec(select(Device)))] == ["kept"]
        assert [m.app_id for m in (await session.exec(select(AppUserMapping)))] == ["kept"]
        assert {k.app_id for k in (await session.exec(select(ApiKey)))} == {"kept"}
    async with api.client(key) as orphan:
        assert (await orphan.get("/v1/apps/gone/devices")).status_code == 401


async def test_credentials_given_as_references_are_stored_as_references(
    api: Api, sims: Simulators, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    team, key_id, project = unique_ids()
    credentials = app_credentials(sims, team_id=team, key_id=key_id, project_id=project)
    key_file = tmp_path / "apns.p8"
    key_file.write_text(credentials["apns"]["signing_key"])
    monkeypatch.setenv("TIDINGS_TEST_FCM_ACCOUNT", credentials["fcm"]["service_account"])
    body = {
        "id": "refs",
        "name": "Refs",
        "apns": credentials["apns"] | {"signing_key": f"file:{key_file}"},
        "fcm": {"service_account": "env:TIDINGS_TEST_FCM_ACCOUNT"},
    }
    answer = await api.admin.post("/v1/apps", json=body)
    assert answer.status_code == 201, answer.text
    assert answer.json()["secret_storage"] == {"apns": "reference", "fcm": "reference"}
    async with api.db.read() as session:
        app = await session.get(App, "refs")
    assert app is not None
    assert app.apns_secret == f"file:{key_file}"
    assert app.fcm_secret == "env:TIDINGS_TEST_FCM_ACCOUNT"
    box = api.app.state.tidings.secrets
    opened = open_credentials(app, box)
    assert opened.fcm is not None
    assert opened.fcm.project_id == project

    # a reference that cannot be read names the field, and stores nothing
    broken = body | {"id": "broken", "fcm": {"service_account": "env:TIDINGS_TEST_UNSET_VAR"}}
    refused = await api.admin.post("/v1/apps", json=broken)
    assert refused.status_code == 422
    fields = {".".join(d["loc"]) for d in refused.json()["error"]["details"]}
    assert fields == {"body.fcm.service_account"}
    assert (await api.admin.get("/v1/apps/broken")).status_code == 404


async def test_rotating_credentials_moves_the_version_and_never_echoes_secrets(
    api: Api, sims: Simulators
) -> None:
    team, key_id, project = unique_ids()
    credentials = app_credentials(sims, team_id=team, key_id=key_id, project_id=project)
    created = (
        await api.admin.post("/v1/apps", json={"id": "rot", "name": "R"} | credentials)
    ).json()
    assert created["secret_storage"] == {"apns": "encrypted", "fcm": "encrypted"}
    async with api.db.write() as session:
        app = await session.get(App, "rot")
        assert app is not None
        app.apns_fault = "InvalidProviderToken"  # as a provider fault would record it
    team2, key2, project2 = unique_ids()
    fresh = app_credentials(sims, team_id=team2, key_id=key2, project_id=project2)
    rotated = await api.admin.patch("/v1/apps/rot", json={"apns": fresh["apns"]})
    assert rotated.status_code == 200, rotated.text
    after = rotated.json()
    assert after["credentials_version"] == created["credentials_version"] + 1
    assert after["apns"]["key_id"] == key2
    assert after["apns_fault"] is None
    for secret in (
        fresh["apns"]["signing_key"],
        json.loads(fresh["fcm"]["service_account"])["private_key"],
    ):
        assert secret not in rotated.text
        assert secret not in (await api.admin.get("/v1/apps")).text
    # removing a platform is a credential change too
    without_fcm = (await api.admin.patch("/v1/apps/rot", json={"fcm": None})).json()
    assert without_fcm["platforms"] == ["ios"]
    assert without_fcm["credentials_version"] == after["credentials_version"] + 1
    renamed = (await api.admin.patch("/v1/apps/rot", json={"name": "Renamed"})).json()
    assert renamed["credentials_version"] == without_fcm["credentials_version"]


async def test_credentials_never_reach_the_logs(
    api: Api, sims: Simulators, caplog: pytest.LogCaptureFixture
) -> None:
    team, key_id, project = unique_ids()
    credentials = app_credentials(sims, team_id=team, key_id=key_id, project_id=project)
    caplog.set_level("DEBUG", logger="tidings")
    assert (
        await api.admin.post("/v1/apps", json={"id": "quiet", "name": "Q"} | credentials)
    ).is_success
    assert (await api.admin.patch("/v1/apps/quiet", json=credentials)).is_success
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "app quiet created" in logged
    assert "PRIVATE KEY" not in logged
    assert credentials["apns"]["signing_key"].splitlines()[1] not in logged
