"""tidings.push.adapters reaches inside aioapns and firebase-admin; these tests fail loudly
when an upgrade of either library moves what the adapters rely on."""

from __future__ import annotations

import asyncio
import inspect
import ssl
import uuid

import aioapns
import firebase_admin
import httpx
import jwt as pyjwt
import pytest
from aioapns.connection import (
    APNsCertConnectionPool,
    APNsKeyConnectionPool,
    AuthorizationHeaderProvider,
)
from firebase_admin import credentials, messaging

from tests.harness import BUNDLE_ID, unique_ids
from tidings.push import adapters
from tidings.push.adapters import (
    SharedProviderToken,
    StreamSlots,
    TokenAuthPool,
    close_fcm_app,
    configure_fcm_app,
    fcm_send_url,
)
from tidings.sim import Answer, Scenario, Simulators


def test_aioapns_still_has_what_the_pools_override() -> None:
    for pool in (APNsKeyConnectionPool, APNsCertConnectionPool):
        assert inspect.iscoroutinefunction(pool.create_connection)
        for attribute in (
            "protocol_class",
            "ssl_context",
            "apns_topic",
            "loop",
            "discard_connection",
        ):
            assert attribute in inspect.getsource(pool) or hasattr(pool, attribute), attribute
    assert hasattr(AuthorizationHeaderProvider, "get_header")
    protocol = APNsKeyConnectionPool.__init__.__code__.co_varnames
    assert "max_connection_attempts" in protocol
    assert "ssl_context" in protocol
    # StreamSlots replaces the protocol's semaphore and relies on its private counters
    settings_code = inspect.getsource(aioapns.connection.H2Protocol.on_remote_settings_changed)
    assert "self.free_channels.bound = setting.new_value" in settings_code
    slots = aioapns.connection.ChannelPool(3)
    assert (slots._bound_value, slots._value) == (3, 3)
    assert hasattr(slots, "_wake_up_next")
    assert aioapns.connection.APNsProductionClientProtocol.APNS_SERVER == "api.push.apple.com"


def test_firebase_admin_still_has_what_the_adapter_replaces() -> None:
    source = inspect.getsource(messaging._MessagingService)
    assert "self._fcm_url" in source
    assert "self._async_client" in source
    assert "_project_id" in source
    from firebase_admin import _http_client

    assert "self._async_client = httpx.AsyncClient(" in inspect.getsource(
        _http_client.HttpxAsyncClient
    )
    assert callable(_http_client.GoogleAuthCredentialFlow)
    # TokenRefreshFailed is an httpx error so that a failed OAuth2 refresh stays one message's
    # failure: firebase-admin turns httpx errors into per-message exceptions
    send_each = inspect.getsource(messaging._MessagingService.send_each_async)
    assert "except httpx.HTTPError" in send_each
    assert issubclass(adapters.TokenRefreshFailed, httpx.HTTPError)
    assert "_credential" in inspect.getsource(messaging._MessagingService.__init__)


def test_aioapns_protocol_still_has_what_the_protocol_fixes_use() -> None:
    """_ProtocolFixes reads aioapns' request maps, wraps its response and GOAWAY handlers,
    and send_once uses the pool's acquire."""
    source = inspect.getsource(aioapns.connection.APNsBaseClientProtocol)
    for name in ("self.requests", "self.request_streams", "self.request_statuses"):
        assert name in source, name
    for method in ("on_response_received", "on_connection_terminated", "connection_lost"):
        assert hasattr(aioapns.connection.APNsBaseClientProtocol, method), method
    assert inspect.iscoroutinefunction(APNsKeyConnectionPool.acquire)
    assert "request.set_exception" in inspect.getsource(
        aioapns.connection.APNsBaseClientProtocol.connection_lost
    )


async def test_one_jwt_is_shared_by_every_connection_and_renewed_once(sims: Simulators) -> None:
    team, key_id, _ = unique_ids()
    key = sims.apns.create_signing_key(team_id=team, key_id=key_id, topics=[BUNDLE_ID])
    auth = SharedProviderToken(key, key_id, team)
    pool = TokenAuthPool(
        auth=auth,
        route=tuple_of(sims.apns_endpoint),
        topic=BUNDLE_ID,
        max_connections=3,
        max_connection_attempts=1,
        ssl_context=ssl.create_default_context(cafile=str(sims.ca_file)),
    )
    try:
        requests = [
            aioapns.NotificationRequest(device_token=f"{n:064x}", message={"aps": {"alert": "hi"}})
            for n in range(30)
        ]
        answers = await asyncio.gather(*(pool.send_notification(r) for r in requests))
        assert {a.status for a in answers} == {"200"}
        assert auth.generation == 1
        assert auth.renew(seen_generation=1) is True
        assert auth.renew(seen_generation=1) is False  # a second rejected request mints nothing
        assert auth.generation == 2
    finally:
        pool.close()
    jwts = {r.provider_token for r in sims.apns.accepted()}
    assert len(jwts) == 1  # one JWT across all connections
    assert None not in jwts


async def test_fcm_sends_go_to_the_configured_endpoint_without_sdk_retries(
    sims: Simulators,
) -> None:
    _, _, project = unique_ids()
    account = sims.fcm.create_service_account(project_id=project)
    app = firebase_admin.initialize_app(credentials.Certificate(account), name=f"t-{uuid.uuid4()}")
    configure_fcm_app(
        app,
        endpoint=sims.fcm_endpoint,
        ssl_context=ssl.create_default_context(cafile=str(sims.ca_file)),
        max_connections=1,
        timeout_s=5,
    )
    assert fcm_send_url(app).startswith(sims.fcm_endpoint)
    token = "retry-me:APA91b" + "x" * 40
    sims.fcm.set_scenario(
        Scenario(
            scripted={
                token: [Answer(status=503, error_code="UNAVAILABLE", status_name="UNAVAILABLE")]
            }
        )
    )
    try:
        batch = await messaging.send_each_async(
            [messaging.Message(token=token, data={"trackingId": "t-1"})], app=app
        )
        assert not batch.responses[0].success
        # firebase-admin would retry a 503 four times by default; tidings leaves that to Temporal
        assert len(sims.fcm.records(token=token)) == 1
        again = await messaging.send_each_async(
            [messaging.Message(token=token, data={"trackingId": "t-2"})], app=app
        )
        assert again.responses[0].success
    finally:
        await close_fcm_app(app)
    with pytest.raises(ValueError, match="does not exist"):
        firebase_admin.get_app(app.name)


def tuple_of(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host, int(port)


def _iat(auth: SharedProviderToken) -> int:
    token = auth.get_header().removeprefix("bearer ")
    return int(pyjwt.decode(token, options={"verify_signature": False})["iat"])


def test_every_process_mints_the_same_iat_and_never_updates_within_20_minutes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    clock = [1_700_000_000.0]
    monkeypatch.setattr("tidings.push.adapters.time.time", lambda: clock[0])
    first, second = (
        SharedProviderToken(key, "KEY1234567", "TEAM123456"),
        SharedProviderToken(key, "KEY1234567", "TEAM123456"),
    )
    assert _iat(first) == _iat(second) <= clock[0]
    assert clock[0] - _iat(first) < adapters.APNS_JWT_LIFETIME_S
    # an ExpiredProviderToken forces a token dated now...
    clock[0] += 600
    assert first.renew(first.generation)
    renewed = _iat(first)
    assert renewed == int(clock[0])
    # ...and the next regular refresh comes at least 20 minutes after it, before 60 minutes
    for _ in range(12):
        previous = _iat(first)
        clock[0] += 300
        current = _iat(first)
        assert current == previous or current - previous >= adapters.APNS_JWT_MIN_REFRESH_S
        assert clock[0] - current < 3600


async def test_stream_slots_follow_the_servers_limit_both_ways() -> None:
    slots = StreamSlots(1)
    await slots.acquire()  # one stream in flight
    waiters = [asyncio.create_task(slots.acquire()) for _ in range(5)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    slots.bound = 1000  # the server raised its limit: every waiter may go
    await asyncio.wait_for(asyncio.gather(*waiters), 1)
    assert slots.bound - slots._value == 6
    slots.bound = 1  # lowered below the streams in flight: no new stream until they end
    assert slots.is_busy
    for _ in range(6):
        slots.release()
    assert not slots.is_busy


def _token_pool(sims: Simulators, max_connections: int = 1) -> TokenAuthPool:
    team, key_id, _ = unique_ids()
    key = sims.apns.create_signing_key(team_id=team, key_id=key_id, topics=[BUNDLE_ID])
    return TokenAuthPool(
        auth=SharedProviderToken(key, key_id, team),
        route=tuple_of(sims.apns_endpoint),
        topic=BUNDLE_ID,
        max_connections=max_connections,
        max_connection_attempts=1,
        ssl_context=ssl.create_default_context(cafile=str(sims.ca_file)),
    )


async def test_error_bodies_never_exhaust_the_connection_window(sims: Simulators) -> None:
    """2,000 answers of 410 on one connection: more than the 64 KiB HTTP/2 window aioapns
    alone would never give back."""
    tokens = [f"{n:064x}" for n in range(2000)]
    sims.apns.mark_unregistered(tokens)
    pool = _token_pool(sims)
    try:
        answers = await asyncio.wait_for(
            asyncio.gather(
                *(
                    pool.send_notification(
                        aioapns.NotificationRequest(device_token=t, message={"aps": {"alert": "x"}})
                    )
                    for t in tokens
                )
            ),
            60,
        )
    finally:
        pool.close()
    assert {(a.status, a.description) for a in answers} == {("410", "Unregistered")}
    assert all(a.timestamp for a in answers)


async def test_empty_and_unreadable_error_bodies_resolve_as_unknown(sims: Simulators) -> None:
    html, empty = "ab" * 32, "cd" * 32
    sims.apns.set_scenario(
        Scenario(
            scripted={
                html: [
                    Answer(
                        status=502, raw_body="<html>Bad Gateway</html>", content_type="text/html"
                    )
                ],
                empty: [Answer(status=500, raw_body="")],
            }
        )
    )
    pool = _token_pool(sims)
    try:
        answers = await asyncio.wait_for(
            asyncio.gather(
                *(
                    pool.send_notification(
                        aioapns.NotificationRequest(device_token=t, message={"aps": {"alert": "x"}})
                    )
                    for t in (html, empty)
                )
            ),
            10,
        )
    finally:
        pool.close()
    assert [(a.status, a.description) for a in answers] == [
        ("502", adapters.UNREADABLE_BODY_REASON),
        ("500", adapters.EMPTY_BODY_REASON),
    ]
