"""The FCM simulator answers as Google does, seen through firebase-admin and plain httpx."""

from __future__ import annotations

import json
import ssl
import time
from typing import Any

import httpx
import jwt
import pytest
from firebase_admin import App, exceptions, messaging

from tests.sim.conftest import FCM_TOKEN, AppFactory, fcm_token
from tidings.sim import Answer, Scenario, Simulators

FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"


GONE, FOREIGN, FAILING = fcm_token("gone"), fcm_token("foreign"), fcm_token("failing")


def push(token: str = FCM_TOKEN, tracking_id: str | None = None) -> messaging.Message:
    return messaging.Message(
        fid=token,
        data={"trackingId": tracking_id} if tracking_id else {"k": "v"},
        android=messaging.AndroidConfig(collapse_key=tracking_id, priority="high", ttl=3600),
        notification=messaging.Notification(title="Hi", body="there"),
    )


async def send_one(app: App, message: messaging.Message, dry_run: bool = False) -> Any:
    [response] = (await messaging.send_each_async([message], dry_run=dry_run, app=app)).responses
    return response


def http_response(response: Any) -> httpx.Response:
    """The HTTP answer behind a failed send (firebase-admin keeps it on the exception)."""
    answer: httpx.Response = response.exception.http_response
    return answer


def error_json(response: Any) -> dict[str, Any]:
    data: dict[str, Any] = http_response(response).json()
    return data


async def test_accepts_a_message_and_records_it(sims: Simulators, fcm_app: AppFactory) -> None:
    response = await send_one(fcm_app(), push(tracking_id="track-1"))
    assert response.success
    assert response.message_id.startswith("projects/demo-project/messages/0:")
    [record] = sims.fcm.records(tracking_id="track-1")
    assert record.provider == "fcm"
    assert (record.status, record.reason, record.token) == (200, None, FCM_TOKEN)
    assert record.collapse_id == "track-1"
    assert record.message_id == response.message_id
    assert record.payload is not None
    assert record.payload["android"]["priority"] == "high"
    assert record.validate_only is False
    assert sims.fcm.accepted(token=FCM_TOKEN) == [record]


async def test_legacy_token_field_is_a_target_too(sims: Simulators, fcm_app: AppFactory) -> None:
    message = {"token": fcm_token("legacy"), "data": {"trackingId": "legacy"}}
    body = await post_raw(sims, fcm_app(), {"message": message})
    assert body.status_code == 200
    assert sims.fcm.records(tracking_id="legacy")[0].token == fcm_token("legacy")


async def test_a_batch_of_500(sims: Simulators, fcm_app: AppFactory) -> None:
    batch = [push(fcm_token(f"tok-{i}"), f"t-{i}") for i in range(500)]
    result = await messaging.send_each_async(batch, app=fcm_app())
    assert result.success_count == 500
    assert sims.fcm.stats()["accepted"] == 500


async def test_validate_only_is_recorded_but_never_accepted(
    sims: Simulators, fcm_app: AppFactory
) -> None:
    response = await send_one(fcm_app(), push(tracking_id="dry"), dry_run=True)
    assert response.success
    assert response.message_id == "projects/demo-project/messages/fake_message_id"
    [record] = sims.fcm.records(tracking_id="dry")
    assert record.validate_only is True
    assert sims.fcm.accepted(tracking_id="dry") == []
    assert sims.fcm.displayed(FCM_TOKEN) == []


async def test_validate_only_still_reports_an_unregistered_token(
    sims: Simulators, fcm_app: AppFactory
) -> None:
    sims.fcm.mark_unregistered([GONE])
    response = await send_one(fcm_app(), push(GONE), dry_run=True)
    assert isinstance(response.exception, messaging.UnregisteredError)


def to_device(
    token: str,
    tracking_id: str,
    *,
    tag: str | None = None,
    apns_collapse_id: str | None = None,
    shown: bool = True,
    android: bool = True,
) -> messaging.Message:
    """A push as tidings builds one: collapse_key = tracking id, for Android and iOS alike."""
    return messaging.Message(
        fid=token,
        data={"trackingId": tracking_id},
        notification=messaging.Notification(title="Hi", body=tracking_id) if shown else None,
        android=messaging.AndroidConfig(
            collapse_key=tracking_id,
            notification=messaging.AndroidNotification(tag=tag) if shown else None,
        )
        if android
        else None,
        apns=messaging.APNSConfig(
            headers={"apns-collapse-id": apns_collapse_id} if apns_collapse_id else None
        ),
    )


async def shown(
    sims: Simulators, app: App, token: str, messages: list[messaging.Message]
) -> list[str | None]:
    for message in messages:
        assert (await send_one(app, message)).success
    return [r.tracking_id for r in sims.fcm.displayed(token)]


async def test_an_online_android_device_shows_every_copy_a_collapse_key_cannot_replace(
    sims: Simulators, fcm_app: AppFactory
) -> None:
    """collapse_key replaces only a message not yet delivered; the device is online."""
    device = fcm_token("android-1")
    copies = [to_device(device, "same") for _ in range(3)]
    assert await shown(sims, fcm_app(), device, copies) == ["same"] * 3


async def test_android_replaces_a_shown_notification_by_its_tag(
    sims: Simulators, fcm_app: AppFactory
) -> None:
    device = fcm_token("android-2")
    pushes = [
        to_device(device, "first", tag="a"),
        to_device(device, "other", tag="b"),
        to_device(device, "resent", tag="a"),
        to_device(device, "untagged"),
    ]
    assert await shown(sims, fcm_app(), device, pushes) == ["other", "resent", "untagged"]
    assert [r.display_key for r in sims.fcm.accepted(token=device)] == ["a", "b", "a", None]


async def test_a_data_only_message_reaches_the_app_every_time(
    sims: Simulators, fcm_app: AppFactory
) -> None:
    device = fcm_token("android-3")
    copies = [to_device(device, "data", tag="t", shown=False) for _ in range(2)]
    assert await shown(sims, fcm_app(), device, copies) == ["data", "data"]


async def test_ios_through_fcm_replaces_by_the_apns_collapse_id(
    sims: Simulators, fcm_app: AppFactory
) -> None:
    iphone, inferred = fcm_token("iphone"), fcm_token("iphone-inferred")
    sims.fcm.set_scenario(Scenario(platforms={iphone: "ios"}))
    app = fcm_app()
    pushes = [
        to_device(iphone, "one", tag="ignored-on-ios", apns_collapse_id="c1"),
        to_device(iphone, "two", apns_collapse_id="c1"),
        to_device(iphone, "three", tag="ignored-on-ios"),
        to_device(iphone, "data", apns_collapse_id="c1", shown=False),
    ]
    assert await shown(sims, app, iphone, pushes) == ["two", "three", "data"]
    # A message with an apns section and no android one goes to an iOS device.
    only_apns = [to_device(inferred, n, apns_collapse_id="c", android=False) for n in "xy"]
    assert await shown(sims, app, inferred, only_apns) == ["y"]


# -- OAuth2 -------------------------------------------------------------------------------------


async def test_oauth_flow_and_refresh_after_an_access_token_expires(
    sims: Simulators, fcm_app: AppFactory
) -> None:
    app = fcm_app("refresh-project", fresh=True)
    before = sims.fcm.issuer.issued
    assert (await send_one(app, push())).success
    assert sims.fcm.issuer.issued == before + 1
    assert (await send_one(app, push())).success
    assert sims.fcm.issuer.issued == before + 1  # cached for the hour
    sims.fcm.expire_access_tokens("refresh-project")
    # google-auth still trusts its token; the simulator answers 401 and the client refreshes.
    assert (await send_one(app, push(tracking_id="after-refresh"))).success
    assert sims.fcm.issuer.issued == before + 2
    statuses = [r.status for r in sims.fcm.records()]
    assert statuses == [200, 200, 401, 200]
    assert sims.fcm.records()[2].reason == "UNAUTHENTICATED"


async def test_scenario_shortens_access_token_lifetime(
    sims: Simulators, fcm_app: AppFactory
) -> None:
    sims.fcm.set_scenario(Scenario(access_token_ttl_s=0.001))
    app = fcm_app(fresh=True)
    # Every token is dead on arrival: 401, refresh, 401, refresh, 401: the client gives up.
    response = await send_one(app, push())
    assert isinstance(response.exception, exceptions.UnauthenticatedError)
    body = error_json(response)
    assert body["error"]["details"][0]["reason"] == "ACCESS_TOKEN_EXPIRED"


def assertion(sa: dict[str, str], **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "iss": sa["client_email"],
        "aud": sa["token_uri"],
        "scope": "https://www.googleapis.com/auth/firebase.messaging",
        "iat": now,
        "exp": now + 3600,
    }
    payload.update(claims)
    return jwt.encode(
        payload, sa["private_key"], algorithm="RS256", headers={"kid": sa["private_key_id"]}
    )


@pytest.mark.parametrize(
    ("claims", "error"),
    [
        ({}, None),
        ({"aud": "https://oauth2.googleapis.com/token"}, None),
        ({"scope": "https://www.googleapis.com/auth/cloud-platform"}, None),
        ({"scope": "https://www.googleapis.com/auth/userinfo.email"}, "invalid_grant"),
        ({"aud": "https://example.com/token"}, "invalid_grant"),
        ({"exp": int(time.time()) + 7200}, "invalid_grant"),
        ({"exp": int(time.time()) - 600, "iat": int(time.time()) - 4000}, "invalid_grant"),
        ({"iss": "someone@else.iam.gserviceaccount.com"}, "invalid_grant"),
    ],
)
async def test_token_endpoint(sims: Simulators, claims: dict[str, Any], error: str | None) -> None:
    sa = sims.fcm.create_service_account(project_id="oauth-project")
    form = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer"}
    form["assertion"] = assertion(sa, **claims)
    async with httpx.AsyncClient() as client:
        response = await client.post(sa["token_uri"], data=form)
    if error is None:
        assert response.status_code == 200
        body = response.json()
        assert body["expires_in"] == 3599
        assert body["token_type"] == "Bearer"
        assert body["access_token"]
    else:
        assert response.status_code == 400
        assert response.json()["error"] == error
        assert response.json()["error_description"]


async def test_token_endpoint_rejects_other_grants_and_keys(sims: Simulators) -> None:
    sa = sims.fcm.create_service_account(project_id="oauth-project")
    other = sims.fcm.create_service_account(project_id="oauth-project")
    async with httpx.AsyncClient() as client:
        wrong_grant = await client.post(
            sa["token_uri"], data={"grant_type": "password", "assertion": assertion(sa)}
        )
        forged = jwt.encode(
            jwt.decode(assertion(sa), options={"verify_signature": False}),
            other["private_key"],
            algorithm="RS256",
            headers={"kid": sa["private_key_id"]},
        )
        bad_signature = await client.post(
            sa["token_uri"],
            data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": forged},
        )
    assert (wrong_grant.status_code, wrong_grant.json()["error"]) == (400, "unsupported_grant_type")
    assert (bad_signature.status_code, bad_signature.json()["error"]) == (400, "invalid_grant")


def test_service_account_is_complete(sims: Simulators) -> None:
    sa = sims.fcm.create_service_account(project_id="complete")
    assert sa["type"] == "service_account"
    assert sa["project_id"] == "complete"
    assert sa["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert sa["client_email"].endswith("@complete.iam.gserviceaccount.com")
    assert sa["token_uri"] == f"{sims.control_url}/token"
    for field in ("private_key_id", "client_id", "auth_uri", "auth_provider_x509_cert_url"):
        assert sa[field]


async def test_unknown_project_and_another_projects_token(
    sims: Simulators, fcm_app: AppFactory
) -> None:
    app = fcm_app("project-a", fresh=True)
    fcm_app("project-b")
    service = messaging._get_messaging_service(app)
    service._fcm_url = service._fcm_url.replace("project-a", "no-such-project")
    unknown = await send_one(app, push())
    assert isinstance(unknown.exception, exceptions.NotFoundError)
    assert not isinstance(unknown.exception, messaging.UnregisteredError)
    assert error_json(unknown) == {
        "error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}
    }
    service._fcm_url = service._fcm_url.replace("no-such-project", "project-b")
    denied = await send_one(app, push())
    assert isinstance(denied.exception, exceptions.PermissionDeniedError)
    assert error_json(denied)["error"]["status"] == "PERMISSION_DENIED"


async def test_missing_and_unknown_access_tokens(sims: Simulators, fcm_app: AppFactory) -> None:
    fcm_app()
    url = f"{sims.fcm_endpoint}/v1/projects/demo-project/messages:send"
    body = {"message": {"fid": FCM_TOKEN, "data": {"a": "b"}}}
    ctx = ssl.create_default_context(cafile=str(sims.ca_file))
    async with httpx.AsyncClient(http2=True, verify=ctx) as client:
        missing = await client.post(url, json=body)
        unknown = await client.post(url, json=body, headers={"authorization": "Bearer nope"})
    for response in (missing, unknown):
        assert response.http_version == "HTTP/2"
        assert response.status_code == 401
        assert response.json()["error"]["status"] == "UNAUTHENTICATED"
    assert "missing required authentication" in missing.json()["error"]["message"]


# -- every errorCode ----------------------------------------------------------------------------

ERROR_CODES: list[tuple[str, int, str, str, type[Exception]]] = [
    (
        "UNREGISTERED",
        404,
        "NOT_FOUND",
        "Requested entity was not found.",
        messaging.UnregisteredError,
    ),
    (
        "SENDER_ID_MISMATCH",
        403,
        "PERMISSION_DENIED",
        "SenderId mismatch",
        messaging.SenderIdMismatchError,
    ),
    (
        "QUOTA_EXCEEDED",
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for quota metric 'Send requests' and limit 'Send requests per minute' "
        "of service 'fcm.googleapis.com'.",
        messaging.QuotaExceededError,
    ),
    (
        "UNAVAILABLE",
        503,
        "UNAVAILABLE",
        "The service is currently unavailable.",
        exceptions.UnavailableError,
    ),
    ("INTERNAL", 500, "INTERNAL", "Internal error encountered.", exceptions.InternalError),
    (
        "THIRD_PARTY_AUTH_ERROR",
        401,
        "UNAUTHENTICATED",
        "Auth error from APNS or Web Push Service",
        messaging.ThirdPartyAuthError,
    ),
    (
        "INVALID_ARGUMENT",
        400,
        "INVALID_ARGUMENT",
        "Request contains an invalid argument.",
        exceptions.InvalidArgumentError,
    ),
]


@pytest.mark.parametrize(
    ("error_code", "code", "status", "message", "exc_type"),
    ERROR_CODES,
    ids=[row[0] for row in ERROR_CODES],
)
async def test_each_error_code_has_googles_exact_shape(
    sims: Simulators,
    fcm_app: AppFactory,
    error_code: str,
    code: int,
    status: str,
    message: str,
    exc_type: type[Exception],
) -> None:
    # firebase-admin refreshes its credential and retries twice on any 401.
    answers = [Answer(error_code=error_code)] * (3 if code == 401 else 1)
    sims.fcm.set_scenario(Scenario(scripted={FAILING: answers}))
    response = await send_one(fcm_app(), push(FAILING))
    assert type(response.exception) is exc_type
    assert http_response(response).status_code == code
    assert error_json(response) == {
        "error": {
            "code": code,
            "message": message,
            "status": status,
            "details": [{"@type": FCM_ERROR, "errorCode": error_code}],
        }
    }
    retry_after = http_response(response).headers.get("retry-after")
    assert retry_after == ("60" if error_code == "QUOTA_EXCEEDED" else None)
    assert sims.fcm.records(token=FAILING)[-1].reason == error_code


async def test_unregistered_and_sender_mismatch_from_the_registry(
    sims: Simulators, fcm_app: AppFactory
) -> None:
    sims.fcm.set_scenario(Scenario(token_projects={FOREIGN: "someone-else"}))
    sims.fcm.mark_unregistered([GONE])
    app = fcm_app()
    assert isinstance((await send_one(app, push(GONE))).exception, messaging.UnregisteredError)
    mismatch = await send_one(app, push(FOREIGN))
    assert isinstance(mismatch.exception, messaging.SenderIdMismatchError)


# -- invalid arguments --------------------------------------------------------------------------


MALFORMED_TOKENS = [
    " ",
    "abc",
    "has space" + "x" * 40,
    "x" * 4097,
    "tab\there" + "x" * 40,
    "prefix:short",
    "two:colons:" + "x" * 40,
    "dots.are.not.base64url" + "x" * 40,
    "é" * 40,
    ":" + "x" * 40,
]


@pytest.mark.parametrize("token", MALFORMED_TOKENS)
async def test_malformed_registration_token_names_message_token(
    sims: Simulators, fcm_app: AppFactory, token: str
) -> None:
    response = await send_one(fcm_app(), messaging.Message(token=token, data={"a": "b"}))
    assert isinstance(response.exception, exceptions.InvalidArgumentError)
    body = error_json(response)["error"]
    assert body["message"] == "The registration token is not a valid FCM registration token"
    assert body["details"][0] == {"@type": FCM_ERROR, "errorCode": "INVALID_ARGUMENT"}
    assert body["details"][1]["@type"] == BAD_REQUEST
    assert body["details"][1]["fieldViolations"][0]["field"] == "message.token"


WELL_FORMED_TOKENS = [
    pytest.param("c" + "A" * 21 + ":APA91b" + "x_-9" * 34, id="installation id prefix"),
    pytest.param("APA91b" + "x" * 146, id="legacy"),
    pytest.param(fcm_token("tests"), id="tests"),
    pytest.param("x" * 32, id="shortest"),
]


@pytest.mark.parametrize("token", WELL_FORMED_TOKENS)
async def test_well_formed_registration_tokens_are_accepted(
    sims: Simulators, fcm_app: AppFactory, token: str
) -> None:
    response = await post_raw(sims, fcm_app(), {"message": {"token": token, "data": {"a": "b"}}})
    assert response.status_code == 200
    assert [r.token for r in sims.fcm.accepted()] == [token]


async def test_the_fid_target_also_takes_an_installation_id(
    sims: Simulators, fcm_app: AppFactory
) -> None:
    fid = "c" + "Ab_-" * 5 + "x"
    app = fcm_app()
    assert (await post_raw(sims, app, {"message": {"fid": fid}})).status_code == 200
    # not as a registration token: those are longer
    refused = await post_raw(sims, app, {"message": {"token": fid}})
    assert refused.status_code == 400


async def post_raw(sims: Simulators, app: App, body: dict[str, Any]) -> httpx.Response:
    """POST a hand-built body with the app's own access token."""
    access_token = app.credential.get_access_token().access_token
    project = app.project_id
    ctx = ssl.create_default_context(cafile=str(sims.ca_file))
    async with httpx.AsyncClient(http2=True, verify=ctx) as client:
        return await client.post(
            f"{sims.fcm_endpoint}/v1/projects/{project}/messages:send",
            content=json.dumps(body),
            headers={"authorization": f"Bearer {access_token}"},
        )


LONG = "x" * 4100
INVALID_MESSAGES: list[tuple[str, dict[str, Any], str]] = [
    ("no target", {"data": {"a": "b"}}, "message"),
    ("two targets", {"token": "a", "topic": "b"}, "message"),
    ("empty token", {"token": ""}, "message.token"),
    ("bad topic", {"topic": "no spaces please"}, "message.topic"),
    ("data not string", {"token": FCM_TOKEN, "data": {"n": 1}}, "message.data[0].value"),
    ("reserved from", {"token": FCM_TOKEN, "data": {"from": "x"}}, "message.data"),
    ("reserved google", {"token": FCM_TOKEN, "data": {"google.sent": "x"}}, "message.data"),
    ("reserved gcm", {"token": FCM_TOKEN, "data": {"gcm.n": "x"}}, "message.data"),
    ("ttl format", {"token": FCM_TOKEN, "android": {"ttl": "1h"}}, "message.android.ttl"),
    ("ttl too long", {"token": FCM_TOKEN, "android": {"ttl": "2419201s"}}, "message.android.ttl"),
    (
        "priority",
        {"token": FCM_TOKEN, "android": {"priority": "urgent"}},
        "message.android.priority",
    ),
    ("too big", {"token": FCM_TOKEN, "data": {"blob": LONG}}, "message"),
    ("unknown field", {"token": FCM_TOKEN, "bogus": 1}, "message"),
]


@pytest.mark.parametrize(
    ("message", "field"), [pytest.param(m, f, id=name) for name, m, f in INVALID_MESSAGES]
)
async def test_invalid_payload_names_the_field(
    sims: Simulators, fcm_app: AppFactory, message: dict[str, Any], field: str
) -> None:
    response = await post_raw(sims, fcm_app(), {"message": message})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    violations = next(d for d in error["details"] if d["@type"] == BAD_REQUEST)["fieldViolations"]
    assert violations[0]["field"] == field


@pytest.mark.parametrize(
    "android", [{"ttl": "0s"}, {"ttl": "2419200s"}, {"ttl": "3.5s"}, {"priority": "NORMAL"}]
)
async def test_valid_android_options(
    sims: Simulators, fcm_app: AppFactory, android: dict[str, Any]
) -> None:
    response = await post_raw(
        sims, fcm_app(), {"message": {"token": FCM_TOKEN, "android": android}}
    )
    assert response.status_code == 200


async def test_bad_json_and_unknown_top_level_field(sims: Simulators, fcm_app: AppFactory) -> None:
    app = fcm_app()
    unknown = await post_raw(sims, app, {"message": {"token": FCM_TOKEN}, "dry": True})
    assert unknown.status_code == 400
    assert 'Unknown name "dry"' in unknown.json()["error"]["message"]
