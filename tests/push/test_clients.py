"""The senders on the real clients: what aioapns and firebase-admin are made to do (bounded
OAuth2 refresh, Retry-After, abandoned streams, GOAWAY reasons, requests in flight), and the
registry that keeps one client per app credential version."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import firebase_admin
import pytest
from pydantic import SecretStr

from tests.harness import BUNDLE_ID, unique_ids
from tidings.push.adapters import oauth_flow
from tidings.push.apns import ApnsSender
from tidings.push.credentials import ApnsTokenCredentials, AppCredentials, FcmCredentials
from tidings.push.fcm import FcmSender
from tidings.push.message import PushMessage
from tidings.push.outcome import Outcome
from tidings.push.registry import SenderRegistry
from tidings.push.sender import ProviderRoutes, SendItem
from tidings.sim import Answer, FixedLatency, Scenario, Simulators

MESSAGE = PushMessage(title="t", body="b")


@dataclass
class Keys:
    apns: ApnsTokenCredentials
    fcm: FcmCredentials
    project: str


def keys(sims: Simulators) -> Keys:
    team, key_id, project = unique_ids()
    apns = ApnsTokenCredentials(
        team_id=team,
        key_id=key_id,
        bundle_id=BUNDLE_ID,
        signing_key=SecretStr(sims.apns.create_signing_key(team, key_id, [BUNDLE_ID])),
    )
    account = json.dumps(sims.fcm.create_service_account(project))
    return Keys(apns, FcmCredentials(service_account=SecretStr(account)), project)


def routes(sims: Simulators) -> ProviderRoutes:
    return ProviderRoutes.from_strings(sims.apns_endpoint, sims.fcm_endpoint, sims.ca_file)


@pytest.fixture
async def senders(sims: Simulators) -> AsyncIterator[tuple[ApnsSender, FcmSender, Keys]]:
    found = keys(sims)
    apns = ApnsSender(found.apns, routes=routes(sims), max_in_flight=3, timeout_s=5.0)
    fcm = FcmSender(
        found.fcm,
        app_name=f"clients-{found.project}",
        routes=routes(sims),
        max_in_flight=3,
        timeout_s=5.0,
    )
    try:
        yield apns, fcm, found
    finally:
        await apns.close()
        await fcm.close()


def item(token: str, n: int = 0) -> SendItem:
    return SendItem(token, f"00000000-0000-0000-0000-{n:012d}", MESSAGE)


async def test_third_party_auth_error_is_one_request_and_no_token_refresh(
    sims: Simulators, senders: tuple[ApnsSender, FcmSender, Keys]
) -> None:
    """firebase-admin alone would refresh its OAuth2 token twice and send three times: a
    THIRD_PARTY_AUTH_ERROR is FCM failing to reach APNs, which no token of ours can fix."""
    _, fcm, _ = senders
    tokens = [f"tpa-{n}:APA91b" + "x" * 30 for n in range(20)]
    sims.fcm.set_scenario(
        Scenario(scripted={t: [Answer(error_code="THIRD_PARTY_AUTH_ERROR")] for t in tokens})
    )
    issued = sims.fcm.issuer.issued
    results = await fcm.send_batch([item(t, n) for n, t in enumerate(tokens)])
    assert {r.outcome for r in results} == {Outcome.CONFIG_FAULT}
    assert all(len(sims.fcm.records(token=t)) == 1 for t in tokens)
    assert oauth_flow(fcm.app).refreshes == 1  # the first access token, nothing more
    assert sims.fcm.issuer.issued == issued + 1


async def test_an_expired_access_token_is_refreshed_once_for_a_whole_batch(
    sims: Simulators, senders: tuple[ApnsSender, FcmSender, Keys]
) -> None:
    _, fcm, found = senders
    assert (await fcm.send(item("warm:APA91b" + "w" * 30))).outcome is Outcome.DELIVERED
    sims.fcm.expire_access_tokens(found.project)
    tokens = [f"exp-{n}:APA91b" + "x" * 30 for n in range(20)]
    results = await fcm.send_batch([item(t, n) for n, t in enumerate(tokens)])
    assert {r.outcome for r in results} == {Outcome.DELIVERED}
    # each request saw the expired token once, then went out again with the new one
    assert {len(sims.fcm.records(token=t)) for t in tokens} <= {1, 2}
    assert oauth_flow(fcm.app).refreshes == 2  # the first token, then one refresh


async def test_a_refused_service_account_is_a_configuration_fault(sims: Simulators) -> None:
    found = keys(sims)
    account = json.loads(found.fcm.service_account.get_secret_value())
    account["private_key"] = json.loads(keys(sims).fcm.service_account.get_secret_value())[
        "private_key"
    ]  # a key the token endpoint does not know for this account
    fcm = FcmSender(
        FcmCredentials(service_account=SecretStr(json.dumps(account))),
        app_name=f"refused-{found.project}",
        routes=routes(sims),
        max_in_flight=3,
        timeout_s=5.0,
    )
    try:
        results = await fcm.send_batch([item(f"r{n}:APA91b" + "r" * 30, n) for n in range(5)])
    finally:
        await fcm.close()
    assert {r.outcome for r in results} == {Outcome.CONFIG_FAULT}
    assert "service account refused" in (results[0].reason or "")
    assert sims.fcm.records() == []  # nothing reached FCM


async def test_apns_answers_keep_retry_after_and_raw_bodies_and_resend_goaway_refusals(
    sims: Simulators,
    senders: tuple[ApnsSender, FcmSender, Keys],
    caplog: pytest.LogCaptureFixture,
) -> None:
    apns, _, _ = senders
    busy, html, goaway = "a1" * 32, "a2" * 32, "a3" * 32
    sims.apns.set_scenario(
        Scenario(
            scripted={
                busy: [Answer(reason="ServiceUnavailable", retry_after_s=7)],
                html: [Answer(status=502, raw_body="<html>Bad Gateway</html>")],
                goaway: [Answer(action="goaway", reason="Shutdown")],
            }
        )
    )
    first = await apns.send(item(busy))
    assert (first.outcome, first.retry_after_s) == (Outcome.RETRY_LATER, 7)
    second = await apns.send(item(html))
    assert (second.outcome, second.known) == (Outcome.RETRY_LATER, False)
    assert "Bad Gateway" in (second.raw or "")
    # an answer outside the table is logged with its raw body, the token masked
    [logged] = [r for r in caplog.records if "outside the reference table" in r.getMessage()]
    assert logged.levelname == "WARNING"
    assert "<html>Bad Gateway</html>" in logged.getMessage()
    assert html not in logged.getMessage()
    # the GOAWAY's last-stream-id says the request was never processed: it is resent at once
    # on a new connection, and delivered once
    third = await apns.send(item(goaway))
    assert third.outcome is Outcome.DELIVERED
    assert [(r.status, r.reason) for r in sims.apns.records(token=goaway)] == [
        (0, "goaway-refused"),
        (200, None),
    ]
    assert (await apns.send(item(busy))).outcome is Outcome.DELIVERED


async def test_a_request_abandoned_on_timeout_gives_its_stream_back(sims: Simulators) -> None:
    """One connection allowed one stream (the server's limit): a hung request that kept its
    stream would block every later request."""
    found = keys(sims)
    apns = ApnsSender(
        found.apns, routes=routes(sims), max_in_flight=3, timeout_s=2.0, max_connections=1
    )
    hung = [f"{n:064x}" for n in range(1, 4)]
    sims.apns.set_scenario(
        Scenario(max_concurrent_streams=1, scripted={t: [Answer(action="hang")] for t in hung})
    )
    try:
        for n, token in enumerate(hung):
            result = await apns.send(item(token, n))
            # sent whole and never answered: an unknown outcome, not a refusal
            assert (result.outcome, result.reason) == (Outcome.ANSWER_LOST, "no answer in time")
            assert (await apns.send(item("ff" * 32, n))).outcome is Outcome.DELIVERED
    finally:
        await apns.close()


@pytest.mark.parametrize("provider", ["apns", "fcm"])
async def test_requests_in_flight_are_bounded(
    sims: Simulators, senders: tuple[ApnsSender, FcmSender, Keys], provider: str
) -> None:
    """max_in_flight=3 with every answer held 300 ms: the fourth request cannot arrive before
    the first is answered (a lower bound on the spacing; never an upper one)."""
    apns, fcm, _ = senders
    simulator = sims.apns if provider == "apns" else sims.fcm
    sender = apns if provider == "apns" else fcm
    tokens = [f"{n:064x}" if provider == "apns" else f"b{n}:APA91b" + "b" * 30 for n in range(12)]
    await sender.send(item(tokens[0]))  # connections and credentials ready
    sims.reset()
    simulator.set_scenario(Scenario(latency=FixedLatency(ms=300)))
    results = await sender.send_batch([item(t, n) for n, t in enumerate(tokens)])
    assert {r.outcome for r in results} == {Outcome.DELIVERED}
    arrivals = sorted(r.received_at for r in simulator.records())
    assert len(arrivals) == 12
    assert all(b - a >= 0.29 for a, b in zip(arrivals, arrivals[3:], strict=False))


async def test_one_client_per_app_credential_version(sims: Simulators) -> None:
    registry = SenderRegistry(routes(sims), max_in_flight=8, timeout_s=5.0)
    found = keys(sims)
    loads: list[int] = []

    def loader(version: int) -> object:
        async def load() -> AppCredentials:
            loads.append(version)
            return AppCredentials("reg", version, found.apns, found.fcm)

        return load

    try:
        first = await registry.get("reg", 1, loader(1))  # type: ignore[arg-type]
        again = await asyncio.gather(*(registry.get("reg", 1, loader(1)) for _ in range(5)))  # type: ignore[arg-type]
        assert all(s is first for s in again)
        assert loads == [1]  # credentials opened once, whatever the concurrency
        assert first.apns is not None
        assert first.fcm is not None
        for n in range(3):
            sent = await first.apns.send(item(f"{n + 1:064x}", n))
            assert sent.outcome is Outcome.DELIVERED
        old_app = first.fcm.app.name
        rotated = await registry.get("reg", 2, loader(2))  # type: ignore[arg-type]
        assert rotated is not first
        assert loads == [1, 2]
        with pytest.raises(ValueError, match="does not exist"):
            firebase_admin.get_app(old_app)  # the old client is closed
    finally:
        await registry.close()
    # one JWT for every request of the first client: one TLS + HTTP/2 connection, reused
    assert len({r.provider_token for r in sims.apns.records()}) == 1
