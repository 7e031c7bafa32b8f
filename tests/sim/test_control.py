"""The control API and SimulatorClient, against the in-process simulators."""

from __future__ import annotations

import ssl
import uuid

import firebase_admin
import httpx
from aioapns import NotificationRequest, PushType
from firebase_admin import credentials, messaging

from tests.sim.conftest import TOKEN, TOPIC, KeyFactory, fcm_token
from tidings.push.adapters import SharedProviderToken, TokenAuthPool, configure_fcm_app
from tidings.sim import Answer, Scenario, SimulatorClient, Simulators, TokenSummary


async def test_healthz_and_unknown_provider(sims: Simulators) -> None:
    async with SimulatorClient(sims.control_url) as client:
        assert await client.healthz()
    async with httpx.AsyncClient(base_url=sims.control_url) as http:
        assert (await http.get("/webpush/records")).status_code == 422


async def test_apns_through_the_control_api(sims: Simulators) -> None:
    async with SimulatorClient(sims.control_url) as client:
        key_pem = await client.create_apns_key("TEAMCTL001", "KEYCTL0001", [TOPIC])
        assert key_pem.startswith("-----BEGIN PRIVATE KEY-----")
        await client.set_scenario(
            "apns", Scenario(scripted={TOKEN: [Answer(reason="TooManyRequests")]})
        )
        assert (await client.get_scenario("apns")).scripted[TOKEN][0].reason == "TooManyRequests"
        await client.mark_unregistered("apns", ["ef" * 32], at_ms=42)

        host, port = sims.apns_endpoint.rsplit(":", 1)
        pool = TokenAuthPool(
            auth=SharedProviderToken(key_pem, "KEYCTL0001", "TEAMCTL001"),
            route=(host, int(port)),
            topic=TOPIC,
            max_connections=1,
            max_connection_attempts=1,
            use_sandbox=False,
            ssl_context=ssl.create_default_context(cafile=str(sims.ca_file)),
        )
        try:
            results = [
                await pool.send_notification(
                    NotificationRequest(
                        device_token=token,
                        message={"aps": {"alert": "hi"}, "trackingId": "ctl"},
                        collapse_key="ctl",
                        push_type=PushType.ALERT,
                    )
                )
                for token in (TOKEN, TOKEN, "ef" * 32)
            ]
        finally:
            pool.close()
        assert [(r.status, r.description) for r in results] == [
            ("429", "TooManyRequests"),
            ("200", None),
            ("410", "Unregistered"),
        ]
        records = await client.records("apns", tracking_id="ctl")
        assert [r.status for r in records] == [429, 200, 410]
        assert records[1].payload == {"aps": {"alert": "hi"}, "trackingId": "ctl"}
        assert [r.status for r in await client.accepted("apns", tracking_id="ctl")] == [200]
        assert [r.token for r in await client.records("apns", token=TOKEN)] == [TOKEN, TOKEN]
        assert len(await client.displayed("apns", TOKEN)) == 1
        stats = await client.stats()
        assert stats["apns"]["requests"] == 3
        assert stats["apns"]["by_reason"] == {"TooManyRequests": 1, "Unregistered": 1}
        await client.reset()
        assert await client.records("apns") == []
        assert (await client.get_scenario("apns")).scripted == {}


async def test_certificates_and_service_accounts_through_the_control_api(sims: Simulators) -> None:
    async with SimulatorClient(sims.control_url) as client:
        cert_pem, key_pem = await client.create_apns_client_certificate([TOPIC])
        assert "BEGIN CERTIFICATE" in cert_pem
        assert "PRIVATE KEY" in key_pem
        account = await client.create_fcm_service_account("ctl-project")
        app = firebase_admin.initialize_app(
            credentials.Certificate(account), name=f"ctl-{uuid.uuid4()}"
        )
        configure_fcm_app(
            app,
            endpoint=sims.fcm_endpoint,
            ssl_context=ssl.create_default_context(cafile=str(sims.ca_file)),
            max_connections=1,
            timeout_s=5,
        )
        try:
            t1, t2, t3 = fcm_token("t1"), fcm_token("t2"), fcm_token("t3")
            await client.set_scenario("fcm", {"scripted": {t2: [{"error_code": "UNAVAILABLE"}]}})
            result = await messaging.send_each_async(
                [messaging.Message(fid=t, data={"trackingId": "f"}) for t in (t1, t2)],
                app=app,
            )
            assert [r.success for r in result.responses] == [True, False]
            await client.expire_fcm_access_tokens("ctl-project")
            assert (
                await messaging.send_each_async([messaging.Message(fid=t3)], app=app)
            ).success_count == 1
        finally:
            await messaging._get_messaging_service(app)._async_client._async_client.aclose()
        records = await client.records("fcm", tracking_id="f")
        assert [(r.status, r.reason) for r in records] == [(200, None), (503, "UNAVAILABLE")]
        assert [r.status for r in await client.records("fcm", token=t3)] == [401, 200]


async def test_control_answers_never_carry_private_keys(
    sims: Simulators, apns_key: KeyFactory
) -> None:
    apns_key()
    sims.fcm.create_service_account(project_id="secret")
    async with httpx.AsyncClient(base_url=sims.control_url) as http:
        for path in ("/stats", "/apns/scenario", "/fcm/scenario", "/apns/records", "/fcm/records"):
            assert "PRIVATE KEY" not in (await http.get(path)).text


async def test_token_endpoint_is_served_while_the_simulators_loop_is_blocked(
    sims: Simulators,
) -> None:
    """google-auth fetches tokens synchronously from inside the event loop; it must not hang."""
    account = sims.fcm.create_service_account(project_id="blocking")
    app = firebase_admin.initialize_app(credentials.Certificate(account), name=f"b-{uuid.uuid4()}")
    token = app.credential.get_access_token()  # blocks this (the simulators') loop
    assert token.access_token.startswith("ya29.")


async def test_summary_counts_per_device_what_was_accepted_and_shown(
    sims: Simulators, apns_key: KeyFactory
) -> None:
    """One call answers "did every device get exactly one push per node": accepted pushes,
    distinct tracking ids and what the device shows, per token."""
    key = apns_key()
    once, twice, gone, failed = (f"{n:02x}" * 32 for n in (0xB1, 0xB2, 0xB3, 0xB4))
    sims.apns.mark_unregistered([gone])
    sims.apns.set_scenario(Scenario(scripted={failed: [Answer(reason="InternalServerError")]}))
    host, port = sims.apns_endpoint.rsplit(":", 1)
    pool = TokenAuthPool(
        auth=SharedProviderToken(key.key_pem, key.key_id, key.team_id),
        route=(host, int(port)),
        topic=TOPIC,
        max_connections=1,
        max_connection_attempts=1,
        use_sandbox=False,
        ssl_context=ssl.create_default_context(cafile=str(sims.ca_file)),
    )
    sends = [(once, "n1"), (twice, "n1"), (twice, "n1"), (twice, "n2"), (gone, "n1")]
    sends += [(failed, "n1"), (failed, "n1")]
    try:
        for token, node in sends:
            await pool.send_notification(
                NotificationRequest(
                    device_token=token,
                    message={"aps": {"alert": "hi"}, "trackingId": f"{node}-{token[:4]}"},
                    collapse_key=f"{node}-{token[:4]}",
                    push_type=PushType.ALERT,
                )
            )
    finally:
        pool.close()
    async with SimulatorClient(sims.control_url) as client:
        summary = await client.summary("apns")
    assert summary.tokens == {
        once: TokenSummary(requests=1, accepted=1, tracking_ids=1, displayed=1),
        twice: TokenSummary(requests=3, accepted=3, tracking_ids=2, displayed=2),
        gone: TokenSummary(requests=1, accepted=0, tracking_ids=0, displayed=0),
        failed: TokenSummary(requests=2, accepted=1, tracking_ids=1, displayed=1),
    }
    assert summary.tokens[twice].duplicates == 1
    assert summary.tokens == sims.apns.summary()
    assert summary.stats == sims.apns.stats()
    assert summary.stats["by_reason"] == {"InternalServerError": 1, "Unregistered": 1}
