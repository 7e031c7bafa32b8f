"""Apps: listed by page, deleted with what hangs off them, credentials sealed or referenced,
checked against the providers (the simulators here) when saved and on demand, rotated without
a restart (the version moves), stopped and resumed, and never echoed."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select

from tests.api.conftest import Api, serving
from tests.harness import BUNDLE_ID, app_credentials, unique_ids
from tidings.push.check import CHECK_DEVICE_TOKEN
from tidings.sim import Answer, Scenario, Simulators
from tidings.store.apps import open_credentials, stop_sends
from tidings.store.db import Database
from tidings.store.models import ApiKey, App, AppUserMapping, Device

ApiFactory = Callable[..., AbstractAsyncContextManager[Api]]


@pytest.fixture
def api_with(tmp_path: Path, db: Database, sims: Simulators) -> ApiFactory:
    """``async with api_with(**settings) as api``: the API pointed at the simulators."""

    def make(**overrides: Any) -> AbstractAsyncContextManager[Api]:
        return serving(tmp_path, db, sims, **overrides)

    return make


@pytest.fixture
async def api(api_with: ApiFactory) -> AsyncIterator[Api]:
    async with api_with() as api:
        yield api


def secrets_of(credentials: dict[str, Any]) -> list[str]:
    """Lines of each secret that must never appear in an answer."""
    account = json.loads(credentials["fcm"]["service_account"])
    return [
        credentials["apns"]["signing_key"].splitlines()[1],
        account["private_key"].splitlines()[1],
        account["private_key_id"],
    ]


def fields_of(answer: httpx.Response) -> set[str]:
    return {detail["field"] for detail in answer.json()["error"]["details"]}


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
        device = {
            "profile_id": "p",
            "create_profile": True,
            "provider": "fcm",
            "token": f"{app_id}-token",
        }
        assert (await api.admin.post(f"/v1/apps/{app_id}/devices", json=device)).is_success
        assert (
            await api.admin.put(
                f"/v1/apps/{app_id}/users/u", json={"profile_id": "p", "create_profile": True}
            )
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


def wrong(credentials: dict[str, Any], provider: str, **changes: Any) -> dict[str, Any]:
    """The credentials with some fields of one provider changed (FCM: of the account JSON)."""
    if provider == "apns":
        return {"apns": credentials["apns"] | changes}
    account = json.loads(credentials["fcm"]["service_account"]) | changes
    return {"fcm": {"service_account": json.dumps(account)}}


async def test_credentials_the_providers_refuse_are_not_saved_and_the_field_is_named(
    api: Api, sims: Simulators
) -> None:
    """Each wrong field answers 422 in the one error shape, naming the field; nothing is
    stored on creation, and an update leaves the stored credentials as they were. Apple
    answers a wrong key id and a wrong team alike (InvalidProviderToken): a new app gets both
    named, an update that changed only one gets that one."""
    team, key_id, project = unique_ids()
    good = app_credentials(sims, team_id=team, key_id=key_id, project_id=project)
    other_team, other_key, _ = unique_ids()
    other_project = sims.fcm.create_service_account(unique_ids()[2])
    # the wrong credentials, the fields the answer names, and whether it names only those
    cases: list[tuple[dict[str, Any], set[str], bool]] = [
        (wrong(good, "apns", key_id=other_key), {"apns.key_id"}, True),
        (wrong(good, "apns", team_id=other_team), {"apns.team_id"}, True),
        (wrong(good, "apns", bundle_id="com.example.not.this.key"), {"apns.bundle_id"}, True),
        (wrong(good, "fcm", project_id=other_project["project_id"]), {"fcm.project_id"}, True),
        (wrong(good, "fcm", project_id="no-such-project-anywhere"), {"fcm.project_id"}, True),
        # Google answers "Invalid JWT Signature." for a wrong key and a wrong key id alike
        (wrong(good, "fcm", private_key=other_project["private_key"]), {"fcm.private_key"}, False),
    ]
    created = await api.admin.post("/v1/apps", json={"id": "kept", "name": "K"} | good)
    assert created.status_code == 201, created.text
    assert created.json()["warnings"] == []
    before = (await api.admin.get("/v1/apps/kept")).json()
    async with api.db.read() as session:
        stored = await session.get(App, "kept")
        assert stored is not None
        sealed = (stored.apns_secret, stored.fcm_secret)
    answers: list[httpx.Response] = []
    for n, (body, fields, only) in enumerate(cases):
        refused = await api.admin.post("/v1/apps", json={"id": f"new-{n}", "name": "N"} | body)
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert error["code"] == "credentials_rejected"
        assert fields <= fields_of(refused), error
        for field in fields:
            assert field in error["message"]
        assert (await api.admin.get(f"/v1/apps/new-{n}")).status_code == 404

        patched = await api.admin.patch("/v1/apps/kept", json=body)
        assert patched.status_code == 422, patched.text
        named = fields_of(patched)
        assert named == fields if only else fields <= named, patched.json()
        assert (await api.admin.get("/v1/apps/kept")).json() == before
        answers += [refused, patched]
    # an ambiguous answer names every field it may be about when nothing tells them apart
    new_key = await api.admin.post(
        "/v1/apps", json={"id": "new-key", "name": "N"} | wrong(good, "apns", key_id=other_key)
    )
    assert fields_of(new_key) == {"apns.key_id", "apns.team_id", "apns.signing_key"}
    async with api.db.read() as session:
        stored = await session.get(App, "kept")
        assert stored is not None
        assert (stored.apns_secret, stored.fcm_secret) == sealed
    for answer in [*answers, new_key]:
        for secret in secrets_of(good):
            assert secret not in answer.text
        assert other_project["private_key"].splitlines()[1] not in answer.text


async def test_unreachable_providers_are_a_warning_and_the_app_is_saved(
    api_with: ApiFactory, sims: Simulators
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    team, key_id, project = unique_ids()
    credentials = app_credentials(sims, team_id=team, key_id=key_id, project_id=project)
    nowhere = {"apns_endpoint": f"127.0.0.1:{port}", "fcm_endpoint": f"https://127.0.0.1:{port}"}
    async with api_with(**nowhere, credential_check_timeout_s=5.0) as api:
        answer = await api.admin.post("/v1/apps", json={"id": "away", "name": "A"} | credentials)
        assert answer.status_code == 201, answer.text
        warnings = answer.json()["warnings"]
        assert {(w["field"], w["transient"]) for w in warnings} == {
            ("apns", True),
            ("fcm", True),
        }
        assert answer.json()["platforms"] == ["ios", "android"]
        read = (await api.admin.get("/v1/apps/away")).json()
        assert "warnings" not in read
        assert read["credentials_version"] == 1

    # a provider that answers it is busy: the same
    sims.apns.set_scenario(
        Scenario(scripted={CHECK_DEVICE_TOKEN: [Answer(reason="ServiceUnavailable")]})
    )
    async with api_with() as api:
        busy = await api.admin.patch("/v1/apps/away", json={"apns": credentials["apns"]})
        assert busy.status_code == 200, busy.text
        assert [w["field"] for w in busy.json()["warnings"]] == ["apns"]


async def test_the_save_time_check_can_be_turned_off(
    api_with: ApiFactory, sims: Simulators
) -> None:
    team, key_id, project = unique_ids()
    credentials = app_credentials(sims, team_id=team, key_id=key_id, project_id=project)
    unknown_key = wrong(credentials, "apns", key_id=unique_ids()[1])
    async with api_with(check_credentials_on_save=False) as api:
        saved = await api.admin.post("/v1/apps", json={"id": "gapped", "name": "G"} | unknown_key)
        assert saved.status_code == 201, saved.text
        assert saved.json()["warnings"] == []
        assert sims.apns.records() == []  # nothing reached a provider

        # on demand, it still runs: per provider, naming the fields
        checked = await api.admin.post("/v1/apps/gapped/check")
        assert checked.status_code == 200, checked.text
        report = checked.json()
        assert report["accepted"] is False
        [apns] = report["providers"]
        assert apns["provider"] == "apns"
        assert apns["result"] == "rejected"
        assert apns["problems"][0]["fields"] == ["apns.key_id", "apns.team_id", "apns.signing_key"]


async def test_the_check_runs_on_demand_per_provider(api: Api, sims: Simulators) -> None:
    team, key_id, project = unique_ids()
    credentials = app_credentials(sims, team_id=team, key_id=key_id, project_id=project)
    assert (
        await api.admin.post("/v1/apps", json={"id": "c", "name": "C"} | credentials)
    ).is_success
    sims.reset()
    answer = await api.admin.post("/v1/apps/c/check")
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["app_id"] == "c"
    assert report["accepted"] is True
    assert [(p["provider"], p["result"], p["problems"]) for p in report["providers"]] == [
        ("apns", "accepted", []),
        ("fcm", "accepted", []),
    ]
    # nothing was delivered: a push to a token Apple never issued, and an FCM dry run
    assert sims.apns.accepted() == []
    assert sims.fcm.accepted() == []
    assert [r.validate_only for r in sims.fcm.records()] == [True]

    # Apple withdrew the topic from the key, then is busy: rejected, then inconclusive
    sims.apns.set_scenario(
        Scenario(
            scripted={
                CHECK_DEVICE_TOKEN: [
                    Answer(reason="TopicDisallowed"),
                    Answer(reason="ServiceUnavailable"),
                ]
            }
        )
    )
    for result, field, transient in (
        ("rejected", "apns.bundle_id", False),
        ("inconclusive", "apns", True),
    ):
        report = (await api.admin.post("/v1/apps/c/check")).json()
        assert report["accepted"] is False
        results = {p["provider"]: p for p in report["providers"]}
        assert results["apns"]["result"] == result
        [problem] = results["apns"]["problems"]
        assert (problem["field"], problem["transient"]) == (field, transient)
        assert results["fcm"]["result"] == "accepted"
    for secret in secrets_of(credentials):
        assert secret not in answer.text

    assert (await api.admin.post("/v1/apps", json={"id": "bare", "name": "B"})).is_success
    none = await api.admin.post("/v1/apps/bare/check")
    assert none.status_code == 409
    assert none.json()["error"]["code"] == "no_credentials"
    assert (await api.admin.post("/v1/apps/missing/check")).status_code == 404
    key = (await api.admin.post("/v1/apps/c/keys", json={"name": "k"})).json()["key"]
    async with api.client(key) as app_key:
        assert (await app_key.post("/v1/apps/c/check")).status_code == 403


async def test_a_stop_shows_with_its_time_and_an_admin_resumes_it(
    api: Api, sims: Simulators
) -> None:
    team, key_id, project = unique_ids()
    credentials = app_credentials(sims, team_id=team, key_id=key_id, project_id=project)
    assert (
        await api.admin.post("/v1/apps", json={"id": "s", "name": "S"} | credentials)
    ).is_success
    stopped_at = datetime.now(UTC).replace(microsecond=0)
    async with api.db.write() as session:
        app = await session.get(App, "s")
        assert app is not None
        await stop_sends(session, app, "apns", "403 BadEnvironmentKeyInToken", stopped_at)
        # a second fault does not move the first one's reason or time
        await stop_sends(session, app, "apns", "400 BadTopic", stopped_at + timedelta(hours=1))
    read = (await api.admin.get("/v1/apps/s")).json()
    [(provider, stop)] = read["stops"].items()
    assert (provider, stop["reason"]) == ("apns", "403 BadEnvironmentKeyInToken")
    assert datetime.fromisoformat(stop["since"]) == stopped_at
    assert read["apns_fault"] == "403 BadEnvironmentKeyInToken"
    assert read["fcm_fault"] is None

    resumed = await api.admin.post("/v1/apps/s/resume", json={"provider": "apns"})
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["stops"] == {}
    assert resumed.json()["credentials_version"] == read["credentials_version"]  # no rotation
    assert (await api.admin.get("/v1/apps/s")).json()["apns_fault"] is None
    # resuming what is not stopped changes nothing; a provider without credentials cannot
    assert (await api.admin.post("/v1/apps/s/resume", json={"provider": "fcm"})).is_success
    assert (await api.admin.patch("/v1/apps/s", json={"fcm": None})).is_success
    without = await api.admin.post("/v1/apps/s/resume", json={"provider": "fcm"})
    assert without.status_code == 409
    assert without.json()["error"]["code"] == "no_credentials"
    bad = await api.admin.post("/v1/apps/s/resume", json={"provider": "webpush"})
    assert bad.status_code == 422


async def test_a_p12_certificate_is_taken_and_stored_as_pem(api: Api, sims: Simulators) -> None:
    from tests.push.test_check import p12_of

    cert, key = sims.apns.create_client_certificate([BUNDLE_ID])
    encoded = p12_of(cert, key, b"app-store-export")
    body: dict[str, Any] = {
        "id": "p12",
        "name": "P12",
        "apns": {
            "auth": "certificate",
            "bundle_id": BUNDLE_ID,
            "certificate": encoded,
            "certificate_password": "app-store-export",
        },
    }
    answer = await api.admin.post("/v1/apps", json=body)
    assert answer.status_code == 201, answer.text
    assert answer.json()["warnings"] == []
    assert answer.json()["apns"] == {
        "auth": "certificate",
        "bundle_id": BUNDLE_ID,
        "environment": "production",
    }
    assert "app-store-export" not in answer.text
    async with api.db.read() as session:
        app = await session.get(App, "p12")
        assert app is not None
    opened = open_credentials(app, api.app.state.tidings.secrets).apns
    assert opened is not None
    assert opened.certificate.get_secret_value().startswith("-----BEGIN CERTIFICATE-----")  # type: ignore[union-attr]
    wrong_password = body | {"id": "p12b", "apns": body["apns"] | {"certificate_password": "x"}}
    refused = await api.admin.post("/v1/apps", json=wrong_password)
    assert refused.status_code == 422
    assert "certificate_password" in refused.json()["error"]["message"]
    assert encoded[:40] not in refused.text
