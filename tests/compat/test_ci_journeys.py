"""The Customer Insights - Journeys compatible surface, replaying the request bodies of
../shared/reference/customer-insights-api.md against /compat/ci-journeys/ on both stores."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

from sqlmodel import select
from temporalio.client import Client

from tests.api.conftest import BASE_URL, Api, offline_credentials, sent_push
from tests.compat.conftest import CallbackServer
from tests.harness import app_credentials, make_settings, real_stack, unique_ids
from tidings.journeys import parse_definition
from tidings.runs.start import start_run
from tidings.sim import Simulators
from tidings.store.models import Device, Interaction, RegistrationRequest

# The original's ids are GUIDs; a tidings app id may be one.
APP = "00000000-0000-0000-0000-0000000000a1"
ORG = "11111111-2222-3333-4444-555555555555"
BASE = f"/compat/ci-journeys/api/v1.0/orgs/{ORG}"
DEVICES = f"{BASE}/pushdeviceregistration/devices"
EVENTS = f"{BASE}/pushdatareceiver/events"
USER = "0f8fad5b-d9cb-469f-a165-70867728950e"
APNS_TOKEN = "740f4707bebcf74f9b7c25d48e3358945f6aa01da5ddb387462c7eaf61bb78ad"
FCM_TOKEN = "fcm-token-1:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx"
TRACK = {"x-ms-track-registration": "true"}


async def devices(api: Api) -> list[tuple[str, str]]:
    async with api.db.read() as session:
        return sorted((d.profile_id, d.token) for d in (await session.exec(select(Device))))


async def status_of(api: Api, key: str, ids: list[str]) -> list[dict[str, object]]:
    answer = await api.admin.post(
        f"{DEVICES}/status/",
        json={"RegistrationRequestIds": ids, "MobileAppId": APP, "ApiToken": key},
    )
    assert answer.status_code == 200, answer.text
    return list(answer.json())


async def test_single_registrations_are_tracked_and_their_status_is_answered(api: Api) -> None:
    key = await api.create_app(APP, with_credentials=True)
    ios = {"MobileAppId": APP, "UserId": USER, "ApiToken": key, "ApnsDeviceToken": APNS_TOKEN}
    android = {"MobileAppId": APP, "UserId": USER, "ApiToken": key, "FcmDeviceToken": FCM_TOKEN}
    untracked = await api.admin.post(DEVICES, json=ios)
    assert untracked.status_code == 202
    assert untracked.content == b""  # the documented answer: an empty body
    answers = [await api.admin.post(DEVICES, json=b, headers=TRACK) for b in (ios, android)]
    assert [a.status_code for a in answers] == [202, 202]
    ids = [a.json()["RegistrationRequestId"] for a in answers]
    assert await status_of(api, key, ids) == [
        {"RegistrationRequestId": ids[0], "Status": "Success", "FailureReason": None},
        {"RegistrationRequestId": ids[1], "Status": "Success", "FailureReason": None},
    ]
    assert await devices(api) == sorted([(USER, APNS_TOKEN), (USER, FCM_TOKEN)])
    # the upper-case MobileAppId of the original's GUIDs names the same app
    upper = ios | {"MobileAppId": APP.upper()}
    assert (await api.admin.post(DEVICES, json=upper)).status_code == 202
    assert len(await devices(api)) == 2


async def test_the_callback_is_signed_with_the_api_token_and_sent_once(
    api: Api, callback_server: CallbackServer
) -> None:
    key = await api.create_app(APP, with_credentials=True)
    url = f"{callback_server.url}/registered?device=1"
    headers = TRACK | {
        "x-ms-callback-url": url,
        "x-ms-callback-url-headers": json.dumps({"X-Shared-Secret": "s3cr3t"}),
    }
    body = {"MobileAppId": APP, "UserId": USER, "ApiToken": key, "ApnsDeviceToken": APNS_TOKEN}
    answer = await api.admin.post(DEVICES, json=body, headers=headers)
    assert answer.status_code == 202
    [call] = callback_server.received
    expected = base64.b64encode(hmac.new(key.encode(), url.encode(), hashlib.sha256).digest())
    assert call.body == {"Status": "Success", "Signature": expected.decode(), "FailureReason": None}
    assert call.headers["x-shared-secret"] == "s3cr3t"
    assert call.path == "/registered"
    # a failed registration calls back with its reason
    too_long = body | {"ApnsDeviceToken": "ab" * 101}
    await api.admin.post(DEVICES, json=too_long, headers=headers)
    assert callback_server.received[-1].body["Status"] == "Failed"
    assert callback_server.received[-1].body["FailureReason"] == "DeviceTokenTooLong"
    assert len(callback_server.received) == 2
    # malformed callback headers are a bad request, and nothing is stored for it
    bad = headers | {"x-ms-callback-url-headers": "[1, 2]"}
    other = body | {"ApnsDeviceToken": "cd" * 32}
    assert (await api.admin.post(DEVICES, json=other, headers=bad)).status_code == 400
    assert ("cd" * 32) not in {t for _, t in await devices(api)}


async def test_a_batch_answers_ids_in_order_with_each_outcome(api: Api) -> None:
    key = await api.create_app(APP, with_credentials=True)
    await api.create_app("other-app")
    items = [
        {"MobileAppId": APP, "UserId": "u1", "ApiToken": key, "ApnsDeviceToken": APNS_TOKEN},
        {"MobileAppId": APP, "UserId": "u2", "ApiToken": key, "FcmDeviceToken": FCM_TOKEN},
        {"MobileAppId": APP, "UserId": "u3", "ApiToken": key, "ApnsDeviceToken": "ab" * 101},
        {"MobileAppId": APP, "UserId": "u4", "ApiToken": key, "ApnsDeviceToken": "not hex"},
        {"MobileAppId": APP, "UserId": "u5", "ApiToken": key, "ApnsDeviceToken": APNS_TOKEN},
        {"MobileAppId": APP, "UserId": "u6", "ApiToken": "wrong", "FcmDeviceToken": "x:1"},
        {"MobileAppId": "other-app", "UserId": "u7", "ApiToken": key, "FcmDeviceToken": "y:2"},
    ]
    answer = await api.admin.post(f"{DEVICES}/batch", json=items, headers=TRACK)
    assert answer.status_code == 202, answer.text
    ids = [item["RegistrationRequestId"] for item in answer.json()]
    assert len(set(ids)) == len(items)
    states = await status_of(api, key, ids)
    assert [(s["Status"], s["FailureReason"]) for s in states] == [
        ("Success", None),
        ("Success", None),
        ("Failed", "DeviceTokenTooLong"),
        ("Failed", "FailedToStoreDevice"),
        ("Failed", "DuplicateExists"),
        ("Pending", None),  # invalid ApiToken: nothing stored, status left Pending
        ("Pending", None),  # a key of another app: the same
    ]
    assert await devices(api) == [("u1", APNS_TOKEN), ("u2", FCM_TOKEN)]
    too_many = await api.admin.post(f"{DEVICES}/batch", json=[items[0]] * 101)
    assert too_many.status_code == 400


async def test_an_invalid_api_token_stores_nothing_and_leaves_the_status_pending(
    api: Api, callback_server: CallbackServer
) -> None:
    key = await api.create_app(APP, with_credentials=True)
    headers = TRACK | {"x-ms-callback-url": callback_server.url}
    body = {
        "MobileAppId": APP,
        "UserId": USER,
        "ApiToken": "tdk_forged",
        "ApnsDeviceToken": APNS_TOKEN,
    }
    answer = await api.admin.post(DEVICES, json=body, headers=headers)
    assert answer.status_code == 202
    request_id = answer.json()["RegistrationRequestId"]
    assert await devices(api) == []
    async with api.db.read() as session:
        assert (await session.exec(select(RegistrationRequest))).all() == []
    assert callback_server.received == []
    assert await status_of(api, key, [request_id]) == [
        {"RegistrationRequestId": request_id, "Status": "Pending", "FailureReason": None}
    ]
    refused = await api.admin.post(
        f"{DEVICES}/status",
        json={"RegistrationRequestIds": [request_id], "MobileAppId": APP, "ApiToken": "nope"},
    )
    assert refused.status_code == 400
    # a cleanup with an invalid token is accepted, and changes nothing either
    await api.admin.post(DEVICES, json=body | {"ApiToken": key})
    cleanup = {"MobileAppId": APP, "ApiToken": "nope", "UserId": USER}
    assert (await api.admin.post(f"{DEVICES}/cleanup", json=cleanup)).status_code == 202
    assert await devices(api) == [(USER, APNS_TOKEN)]


async def test_malformed_requests_are_answered_400(api: Api) -> None:
    key = await api.create_app(APP, with_credentials=True)
    base = {"MobileAppId": APP, "UserId": USER, "ApiToken": key}
    for body in (
        base,  # no token
        base | {"ApnsDeviceToken": APNS_TOKEN, "FcmDeviceToken": FCM_TOKEN},
        {"MobileAppId": APP, "ApiToken": key, "ApnsDeviceToken": APNS_TOKEN},  # no UserId
        [base],  # an array where one object is expected
    ):
        answer = await api.admin.post(DEVICES, json=body)
        assert answer.status_code == 400, body
        assert answer.json()["error"]["code"] == "bad_request"
    not_json = await api.admin.post(
        DEVICES, content=b"{", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 400
    assert await devices(api) == []


async def test_cleanup_single_and_batch(api: Api) -> None:
    key = await api.create_app(APP, with_credentials=True)
    registrations = [
        {"MobileAppId": APP, "UserId": "u1", "ApiToken": key, "ApnsDeviceToken": "a1" * 32},
        {"MobileAppId": APP, "UserId": "u1", "ApiToken": key, "FcmDeviceToken": "u1-android"},
        {"MobileAppId": APP, "UserId": "u2", "ApiToken": key, "ApnsDeviceToken": "b2" * 32},
        {"MobileAppId": APP, "UserId": "u3", "ApiToken": key, "FcmDeviceToken": "u3-android"},
        {"MobileAppId": APP, "UserId": "u3", "ApiToken": key, "FcmDeviceToken": "u3-tablet"},
    ]
    assert (await api.admin.post(f"{DEVICES}/batch", json=registrations)).status_code == 202
    one = {"MobileAppId": APP, "ApiToken": key, "UserId": "u1", "DeviceToken": "A1" * 32}
    assert (await api.admin.post(f"{DEVICES}/cleanup", json=one)).status_code == 202
    assert await devices(api) == [
        ("u1", "u1-android"),
        ("u2", "b2" * 32),
        ("u3", "u3-android"),
        ("u3", "u3-tablet"),
    ]
    batch = [
        {"MobileAppId": APP, "ApiToken": key, "UserId": "u3"},  # all of u3's devices
        {"MobileAppId": APP, "ApiToken": key, "UserId": "u2", "DeviceToken": "b2" * 32},
    ]
    assert (await api.admin.post(f"{DEVICES}/cleanup/batch", json=batch)).status_code == 202
    assert await devices(api) == [("u1", "u1-android")]


async def test_the_interaction_endpoint_takes_opened_and_clicked(api: Api) -> None:
    key = await api.create_app(APP, with_credentials=True)
    body = {"MobileAppId": APP, "UserId": USER, "ApiToken": key, "ApnsDeviceToken": APNS_TOKEN}
    await api.admin.post(DEVICES, json=body)
    async with api.db.read() as session:
        device = (await session.exec(select(Device))).one()
    tracking = await sent_push(api.db, app_id=APP, profile_id=USER, device_id=device.id)
    report = {"TrackingId": tracking, "DeviceToken": APNS_TOKEN, "PushNotificationStatus": 1}
    # no API key: the app itself calls this endpoint, as with the original
    async with api.client(None) as device_app:
        assert (await device_app.post(EVENTS, json=report)).status_code == 202
        assert (await device_app.post(EVENTS, json=report)).status_code == 202  # idempotent
        clicked = report | {"PushNotificationStatus": "0"}
        assert (await device_app.post(EVENTS, json=clicked)).status_code == 202
        assert (
            await device_app.post(EVENTS, json=report | {"PushNotificationStatus": "Opened"})
        ).status_code == 202
        wrong_device = report | {"DeviceToken": "ff" * 32}
        assert (await device_app.post(EVENTS, json=wrong_device)).status_code == 400
        unknown = report | {"TrackingId": "00000000-0000-0000-0000-000000000000"}
        answer = await device_app.post(EVENTS, json=unknown)
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == "unknown_tracking_id"  # counted, not stored
        bad_status = report | {"PushNotificationStatus": 7}
        assert (await device_app.post(EVENTS, json=bad_status)).status_code == 400
    async with api.db.read() as session:
        rows = (await session.exec(select(Interaction))).all()
    assert sorted((r.tracking_id, r.kind, r.status, r.source) for r in rows) == sorted(
        [
            (tracking, "opened", "matched", "compat"),
            (tracking, "clicked", "matched", "compat"),
        ]
    )
    # the native API reporting the same open counts it once
    native = await api.admin.post(
        "/v1/interactions", json={"tracking_id": tracking, "kind": "opened"}
    )
    assert native.json()["duplicate"] is True


async def test_pushes_carry_the_data_keys_the_apps_read(
    tmp_path: Path, database_url: str, temporal_client: Client, sims: Simulators
) -> None:
    """Devices registered through the compatible surface receive pushes whose data holds
    title, body, imageUrl, link, originalLink and trackingId, on both providers; opening one
    is then reported back through the compatible interaction endpoint."""
    settings = make_settings(tmp_path, database_url, sims)
    team, key_id, project = unique_ids()
    async with real_stack(settings, temporal_client) as stack:
        body = {"id": APP, "name": "Compat"} | app_credentials(
            sims, team_id=team, key_id=key_id, project_id=project
        )
        assert (await stack.http.post("/v1/apps", json=body)).status_code == 201
        key = (await stack.http.post(f"/v1/apps/{APP}/keys", json={"name": "app"})).json()["key"]
        registrations = [
            {"MobileAppId": APP, "UserId": USER, "ApiToken": key, "ApnsDeviceToken": APNS_TOKEN},
            {"MobileAppId": APP, "UserId": USER, "ApiToken": key, "FcmDeviceToken": FCM_TOKEN},
        ]
        answer = await stack.http.post(f"{DEVICES}/batch", json=registrations)
        assert answer.status_code == 202
        journey = parse_definition(
            {
                "id": "compat-payload",
                "name": "Compat payload",
                "app": APP,
                "nodes": [
                    {
                        "id": "hello",
                        "type": "push",
                        "content": {
                            "title": "Hello",
                            "body": "A new collection is out",
                            "image_url": "https://img.example.com/c.png",
                            "link": "https://shop.example.com/new",
                        },
                    }
                ],
            }
        )
        started = await start_run(temporal_client, stack.db, settings, journey, profile_ids=[USER])
        await started.handle.result()

        [apns] = sims.apns.accepted()
        [fcm] = sims.fcm.accepted()
        assert apns.payload is not None
        assert fcm.payload is not None
        for tracking_id, data in (
            (apns.tracking_id, apns.payload),
            (fcm.tracking_id, fcm.payload["data"]),
        ):
            assert data["title"] == "Hello"
            assert data["body"] == "A new collection is out"
            assert data["imageUrl"] == "https://img.example.com/c.png"
            assert data["link"] == "https://shop.example.com/new"
            assert data["originalLink"] == "https://shop.example.com/new"
            assert data["trackingId"] == tracking_id
        opened = {
            "TrackingId": apns.payload["trackingId"],
            "DeviceToken": APNS_TOKEN,
            "PushNotificationStatus": 1,
        }
        assert (await stack.http.post(EVENTS, json=opened)).status_code == 202
        async with stack.db.read() as session:
            [row] = (await session.exec(select(Interaction))).all()
        assert (row.kind, row.status, row.node_id, row.profile_id) == (
            "opened",
            "matched",
            "hello",
            USER,
        )


async def test_the_public_endpoint_joined_as_the_samples_join_it(api: Api) -> None:
    """Microsoft's samples build `{PublicEndpoint}/api/v1.0/...`; with the endpoint written as
    the README gives it (ending in `/`), the path holds `//api`."""
    key = await api.create_app(APP, with_credentials=True)
    public_endpoint = f"{BASE_URL}/compat/ci-journeys/"
    devices_url = f"{public_endpoint}/api/v1.0/orgs/{ORG}/pushdeviceregistration/devices"
    body = {"MobileAppId": APP, "UserId": USER, "ApiToken": key, "ApnsDeviceToken": APNS_TOKEN}
    answer = await api.admin.post(devices_url, json=body, headers=TRACK)
    assert answer.status_code == 202, answer.text
    request_id = answer.json()["RegistrationRequestId"]
    status = await api.admin.post(
        f"{devices_url}/status/",
        json={"RegistrationRequestIds": [request_id], "MobileAppId": APP, "ApiToken": key},
    )
    assert status.status_code == 200, status.text
    assert status.json()[0]["Status"] == "Success"
    assert await devices(api) == [(USER, APNS_TOKEN)]
    async with api.db.read() as session:
        device = (await session.exec(select(Device))).one()
    tracking = await sent_push(api.db, app_id=APP, profile_id=USER, device_id=device.id)
    report = {"TrackingId": tracking, "DeviceToken": APNS_TOKEN, "PushNotificationStatus": 1}
    async with api.client(None) as device_app:
        reported = await device_app.post(
            f"{public_endpoint}/api/v1.0/orgs/{ORG}/pushdatareceiver/events", json=report
        )
    assert reported.status_code == 202, reported.text


async def test_a_token_of_a_platform_the_app_has_no_credentials_for_fails_as_a_dry_run(
    api: Api, callback_server: CallbackServer
) -> None:
    key = await api.create_app(APP)
    fcm_only = await api.admin.patch(f"/v1/apps/{APP}", json={"fcm": offline_credentials()["fcm"]})
    assert fcm_only.status_code == 200, fcm_only.text
    ios = {"MobileAppId": APP, "UserId": USER, "ApiToken": key, "ApnsDeviceToken": APNS_TOKEN}
    android = {"MobileAppId": APP, "UserId": USER, "ApiToken": key, "FcmDeviceToken": FCM_TOKEN}
    headers = TRACK | {"x-ms-callback-url": callback_server.url}
    single = await api.admin.post(DEVICES, json=ios, headers=headers)
    assert single.status_code == 202
    other_ios = ios | {"ApnsDeviceToken": "cd" * 32, "UserId": "u2"}
    batch = await api.admin.post(f"{DEVICES}/batch", json=[android, other_ios], headers=TRACK)
    assert batch.status_code == 202
    ids = [single.json()["RegistrationRequestId"]] + [
        item["RegistrationRequestId"] for item in batch.json()
    ]
    assert [(s["Status"], s["FailureReason"]) for s in await status_of(api, key, ids)] == [
        ("Failed", "DryRunSendingFailed"),
        ("Success", None),
        ("Failed", "DryRunSendingFailed"),
    ]
    assert [r.body["FailureReason"] for r in callback_server.received] == ["DryRunSendingFailed"]
    assert await devices(api) == [(USER, FCM_TOKEN)]
