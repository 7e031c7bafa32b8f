"""The APNs simulator answers as Apple does, seen through aioapns and a bare HTTP/2 client."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from aioapns import NotificationRequest, PushType

from tests.sim.conftest import (
    TOKEN,
    TOPIC,
    ApnsKey,
    CertPoolFactory,
    FixedProviderToken,
    KeyFactory,
    PoolFactory,
    RawConnect,
)
from tidings.sim import Scenario, Simulators

ALERT = {"aps": {"alert": "hello"}}


def alert(
    token: str = TOKEN, tracking_id: str | None = None, **options: Any
) -> NotificationRequest:
    message = {**ALERT, "trackingId": tracking_id} if tracking_id else dict(ALERT)
    options.setdefault("push_type", PushType.ALERT)
    return NotificationRequest(device_token=token, message=message, **options)


async def wait_until(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    """Poll state that belongs to a client library (no event to wait on)."""

    async def poll() -> None:
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), within_s)


async def test_accepts_a_push_and_records_it(
    sims: Simulators, apns_key: KeyFactory, apns_pool: PoolFactory
) -> None:
    pool = apns_pool(apns_key())
    notification_id = str(uuid.uuid4())
    result = await pool.send_notification(
        alert(tracking_id="track-1", collapse_key="track-1", notification_id=notification_id)
    )
    assert result.is_successful
    assert result.notification_id == notification_id
    [record] = sims.apns.records(tracking_id="track-1")
    assert record.status == 200
    assert record.reason is None
    assert record.token == TOKEN
    assert record.collapse_id == "track-1"
    assert record.environment == "production"
    assert record.message_id == notification_id
    assert record.payload == {**ALERT, "trackingId": "track-1"}
    assert record.headers["apns-topic"] == TOPIC
    assert record.headers["apns-push-type"] == "alert"
    assert "authorization" not in record.headers
    assert sims.apns.accepted(token=TOKEN) == [record]


async def test_tracking_id_falls_back_to_the_collapse_id(
    sims: Simulators, apns_key: KeyFactory, apns_pool: PoolFactory
) -> None:
    pool = apns_pool(apns_key())
    assert (await pool.send_notification(alert(collapse_key="collapse-only"))).is_successful
    assert [r.collapse_id for r in sims.apns.records(tracking_id="collapse-only")] == [
        "collapse-only"
    ]


async def test_sandbox_connection_is_recorded_as_sandbox(
    sims: Simulators, apns_key: KeyFactory, apns_pool: PoolFactory
) -> None:
    pool = apns_pool(apns_key(), sandbox=True)
    assert (await pool.send_notification(alert(tracking_id="sb"))).is_successful
    assert sims.apns.records(tracking_id="sb")[0].environment == "sandbox"


async def test_sandbox_answer_carries_apns_unique_id(
    sims: Simulators, apns_key: KeyFactory, raw_apns: RawConnect
) -> None:
    key = apns_key()
    client = await raw_apns(server_name="api.development.push.apple.com")
    response = await client.request(request_headers(key), json.dumps(ALERT).encode())
    assert response.status == 200
    assert uuid.UUID(response.headers["apns-unique-id"])
    production = await raw_apns()
    response = await production.request(request_headers(key), json.dumps(ALERT).encode())
    assert "apns-unique-id" not in response.headers


@pytest.mark.parametrize(
    ("environment", "sandbox", "accepted"),
    [("sandbox", False, False), ("sandbox", True, True), ("production", True, False)],
)
async def test_token_sent_to_the_other_environment_is_a_bad_device_token(
    sims: Simulators,
    apns_key: KeyFactory,
    apns_pool: PoolFactory,
    environment: str,
    sandbox: bool,
    accepted: bool,
) -> None:
    sims.apns.set_scenario(Scenario(environments={TOKEN: environment}))
    result = await apns_pool(apns_key(), sandbox=sandbox).send_notification(alert())
    assert result.is_successful is accepted
    if not accepted:
        assert (result.status, result.description) == ("400", "BadDeviceToken")


async def test_unregistered_token_answers_410_with_its_timestamp(
    sims: Simulators, apns_key: KeyFactory, apns_pool: PoolFactory
) -> None:
    sims.apns.mark_unregistered([TOKEN], at_ms=1_700_000_000_123)
    result = await apns_pool(apns_key()).send_notification(alert())
    assert (result.status, result.description, result.timestamp) == (
        "410",
        "Unregistered",
        1_700_000_000_123,
    )
    assert sims.apns.records(token=TOKEN)[0].reason == "Unregistered"
    assert sims.apns.accepted(token=TOKEN) == []


async def test_displayed_keeps_one_push_per_collapse_id(
    sims: Simulators, apns_key: KeyFactory, apns_pool: PoolFactory
) -> None:
    pool = apns_pool(apns_key())
    for collapse_id, text in [("a", "first"), ("b", "other"), ("a", "second"), (None, "loose")]:
        request = NotificationRequest(
            device_token=TOKEN, message={"aps": {"alert": text}}, collapse_key=collapse_id
        )
        assert (await pool.send_notification(request)).is_successful
    shown = [r.payload["aps"]["alert"] for r in sims.apns.displayed(TOKEN)]  # type: ignore[index]
    assert shown == ["other", "second", "loose"]


# -- every reason from a bad request -----------------------------------------------------------


def request_headers(key: ApnsKey, **overrides: str | None) -> list[tuple[str, str]]:
    headers: dict[str, str | None] = {
        ":method": "POST",
        ":scheme": "https",
        ":path": f"/3/device/{TOKEN}",
        ":authority": "api.push.apple.com",
        "authorization": f"bearer {key.jwt()}",
        "apns-topic": TOPIC,
        "apns-push-type": "alert",
    }
    headers.update(overrides)
    return [(k, v) for k, v in headers.items() if v is not None]


def big_alert(size: int) -> bytes:
    body = json.dumps({"aps": {"alert": ""}}).encode()
    return json.dumps({"aps": {"alert": "x" * (size - len(body))}}).encode()


BAD_REQUESTS: list[tuple[str, dict[str, str | None], bytes | None, int, str | None]] = [
    ("method", {":method": "GET"}, None, 405, "MethodNotAllowed"),
    ("path", {":path": "/2/device/" + TOKEN}, None, 404, "BadPath"),
    ("no token", {":path": "/3/device/"}, None, 400, "MissingDeviceToken"),
    ("not hex", {":path": "/3/device/" + "zz" * 32}, None, 400, "BadDeviceToken"),
    ("odd length", {":path": "/3/device/" + "a" * 65}, None, 400, "BadDeviceToken"),
    ("too short", {":path": "/3/device/" + "ab" * 16}, None, 400, "BadDeviceToken"),
    ("too long", {":path": "/3/device/" + "ab" * 101}, None, 400, "BadDeviceToken"),
    ("long token ok", {":path": "/3/device/" + "ab" * 100}, None, 200, None),
    ("no jwt", {"authorization": None}, None, 403, "MissingProviderToken"),
    ("garbage jwt", {"authorization": "bearer not.a.jwt"}, None, 403, "InvalidProviderToken"),
    ("no topic", {"apns-topic": None}, None, 400, "MissingTopic"),
    ("bad topic", {"apns-topic": "com example"}, None, 400, "BadTopic"),
    ("other topic", {"apns-topic": "com.other.app"}, None, 400, "TopicDisallowed"),
    ("push type", {"apns-push-type": "banner"}, None, 400, "InvalidPushType"),
    ("alert without alert", {}, b'{"aps": {"badge": 1}}', 400, "InvalidPushType"),
    (
        "background without content-available",
        {"apns-push-type": "background", "apns-priority": "5"},
        b'{"aps": {}}',
        400,
        "InvalidPushType",
    ),
    (
        "background at priority 10",
        {"apns-push-type": "background"},
        b'{"aps": {"content-available": 1}}',
        400,
        "BadPriority",
    ),
    (
        "background at priority 5",
        {"apns-push-type": "background", "apns-priority": "5"},
        b'{"aps": {"content-available": 1}}',
        200,
        None,
    ),
    ("priority", {"apns-priority": "7"}, None, 400, "BadPriority"),
    ("expiration", {"apns-expiration": "tomorrow"}, None, 400, "BadExpirationDate"),
    ("collapse id", {"apns-collapse-id": "c" * 65}, None, 400, "BadCollapseId"),
    ("collapse id bytes", {"apns-collapse-id": "é" * 33}, None, 400, "BadCollapseId"),
    ("collapse id 64", {"apns-collapse-id": "c" * 64}, None, 200, None),
    ("message id", {"apns-id": "not-a-uuid"}, None, 400, "BadMessageId"),
    ("message id upper", {"apns-id": str(uuid.uuid4()).upper()}, None, 400, "BadMessageId"),
    ("too large", {}, big_alert(4097), 413, "PayloadTooLarge"),
    ("largest", {}, big_alert(4096), 200, None),
    ("voip", {"apns-push-type": "voip", "apns-topic": TOPIC + ".voip"}, big_alert(5120), 200, None),
    (
        "voip too large",
        {"apns-push-type": "voip", "apns-topic": TOPIC + ".voip"},
        big_alert(5121),
        413,
        "PayloadTooLarge",
    ),
    ("empty", {}, b"", 400, "PayloadEmpty"),
    ("no aps", {}, b"{}", 400, "PayloadEmpty"),
    ("not json", {}, b"hello", 400, "PayloadEmpty"),
]


@pytest.mark.parametrize(
    ("overrides", "body", "status", "reason"),
    [pytest.param(o, b, s, r, id=name) for name, o, b, s, r in BAD_REQUESTS],
)
async def test_each_bad_request_gets_its_reason(
    sims: Simulators,
    apns_key: KeyFactory,
    raw_apns: RawConnect,
    overrides: dict[str, str | None],
    body: bytes | None,
    status: int,
    reason: str | None,
) -> None:
    client = await raw_apns()
    response = await client.request(
        request_headers(apns_key(), **overrides),
        json.dumps(ALERT).encode() if body is None else body,
    )
    assert response.status == status
    sent_id = overrides.get("apns-id")
    assert (
        response.headers["apns-id"] == sent_id
        if sent_id
        else uuid.UUID(response.headers["apns-id"])
    )
    if reason is None:
        assert response.body == b""
    else:
        assert json.loads(response.body) == {"reason": reason}
        assert sims.apns.records()[0].reason == reason


async def test_duplicate_headers(apns_key: KeyFactory, raw_apns: RawConnect) -> None:
    client = await raw_apns()
    headers = [*request_headers(apns_key()), ("apns-topic", TOPIC)]
    response = await client.request(headers, json.dumps(ALERT).encode())
    assert (response.status, json.loads(response.body)) == (400, {"reason": "DuplicateHeaders"})


async def test_request_apns_id_is_echoed(apns_key: KeyFactory, raw_apns: RawConnect) -> None:
    client = await raw_apns()
    apns_id = str(uuid.uuid4())
    response = await client.request(
        request_headers(apns_key(), **{"apns-id": apns_id}), json.dumps(ALERT).encode()
    )
    assert response.headers["apns-id"] == apns_id


async def test_answers_respect_the_clients_flow_control_window(
    apns_key: KeyFactory, raw_apns: RawConnect
) -> None:
    """Bodies larger than the window the client granted arrive in pieces, as credit returns.

    (aioapns never returns credit: after ~64 KiB of error bodies on one connection, its
    connection fails. That is aioapns' bug, and Apple would expose it the same way.)
    """
    client = await raw_apns(initial_window=8)
    body = json.dumps(ALERT).encode()
    for _ in range(3):
        response = await client.request(request_headers(apns_key(), authorization=None), body)
        assert json.loads(response.body) == {"reason": "MissingProviderToken"}


AIOAPNS_BAD_REQUESTS: list[tuple[str, dict[str, Any], str, str]] = [
    ("bad token", {"device_token": "nothex"}, "400", "BadDeviceToken"),
    ("no token", {"device_token": ""}, "400", "MissingDeviceToken"),
    ("message id", {"notification_id": "not-a-uuid"}, "400", "BadMessageId"),
    ("priority", {"priority": 7}, "400", "BadPriority"),
    ("collapse id", {"collapse_key": "x" * 65}, "400", "BadCollapseId"),
    ("topic", {"apns_topic": "com.other.app"}, "400", "TopicDisallowed"),
    ("bad topic", {"apns_topic": "not a topic"}, "400", "BadTopic"),
    ("no alert", {"message": {"aps": {"badge": 2}}}, "400", "InvalidPushType"),
    (
        "background priority",
        {"message": {"aps": {"content-available": 1}}, "push_type": PushType.BACKGROUND},
        "400",
        "BadPriority",
    ),
    ("empty", {"message": {}}, "400", "PayloadEmpty"),
    ("large", {"message": {"aps": {"alert": "x" * 5000}}}, "413", "PayloadTooLarge"),
]


@pytest.mark.parametrize(
    ("changes", "status", "reason"),
    [pytest.param(c, s, r, id=name) for name, c, s, r in AIOAPNS_BAD_REQUESTS],
)
async def test_aioapns_sees_the_reason(
    apns_key: KeyFactory, apns_pool: PoolFactory, changes: dict[str, Any], status: str, reason: str
) -> None:
    fields: dict[str, Any] = {"device_token": TOKEN, "message": ALERT, "push_type": PushType.ALERT}
    fields.update(changes)
    result = await apns_pool(apns_key()).send_notification(NotificationRequest(**fields))
    assert (result.status, result.description) == (status, reason)


# -- provider tokens ----------------------------------------------------------------------------


async def test_expired_provider_token(apns_key: KeyFactory, apns_pool: PoolFactory) -> None:
    key = apns_key()
    pool = apns_pool(key, auth=FixedProviderToken(key, age_s=3700))
    result = await pool.send_notification(alert())
    assert (result.status, result.description) == ("403", "ExpiredProviderToken")


async def test_a_connection_that_changes_its_token_too_soon_gets_429(
    sims: Simulators, apns_key: KeyFactory, raw_apns: RawConnect
) -> None:
    key = apns_key()
    now = int(time.time())
    body = json.dumps(ALERT).encode()
    older, newer = key.jwt(iat=now - 600), key.jwt(iat=now)
    client = await raw_apns()
    assert (
        await client.request(request_headers(key, authorization=f"bearer {older}"), body)
    ).status == 200
    refused = await client.request(request_headers(key, authorization=f"bearer {newer}"), body)
    assert (refused.status, json.loads(refused.body)) == (
        429,
        {"reason": "TooManyProviderTokenUpdates"},
    )
    # The connection's token stays good; a new connection may present the newer one at once.
    assert (
        await client.request(request_headers(key, authorization=f"bearer {older}"), body)
    ).status == 200
    fresh = await raw_apns()
    assert (
        await fresh.request(request_headers(key, authorization=f"bearer {newer}"), body)
    ).status == 200
    # A scenario can turn the limit off.
    sims.apns.set_scenario(Scenario(token_update_min_interval_s=0))
    assert (
        await client.request(request_headers(key, authorization=f"bearer {newer}"), body)
    ).status == 200


async def test_a_token_update_after_the_interval_is_accepted(
    apns_key: KeyFactory, raw_apns: RawConnect
) -> None:
    key = apns_key()
    now = int(time.time())
    client = await raw_apns()
    for iat in (now - 1300, now):
        headers = request_headers(key, authorization=f"bearer {key.jwt(iat=iat)}")
        assert (await client.request(headers, json.dumps(ALERT).encode())).status == 200


async def test_workers_sharing_one_key_each_with_its_own_jwt_are_all_delivered(
    sims: Simulators, apns_key: KeyFactory, apns_pool: PoolFactory
) -> None:
    """Two processes holding one .p8 key mint their own JWTs minutes apart, each on its own
    connection: Apple takes both (its limit is on one connection changing its token)."""
    key = apns_key()
    first = apns_pool(key, auth=FixedProviderToken(key, age_s=600))
    second = apns_pool(key, auth=FixedProviderToken(key, age_s=0))
    for n in range(3):
        assert (await first.send_notification(alert(tracking_id=f"first-{n}"))).is_successful
        assert (await second.send_notification(alert(tracking_id=f"second-{n}"))).is_successful
    assert len({r.provider_token for r in sims.apns.accepted(token=TOKEN)}) == 2
    assert sims.apns.stats()["accepted"] == 6


@pytest.mark.parametrize(
    ("iat", "status"), [("integer", 200), ("numeric string", 200), ("words", 403)]
)
async def test_iat_may_be_a_numeric_string(
    apns_key: KeyFactory, raw_apns: RawConnect, iat: str, status: int
) -> None:
    """Some clients (kalyke-apns) send ``"iat": "1700000000"``; Apple accepts it."""
    key = apns_key()
    now = int(time.time())
    values: dict[str, int | str] = {"integer": now, "numeric string": str(now), "words": "soon"}
    value = values[iat]
    token = jwt.encode(
        {"iss": key.team_id, "iat": value},
        key.key_pem,
        algorithm="ES256",
        headers={"kid": key.key_id},
    )
    client = await raw_apns()
    response = await client.request(
        request_headers(key, authorization=f"bearer {token}"), json.dumps(ALERT).encode()
    )
    assert response.status == status
    if status == 403:
        assert json.loads(response.body) == {"reason": "InvalidProviderToken"}


@pytest.mark.parametrize("problem", ["unknown kid", "wrong team", "bad signature", "alg"])
async def test_invalid_provider_token(
    apns_key: KeyFactory, raw_apns: RawConnect, problem: str
) -> None:
    key, other = apns_key(), apns_key()
    token = {
        "unknown kid": lambda: key.jwt(kid="NOSUCHKEY0"),
        "wrong team": lambda: key.jwt(iss=other.team_id),
        "bad signature": lambda: other.jwt(kid=key.key_id, iss=key.team_id),
        "alg": lambda: key.jwt().replace(key.jwt().split(".")[0], "eyJhbGciOiJub25lIn0"),
    }[problem]()
    client = await raw_apns()
    response = await client.request(
        request_headers(key, authorization=f"bearer {token}"), json.dumps(ALERT).encode()
    )
    assert (response.status, json.loads(response.body)) == (
        403,
        {"reason": "InvalidProviderToken"},
    )


async def test_one_stream_until_a_valid_jwt_then_the_scenario_limit(
    sims: Simulators, apns_key: KeyFactory, apns_pool: PoolFactory, raw_apns: RawConnect
) -> None:
    key = apns_key()
    client = await raw_apns()
    await wait_until(lambda: client.max_streams_seen == [1])
    bad = await client.request(request_headers(key, authorization=None), json.dumps(ALERT).encode())
    assert bad.status == 403
    good = await client.request(request_headers(key), json.dumps(ALERT).encode())
    assert good.status == 200
    await wait_until(lambda: client.max_streams_seen == [1, 1000])

    pool = apns_pool(key)
    connection = await pool.acquire()
    await wait_until(lambda: connection.free_channels.bound == 1)
    assert (await pool.send_notification(alert())).is_successful
    await wait_until(lambda: connection.free_channels.bound == 1000)

    sims.apns.set_scenario(Scenario(max_concurrent_streams=50))
    limited = await raw_apns()
    await limited.request(request_headers(key), json.dumps(ALERT).encode())
    await wait_until(lambda: limited.max_streams_seen == [1, 50])


# -- certificate auth ---------------------------------------------------------------------------


async def test_certificate_auth(sims: Simulators, cert_pool: CertPoolFactory) -> None:
    pool = cert_pool([TOPIC])
    assert pool.apns_topic == TOPIC  # aioapns read the topic from the certificate's UID
    assert (await pool.send_notification(alert(tracking_id="by-cert"))).is_successful
    assert sims.apns.records(tracking_id="by-cert")[0].status == 200
    result = await pool.send_notification(alert(apns_topic="com.other.app"))
    assert (result.status, result.description) == ("400", "TopicDisallowed")


async def test_certificate_connection_gets_full_streams_and_default_topic(
    sims: Simulators, raw_apns: RawConnect
) -> None:
    cert = sims.apns.create_client_certificate(topics=[TOPIC])
    client = await raw_apns(cert=cert)
    await wait_until(lambda: client.max_streams_seen == [1000])
    headers = [
        (":method", "POST"),
        (":scheme", "https"),
        (":path", f"/3/device/{TOKEN}"),
        (":authority", "api.push.apple.com"),
    ]
    response = await client.request(headers, json.dumps(ALERT).encode())
    assert response.status == 200


async def test_multi_topic_certificate_needs_a_topic(
    sims: Simulators, raw_apns: RawConnect
) -> None:
    cert = sims.apns.create_client_certificate(topics=[TOPIC, "com.example.other"])
    client = await raw_apns(cert=cert)
    base = [(":method", "POST"), (":scheme", "https"), (":path", f"/3/device/{TOKEN}")]
    base.append((":authority", "api.push.apple.com"))
    missing = await client.request(base, json.dumps(ALERT).encode())
    assert json.loads(missing.body) == {"reason": "MissingTopic"}
    other = await client.request(
        [*base, ("apns-topic", "com.example.other")], json.dumps(ALERT).encode()
    )
    assert other.status == 200


async def test_token_registered_to_another_topic(
    sims: Simulators, apns_key: KeyFactory, apns_pool: PoolFactory
) -> None:
    sims.apns.set_scenario(Scenario(token_topics={TOKEN: "com.example.other"}))
    key = apns_key(topics=[TOPIC, "com.example.other"])
    result = await apns_pool(key).send_notification(alert())
    assert (result.status, result.description) == ("400", "DeviceTokenNotForTopic")
    other = await apns_pool(key, topic="com.example.other").send_notification(alert())
    assert other.is_successful
