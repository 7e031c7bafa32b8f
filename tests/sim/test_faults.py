"""Connection faults, each separate and faithful: a request is processed when its answer is
written, and a fault that keeps an answer from being written leaves it unprocessed.

Stream order on one connection is arranged with per-token latencies (a later answer is never
asserted to take any particular time; only which answers exist)."""

from __future__ import annotations

import asyncio
import json

import pytest
from aioapns import NotificationRequest, PushType
from firebase_admin import exceptions

from tests.sim.conftest import ApnsKey, AppFactory, KeyFactory, PoolFactory, RawConnect, fcm_token
from tests.sim.h2client import NotProcessed, RawResponse, StreamRefused
from tests.sim.test_apns import ALERT, request_headers, wait_until
from tests.sim.test_fcm import send_one, to_device
from tidings.sim import Answer, Scenario, Simulators

# Streams opened in this order on one connection: 1, 3, 5.
FIRST, SECOND, THIRD = (f"{n:02x}" * 32 for n in (0xA1, 0xA2, 0xA3))
REFUSED_STREAM = 7
SLOW_MS = 1500  # long enough for the other streams of a test to arrive meanwhile


def push_to(key: ApnsKey, token: str, collapse_id: str | None = None) -> list[tuple[str, str]]:
    extra = {"apns-collapse-id": collapse_id} if collapse_id else {}
    return request_headers(key, **{":path": f"/3/device/{token}"}, **extra)


def body(tracking_id: str) -> bytes:
    return json.dumps({**ALERT, "trackingId": tracking_id}).encode()


async def outcome(future: asyncio.Future[RawResponse]) -> object:
    """The answer's status, or the type of error the client saw instead."""
    try:
        return (await asyncio.wait_for(future, 10)).status
    except Exception as error:  # the type is what the test compares
        return type(error)


def fates(sims: Simulators) -> dict[str | None, tuple[int, str | None]]:
    return {r.tracking_id: (r.status, r.reason) for r in sims.apns.records()}


async def test_a_request_is_processed_when_its_answer_is_written(
    sims: Simulators, apns_key: KeyFactory, raw_apns: RawConnect
) -> None:
    sims.apns.set_scenario(Scenario(scripted={FIRST: [Answer(latency_ms=SLOW_MS)]}))
    key = apns_key()
    client = await raw_apns()
    _, answer = client.send(push_to(key, FIRST), body(FIRST))
    await wait_until(lambda: sims.apns.in_flight == 1)
    assert sims.apns.records() == []  # received, not processed yet
    assert sims.apns.stats()["in_flight"] == 1
    assert (await answer).status == 200
    assert fates(sims) == {FIRST: (200, None)}
    assert sims.apns.in_flight == 0


async def test_a_reset_forgets_requests_still_in_flight(
    sims: Simulators, apns_key: KeyFactory, raw_apns: RawConnect
) -> None:
    sims.apns.set_scenario(Scenario(scripted={FIRST: [Answer(latency_ms=SLOW_MS)]}))
    key = apns_key()
    client = await raw_apns()
    _, answer = client.send(push_to(key, FIRST), body(FIRST))
    await wait_until(lambda: sims.apns.in_flight == 1)
    sims.reset()  # the next test starts: what the last one left in flight is not its record
    assert (await answer).status == 200
    assert (await client.request(push_to(key, SECOND), body(SECOND))).status == 200
    assert fates(sims) == {SECOND: (200, None)}
    assert sims.apns.in_flight == 0


async def test_goaway_answers_the_streams_below_it_and_processes_nothing_above(
    sims: Simulators, apns_key: KeyFactory, raw_apns: RawConnect
) -> None:
    sims.apns.set_scenario(
        Scenario(
            scripted={
                FIRST: [Answer(latency_ms=SLOW_MS)],
                SECOND: [Answer(action="goaway", reason="Shutdown", latency_ms=200)],
                THIRD: [Answer(latency_ms=SLOW_MS)],
            }
        )
    )
    key = apns_key()
    client = await raw_apns()
    sent = [client.send(push_to(key, t), body(t)) for t in (FIRST, SECOND, THIRD)]
    assert [stream_id for stream_id, _ in sent] == [1, 3, 5]
    results = [await outcome(future) for _, future in sent]
    assert results == [200, NotProcessed, NotProcessed]
    assert client.goaway is not None
    assert (client.goaway.error_code, client.goaway.last_stream_id) == (0, 1)
    assert json.loads(client.goaway.additional_data or b"") == {"reason": "Shutdown"}
    await asyncio.wait_for(client.closed.wait(), 10)  # closed once stream 1 was answered
    assert fates(sims) == {
        FIRST: (200, None),
        SECOND: (0, "goaway-refused"),
        THIRD: (0, "goaway-refused"),
    }
    assert [r.tracking_id for r in sims.apns.accepted()] == [FIRST]


async def test_goaway_after_a_higher_stream_was_answered_refuses_its_trigger(
    sims: Simulators, apns_key: KeyFactory, raw_apns: RawConnect
) -> None:
    """Stream 3, answered first, was processed: the last-stream-id must cover it, so the
    trigger (stream 1) learns it was not processed from REFUSED_STREAM instead."""
    sims.apns.set_scenario(
        Scenario(scripted={FIRST: [Answer(action="goaway", latency_ms=SLOW_MS)]})
    )
    key = apns_key()
    client = await raw_apns()
    _, trigger = client.send(push_to(key, FIRST), body(FIRST))
    _, answered = client.send(push_to(key, SECOND), body(SECOND))
    assert await outcome(answered) == 200
    with pytest.raises(StreamRefused) as refused:
        await asyncio.wait_for(trigger, 10)
    assert refused.value.error_code == REFUSED_STREAM
    await asyncio.wait_for(client.closed.wait(), 10)
    assert client.goaway is not None
    assert client.goaway.last_stream_id == 3
    assert fates(sims) == {SECOND: (200, None), FIRST: (0, "goaway-refused")}


async def test_streams_opened_after_a_goaway_are_not_processed(
    sims: Simulators, apns_key: KeyFactory, raw_apns: RawConnect
) -> None:
    sims.apns.set_scenario(
        Scenario(scripted={FIRST: [Answer(latency_ms=SLOW_MS)], SECOND: [Answer(action="goaway")]})
    )
    key = apns_key()
    client = await raw_apns()
    first = client.send(push_to(key, FIRST), body(FIRST))[1]
    second = client.send(push_to(key, SECOND), body(SECOND))[1]
    assert await outcome(second) is NotProcessed
    # A client that opens another stream anyway: never looked at, never answered.
    third = client.send(push_to(key, THIRD), body(THIRD))[1]
    assert await outcome(first) == 200
    assert await outcome(third) is ConnectionError  # the connection closed under it
    assert fates(sims) == {SECOND: (0, "goaway-refused"), FIRST: (200, None)}


async def test_reset_drops_every_stream_in_flight(
    sims: Simulators, apns_key: KeyFactory, raw_apns: RawConnect, apns_pool: PoolFactory
) -> None:
    sims.apns.set_scenario(
        Scenario(
            scripted={
                FIRST: [Answer(latency_ms=SLOW_MS)],
                SECOND: [Answer(action="reset", latency_ms=200)],
            }
        )
    )
    key = apns_key()
    client = await raw_apns()
    answered = client.request(push_to(key, THIRD), body(THIRD))
    assert (await answered).status == 200  # answered before the fault: processed
    sent = [client.send(push_to(key, t), body(t))[1] for t in (FIRST, SECOND)]
    assert [await outcome(f) for f in sent] == [ConnectionError, ConnectionError]
    assert client.goaway is None
    assert fates(sims) == {THIRD: (200, None), FIRST: (0, "reset"), SECOND: (0, "reset")}
    stats = sims.apns.stats()
    assert (stats["by_status"], stats["by_reason"]) == ({"0": 2, "200": 1}, {"reset": 2})
    # The next connection is served as usual.
    request = NotificationRequest(device_token=FIRST, message=ALERT, push_type=PushType.ALERT)
    assert (await apns_pool(key).send_notification(request)).is_successful


async def test_hang_leaves_one_stream_unanswered_and_the_connection_serving(
    sims: Simulators, apns_key: KeyFactory, raw_apns: RawConnect
) -> None:
    sims.apns.set_scenario(Scenario(scripted={FIRST: [Answer(action="hang")]}))
    key = apns_key()
    client = await raw_apns()
    _, hung = client.send(push_to(key, FIRST), body(FIRST))
    assert (await client.request(push_to(key, SECOND), body(SECOND))).status == 200
    assert (await client.request(push_to(key, FIRST), body("again"))).status == 200
    assert not hung.done()
    assert fates(sims) == {FIRST: (0, "hang"), SECOND: (200, None), "again": (200, None)}


async def test_refuse_answers_refused_stream_and_processes_nothing(
    sims: Simulators, apns_key: KeyFactory, raw_apns: RawConnect
) -> None:
    sims.apns.set_scenario(Scenario(scripted={FIRST: [Answer(action="refuse")]}))
    key = apns_key()
    client = await raw_apns()
    with pytest.raises(StreamRefused) as refused:
        await client.request(push_to(key, FIRST), body(FIRST))
    assert refused.value.error_code == REFUSED_STREAM
    assert (await client.request(push_to(key, FIRST), body("retried"))).status == 200
    assert fates(sims) == {FIRST: (0, "refused"), "retried": (200, None)}
    assert [r.tracking_id for r in sims.apns.accepted()] == ["retried"]


async def test_answer_lost_delivers_the_push_and_drops_the_others_in_flight(
    sims: Simulators, apns_key: KeyFactory, raw_apns: RawConnect
) -> None:
    sims.apns.set_scenario(
        Scenario(
            scripted={
                FIRST: [Answer(latency_ms=SLOW_MS)],
                SECOND: [Answer(action="answer_lost", latency_ms=200)],
            }
        )
    )
    key = apns_key()
    client = await raw_apns()
    sent = [client.send(push_to(key, t, collapse_id=t[:8]), body(t))[1] for t in (FIRST, SECOND)]
    assert [await outcome(f) for f in sent] == [ConnectionError, ConnectionError]
    assert fates(sims) == {SECOND: (200, "answer_lost"), FIRST: (0, "dropped")}
    [lost] = sims.apns.accepted()
    assert lost.tracking_id == SECOND
    assert sims.apns.displayed(SECOND) == [lost]  # the device has it


async def test_a_resend_after_a_lost_answer_collapses_on_the_device(
    sims: Simulators, apns_key: KeyFactory, apns_pool: PoolFactory
) -> None:
    sims.apns.set_scenario(Scenario(scripted={FIRST: [Answer(action="answer_lost")]}))
    key = apns_key()
    request = NotificationRequest(
        device_token=FIRST,
        message={**ALERT, "trackingId": "node-1"},
        collapse_key="node-1",
        push_type=PushType.ALERT,
    )
    with pytest.raises(Exception):  # noqa: B017, PT011 - the client never hears back
        await apns_pool(key).send_notification(request)
    assert (await apns_pool(key).send_notification(request)).is_successful
    assert [r.reason for r in sims.apns.accepted(token=FIRST)] == ["answer_lost", None]
    assert len(sims.apns.displayed(FIRST)) == 1
    summary = sims.apns.summary()[FIRST]
    assert (summary.accepted, summary.tracking_ids, summary.displayed) == (2, 1, 1)
    assert summary.duplicates == 1


async def test_fcm_answer_lost_then_the_resend_replaced_by_its_tag(
    sims: Simulators, fcm_app: AppFactory
) -> None:
    device = fcm_token("lost-answer")
    sims.fcm.set_scenario(Scenario(scripted={device: [Answer(action="answer_lost")]}))
    message = to_device(device, "node-1", tag="node-1")
    lost = await send_one(fcm_app("lost", fresh=True), message)
    assert isinstance(lost.exception, exceptions.FirebaseError)
    assert lost.exception.http_response is None
    assert (await send_one(fcm_app(), message)).success
    assert [r.reason for r in sims.fcm.accepted(token=device)] == ["answer_lost", None]
    assert len(sims.fcm.displayed(device)) == 1


async def test_a_stream_the_client_cancels_before_its_answer_is_not_processed(
    sims: Simulators, apns_key: KeyFactory, raw_apns: RawConnect
) -> None:
    sims.apns.set_scenario(Scenario(scripted={FIRST: [Answer(latency_ms=SLOW_MS)]}))
    key = apns_key()
    client = await raw_apns()
    stream_id, _ = client.send(push_to(key, FIRST), body(FIRST))
    await asyncio.sleep(0.1)  # let the request arrive; its answer is due much later
    client.cancel(stream_id)
    await wait_until(lambda: bool(sims.apns.records()))
    assert fates(sims) == {FIRST: (0, "cancelled")}


async def test_answers_pending_when_the_client_closes_are_dropped(
    sims: Simulators, apns_key: KeyFactory, raw_apns: RawConnect
) -> None:
    sims.apns.set_scenario(Scenario(scripted={FIRST: [Answer(latency_ms=SLOW_MS)]}))
    key = apns_key()
    client = await raw_apns()
    client.send(push_to(key, FIRST), body(FIRST))
    await asyncio.sleep(0.1)
    await client.close()
    await wait_until(lambda: bool(sims.apns.records()))
    assert fates(sims) == {FIRST: (0, "dropped")}
    assert sims.apns.accepted() == []


async def test_httpx_resends_a_stream_above_the_last_stream_id_on_a_new_connection(
    sims: Simulators, fcm_app: AppFactory
) -> None:
    """firebase-admin's async client (httpx) learns from the last-stream-id that the second
    request was not processed, and sends it again on a new connection: delivered once."""
    warm, device = fcm_token("warm"), fcm_token("goaway-second")
    sims.fcm.set_scenario(Scenario(scripted={device: [Answer(action="goaway")]}))
    app = fcm_app("goaway", fresh=True)
    assert (await send_one(app, to_device(warm, "warm"))).success  # stream 1
    assert (await send_one(app, to_device(device, "node-1"))).success  # stream 3, then anew
    assert [(r.tracking_id, r.status, r.reason) for r in sims.fcm.records()] == [
        ("warm", 200, None),
        ("node-1", 0, "goaway-refused"),
        ("node-1", 200, None),
    ]
