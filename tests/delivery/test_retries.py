"""Retries, expiry and faults through the delivery activity on the real stack (Temporal's dev
server, the worker, SQLite and PostgreSQL, the real clients and the simulators)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlmodel import col, select
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.contracts import ProfileVisit, PushBatch
from tests.scene import Scene, apns_token, delivery_scene, direct_delivery, fcm_token
from tidings.journeys.model import PushContent
from tidings.push.check import CHECK_DEVICE_TOKEN
from tidings.sim import Answer, MixEntry, Scenario, Simulators
from tidings.store.models import App, DeliveryStatus, DeviceState, JourneyRun, SendCause
from tidings.store.reports import run_funnel

DELIVERED = DeliveryStatus.DELIVERED


async def test_a_partly_failing_batch_retries_only_the_failed_devices(scene: Scene) -> None:
    app = await scene.add_app()
    profiles = [f"p{n}" for n in range(8)]
    for n, profile in enumerate(profiles):
        await scene.add_device(app, profile, "apns", apns_token(n), attributes={"first_name": "A"})
        await scene.add_device(app, profile, "fcm", fcm_token(n))
    failing = {apns_token(1), apns_token(4), fcm_token(2), fcm_token(6)}
    scene.sims.apns.set_scenario(
        Scenario(scripted={t: [Answer(reason="ServiceUnavailable")] for t in failing})
    )
    scene.sims.fcm.set_scenario(
        Scenario(scripted={t: [Answer(error_code="UNAVAILABLE")] for t in failing})
    )
    run_id, result = await scene.run_push(app, profiles)
    ledger = await scene.ledger(run_id)
    assert {r.status for r in ledger} == {DELIVERED}
    tokens = {apns_token(n): "apns" for n in range(8)} | {fcm_token(n): "fcm" for n in range(8)}
    for token, provider in tokens.items():
        simulator = scene.sims.apns if provider == "apns" else scene.sims.fcm
        # a failed device is sent again, a delivered one never
        assert len(simulator.records(token=token)) == (2 if token in failing else 1), token
        assert len(simulator.displayed(token)) == 1
    assert sorted(r.attempts for r in ledger) == [1] * 12 + [2] * 4
    assert result.counts["push.delivered"] == 16


async def test_retries_end_at_the_retry_horizon(
    tmp_path: Path, database_url: str, temporal_client: Client, sims: Simulators
) -> None:
    """A device that keeps failing is retried until its node's retry horizon (2 s here),
    then recorded failed with its last answer and the attempts it took, each counted in the
    ledger and seen by the provider; the others are delivered at once."""
    async with delivery_scene(
        tmp_path, database_url, temporal_client, sims, delivery_retry_horizon_s=2.0
    ) as scene:
        app = await scene.add_app()
        await scene.add_device(app, "p1", "apns", apns_token(1), attributes={"first_name": "A"})
        await scene.add_device(app, "p2", "apns", apns_token(2), attributes={"first_name": "B"})
        scene.sims.apns.set_scenario(
            Scenario(scripted={apns_token(1): [Answer(reason="InternalServerError")] * 1000})
        )
        run_id, result = await scene.run_push(app, ["p1", "p2"])
        rows = {r.profile_id: r for r in await scene.ledger(run_id)}
    failed = rows["p1"]
    assert (failed.status, failed.cause) == (DeliveryStatus.FAILED, SendCause.RETRY_HORIZON)
    assert failed.reason == (
        "not delivered within its retry horizon (2s); last answer: 500 InternalServerError"
    )
    assert failed.attempts >= 2
    assert len(sims.apns.records(token=apns_token(1))) == failed.attempts
    assert (rows["p2"].status, rows["p2"].attempts) == (DELIVERED, 1)
    assert result.counts["push.failed"] == 1


async def test_credentials_this_worker_cannot_open_are_retried_and_never_stop_the_app(
    tmp_path: Path, database_url: str, temporal_client: Client, sims: Simulators
) -> None:
    """A credential stored as an env: reference this worker's environment lacks: nothing is
    sent, the rows are retried (another worker may have it) and end failed; the app is not
    stopped and no token is touched."""
    async with delivery_scene(
        tmp_path, database_url, temporal_client, sims, delivery_retry_horizon_s=2.0
    ) as scene:
        app = await scene.add_app()
        device = await scene.add_device(
            app, "p1", "apns", apns_token(1), attributes={"first_name": "A"}
        )
        async with scene.db.write() as session:
            stored = await session.get(App, app)
            assert stored is not None
            stored.apns_secret = "env:TIDINGS_TEST_VARIABLE_NOBODY_SET"
            stored.credentials_version += 1
        run_id, result = await scene.run_push(app, ["p1"])
        [row] = await scene.ledger(run_id)
        assert (row.status, row.cause) == (DeliveryStatus.FAILED, SendCause.RETRY_HORIZON)
        assert row.attempts >= 2
        assert "credentials cannot be opened (SecretError)" in (row.reason or "")
        assert "TIDINGS_TEST_VARIABLE_NOBODY_SET" not in (row.reason or "")
        assert scene.sims.apns.records(token=apns_token(1)) == []
        assert (await scene.app(app)).apns_fault is None
        assert result.stopped is None
        assert (await scene.device(device)).state == DeviceState.VALID


async def test_a_push_that_renders_too_large_is_not_sent(scene: Scene) -> None:
    """Validation estimates template sizes; the rendered push is measured again before any
    send: a profile whose attributes make it too large is held back, saying why."""
    app = await scene.add_app()
    await scene.add_device(app, "big", "apns", apns_token(1), attributes={"bio": "é" * 2500})
    await scene.add_device(app, "small", "apns", apns_token(2), attributes={"bio": "hi"})
    run_id, _ = await scene.run_push(
        app, ["big", "small"], content={"title": "About you", "body": "{{ bio }}"}
    )
    rows = {r.profile_id: r for r in await scene.ledger(run_id)}
    assert rows["big"].status == DeliveryStatus.NOT_SENT
    assert (rows["big"].reason or "").startswith("the payload is")
    assert "UTF-8" in (rows["big"].reason or "")
    assert rows["small"].status == DELIVERED
    assert scene.sims.apns.records(token=apns_token(1)) == []


async def test_retry_after_is_honoured(scene: Scene) -> None:
    """The retry comes no sooner than the provider asked (lower bound only: a loaded machine
    may be later, never earlier). The configured backoff is 50 ms: only Retry-After explains
    a 2 s gap."""
    app = await scene.add_app()
    await scene.add_device(app, "p1", "apns", apns_token(1), attributes={"first_name": "A"})
    await scene.add_device(app, "p2", "fcm", fcm_token(2), attributes={"first_name": "B"})
    scene.sims.apns.set_scenario(
        Scenario(scripted={apns_token(1): [Answer(reason="ServiceUnavailable", retry_after_s=2)]})
    )
    scene.sims.fcm.set_scenario(
        Scenario(scripted={fcm_token(2): [Answer(error_code="UNAVAILABLE", retry_after_s=2)]})
    )
    _, result = await scene.run_push(app, ["p1", "p2"])
    assert result.counts["push.delivered"] == 2
    for simulator, token in ((scene.sims.apns, apns_token(1)), (scene.sims.fcm, fcm_token(2))):
        first, second = simulator.records(token=token)
        assert second.received_at - first.received_at >= 2.0


async def test_an_expired_provider_token_mints_one_new_jwt_for_the_whole_batch(
    scene: Scene,
) -> None:
    app = await scene.add_app()
    profiles = [f"p{n}" for n in range(20)]
    for n, profile in enumerate(profiles):
        await scene.add_device(app, profile, "apns", apns_token(n), attributes={"first_name": "A"})
    senders = await scene.senders(app)
    assert senders.apns is not None
    auth = senders.apns.auth
    assert auth is not None
    scene.sims.apns.set_scenario(
        Scenario(
            # the scripted answer comes for a young JWT: let the simulator take the new one
            token_update_min_interval_s=0,
            scripted={apns_token(n): [Answer(reason="ExpiredProviderToken")] for n in range(20)},
        )
    )
    before = auth.generation
    run_id, result = await scene.run_push(app, profiles)
    assert result.counts["push.delivered"] == 20
    assert auth.generation == max(before, 1) + 1  # minted once (after the first one)
    # two JWTs in all: the first, and the one minted once; every accepted push carried it
    # (the simulator's scripted answer also rejects requests that already had the new one)
    records = [r for r in scene.sims.apns.records() if r.token != CHECK_DEVICE_TOKEN]
    assert len({r.provider_token for r in records}) == 2
    assert len({r.provider_token for r in records if r.status == 200}) == 1
    assert {r.attempts for r in await scene.ledger(run_id)} == {2}


async def test_an_expiry_passing_during_retries_records_the_push_expired(scene: Scene) -> None:
    """A push whose TTL would pass before its retry is recorded expired and never sent late;
    the ones that go out carry the time left to both providers."""
    app = await scene.add_app()
    await scene.add_device(app, "late", "apns", apns_token(1), attributes={"first_name": "A"})
    await scene.add_device(app, "late", "fcm", fcm_token(1))
    await scene.add_device(app, "fine", "apns", apns_token(2), attributes={"first_name": "B"})
    await scene.add_device(app, "fine", "fcm", fcm_token(2))
    scene.sims.apns.set_scenario(
        Scenario(scripted={apns_token(1): [Answer(reason="ServiceUnavailable", retry_after_s=30)]})
    )
    scene.sims.fcm.set_scenario(
        Scenario(scripted={fcm_token(1): [Answer(error_code="UNAVAILABLE", retry_after_s=30)]})
    )
    started_at = time.time()
    run_id, result = await scene.run_push(app, ["late", "fine"], ttl="20s")
    ledger = {r.profile_id + ":" + str(r.provider): r for r in await scene.ledger(run_id)}
    for provider in ("apns", "fcm"):
        late = ledger[f"late:{provider}"]
        assert (late.status, late.attempts) == (DeliveryStatus.EXPIRED, 1)
        assert "expired while retrying" in (late.reason or "")
        assert ledger[f"fine:{provider}"].status == DELIVERED
    assert len(scene.sims.apns.records(token=apns_token(1))) == 1  # never sent late
    assert len(scene.sims.fcm.records(token=fcm_token(1))) == 1
    assert result.counts["push.expired"] == 2
    [apns_sent] = scene.sims.apns.accepted(token=apns_token(2))
    expiration = int(apns_sent.headers["apns-expiration"])
    assert started_at + 10 <= expiration <= time.time() + 20
    [fcm_sent] = scene.sims.fcm.accepted(token=fcm_token(2))
    assert fcm_sent.payload is not None
    ttl = int(fcm_sent.payload["android"]["ttl"].removesuffix("s"))
    assert 10 <= ttl <= 20


async def test_a_push_already_expired_when_its_attempt_starts_is_not_sent(
    scene: Scene,
) -> None:
    """The node was reached longer ago than its TTL (quiet hours held it, or Temporal ran the
    attempt late): recorded expired, nothing reaches the providers."""
    app = await scene.add_app()
    await scene.add_device(app, "p1", "apns", apns_token(1), attributes={"first_name": "A"})
    delivery = direct_delivery(scene)
    batch = PushBatch(
        run_id="run-late",
        journey_id="late",
        workflow_id="run-late/cohort-000001",
        node_id="push",
        app_id=app,
        content=PushContent(title="t"),
        ttl_s=5,
        reached_at=datetime.now(UTC) - timedelta(seconds=6),
        profiles=[ProfileVisit("p1")],
    )
    result = await ActivityEnvironment().run(delivery.deliver, batch)
    assert result.statuses == {"expired": 1}
    assert scene.sims.apns.records(token=apns_token(1)) == []


def apns_sends(scene: Scene, devices: int) -> int:
    """Requests the APNs simulator saw for the test's devices (not the credential check's)."""
    return sum(len(scene.sims.apns.records(token=apns_token(n))) for n in range(devices))


def refuse_once(scene: Scene, reason: str, devices: int) -> None:
    scene.sims.apns.set_scenario(
        Scenario(scripted={apns_token(n): [Answer(reason=reason)] for n in range(devices)})
    )


async def test_a_configuration_fault_stops_the_app_until_an_admin_resumes_it(
    scene: Scene,
) -> None:
    """Apple refuses the key (InvalidProviderToken, say after the key was revoked): the app's
    APNs sends stop (FCM goes on), no token is touched, nothing is retried, the run says why
    and the app shows since when; an admin resumes them without new credentials (same
    client), and new credentials clear a stop too (a new client)."""
    app = await scene.add_app()
    profiles = [f"p{n}" for n in range(4)]
    for n, profile in enumerate(profiles):
        await scene.add_device(app, profile, "apns", apns_token(n), attributes={"first_name": "A"})
        await scene.add_device(app, profile, "fcm", fcm_token(n))
    refuse_once(scene, "InvalidProviderToken", 4)

    run_id, result = await scene.run_push(app, profiles)
    ledger = await scene.ledger(run_id)
    apns_rows = [r for r in ledger if r.provider == "apns"]
    assert {(r.status, r.attempts) for r in apns_rows} == {(DeliveryStatus.CONFIG_FAULT, 1)}
    assert {r.status for r in ledger if r.provider == "fcm"} == {DELIVERED}
    assert result.stopped == "apns: 403 InvalidProviderToken"
    shown = (await scene.stack.http.get(f"/v1/apps/{app}")).json()
    assert shown["apns_fault"] == "403 InvalidProviderToken"
    assert shown["stops"]["apns"]["reason"] == "403 InvalidProviderToken"
    assert shown["stops"]["apns"]["since"] is not None
    assert "fcm" not in shown["stops"]
    for device_id in {r.device_id for r in ledger}:
        assert device_id is not None
        assert (await scene.device(device_id)).state == DeviceState.VALID
    assert apns_sends(scene, 4) == 4  # once each, never retried
    async with scene.db.read() as session:
        stored = (await session.exec(select(JourneyRun).where(col(JourneyRun.id) == run_id))).one()
    assert stored.error == "apns: 403 InvalidProviderToken"

    # a later run sends nothing to APNs while the app is stopped
    before = await scene.senders(app)
    run_id, result = await scene.run_push(app, profiles)
    stopped = [r for r in await scene.ledger(run_id) if r.provider == "apns"]
    assert {r.status for r in stopped} == {DeliveryStatus.NOT_SENT}
    assert {r.reason for r in stopped} == {"app stopped: 403 InvalidProviderToken"}
    assert apns_sends(scene, 4) == 4
    assert result.stopped == "apns: 403 InvalidProviderToken"

    # the admin resumes APNs (the key was re-enabled): sends go out on the same client
    resumed = await scene.stack.http.post(f"/v1/apps/{app}/resume", json={"provider": "apns"})
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["stops"] == {}
    run_id, result = await scene.run_push(app, profiles)
    assert {r.status for r in await scene.ledger(run_id)} == {DELIVERED}
    assert result.stopped is None
    assert (await scene.senders(app)) is before

    # stopped again; new credentials clear the stop, and the worker builds a new client
    refuse_once(scene, "InvalidProviderToken", 4)
    run_id, result = await scene.run_push(app, profiles)
    assert result.stopped == "apns: 403 InvalidProviderToken"
    fixed = scene.credentials()
    patch = await scene.stack.http.patch(f"/v1/apps/{app}", json={"apns": fixed.body["apns"]})
    assert patch.status_code == 200, patch.text
    assert patch.json()["apns_fault"] is None
    run_id, result = await scene.run_push(app, profiles)
    assert {r.status for r in await scene.ledger(run_id)} == {DELIVERED}
    assert result.stopped is None


async def test_a_fault_of_one_push_fails_that_push_and_never_stops_the_app(
    scene: Scene,
) -> None:
    """APNs refuses the push itself (PayloadTooLarge): its APNs sends in the batch fail, the
    one that would have been retried too (it would be refused alike), no token is touched,
    the run says why, and the app is not stopped: the next journey's pushes go out."""
    app = await scene.add_app()
    profiles = [f"p{n}" for n in range(4)]
    for n, profile in enumerate(profiles):
        await scene.add_device(app, profile, "apns", apns_token(n), attributes={"first_name": "A"})
        await scene.add_device(app, profile, "fcm", fcm_token(n))
    scene.sims.apns.set_scenario(
        Scenario(
            scripted={
                apns_token(0): [Answer(reason="PayloadTooLarge")],
                apns_token(1): [Answer(reason="ServiceUnavailable")],
            }
        )
    )
    run_id, result = await scene.run_push(app, profiles)
    rows = {(r.profile_id, str(r.provider)): r for r in await scene.ledger(run_id)}
    refused = rows[("p0", "apns")]
    assert (refused.status, refused.attempts) == (DeliveryStatus.CONFIG_FAULT, 1)
    assert refused.reason == "push refused: 413 PayloadTooLarge"
    not_retried = rows[("p1", "apns")]
    assert (not_retried.status, not_retried.attempts) == (DeliveryStatus.CONFIG_FAULT, 1)
    assert (not_retried.reason or "").startswith(
        "failed with the refused push (push refused: 413 PayloadTooLarge)"
    )
    assert "503 ServiceUnavailable" in (not_retried.reason or "")
    assert len(scene.sims.apns.records(token=apns_token(1))) == 1
    # answered before the refusal was known: delivered, and FCM is not concerned
    assert {rows[(p, "apns")].status for p in ("p2", "p3")} == {DELIVERED}
    assert {rows[(p, "fcm")].status for p in profiles} == {DELIVERED}
    assert result.stopped == "apns: push refused: 413 PayloadTooLarge"
    shown = (await scene.stack.http.get(f"/v1/apps/{app}")).json()
    assert shown["stops"] == {}
    assert shown["apns_fault"] is None
    for row in rows.values():
        assert row.device_id is not None
        assert (await scene.device(row.device_id)).state == DeviceState.VALID

    run_id, result = await scene.run_push(app, profiles)
    assert {r.status for r in await scene.ledger(run_id)} == {DELIVERED}
    assert result.stopped is None


async def test_a_refused_push_is_not_sent_to_the_rest_of_a_paced_batch(scene: Scene) -> None:
    """Under a send rate, chunks go out one after another: once APNs refused the push, its
    chunks still to come are not sent to APNs at all."""
    app = await scene.add_app(send_rate_per_s=1)
    profiles = [f"p{n}" for n in range(4)]
    for n, profile in enumerate(profiles):
        await scene.add_device(app, profile, "apns", apns_token(n), attributes={"first_name": "A"})
    scene.sims.apns.set_scenario(
        Scenario(scripted={apns_token(0): [Answer(reason="BadCollapseId")]})
    )
    run_id, result = await scene.run_push(app, profiles)
    rows = {r.profile_id: r for r in await scene.ledger(run_id)}
    assert rows["p0"].reason == "push refused: 400 BadCollapseId"
    skipped = [p for p in profiles[1:] if rows[p].status is not DELIVERED]
    # the last chunk's turn comes seconds after the refusal: never sent
    assert "p3" in skipped
    for profile in skipped:
        assert rows[profile].status == DeliveryStatus.CONFIG_FAULT
        assert (
            rows[profile].reason == "failed with the refused push (push refused: 400 BadCollapseId)"
        )
        assert scene.sims.apns.records(token=apns_token(int(profile[1:]))) == []
    assert result.stopped == "apns: push refused: 400 BadCollapseId"
    assert (await scene.app(app)).apns_fault is None


async def test_a_registration_racing_a_410_keeps_the_token(scene: Scene) -> None:
    """APNs answers 410 with the moment it learnt the token was gone; the app registered the
    token again after that moment (here: while the request was in flight). The token stays
    valid. A token nobody registered again is invalidated."""
    app = await scene.add_app()
    named = {"first_name": "A"}
    raced = await scene.add_device(app, "p1", "apns", apns_token(1), attributes=named)
    gone = await scene.add_device(app, "p2", "apns", apns_token(2), attributes=named)
    fcm_raced = await scene.add_device(app, "p3", "fcm", fcm_token(3), attributes=named)
    gone_at_ms = int(time.time() * 1000)
    scene.sims.apns.set_scenario(
        Scenario(
            scripted={
                token: [Answer(reason="Unregistered", timestamp_ms=gone_at_ms, latency_ms=1500)]
                for token in (apns_token(1), apns_token(2))
            }
        )
    )
    scene.sims.fcm.set_scenario(
        Scenario(scripted={fcm_token(3): [Answer(error_code="UNREGISTERED", latency_ms=1500)]})
    )
    started = await scene.start_push(app, ["p1", "p2", "p3"])
    # while the provider holds the requests, the app registers two of the tokens again
    for _ in range(200):
        if scene.sims.apns.records(token=apns_token(1)) and scene.sims.fcm.records(
            token=fcm_token(3)
        ):
            break
        await asyncio.sleep(0.02)
    await scene.add_device(app, "p1", "apns", apns_token(1))
    await scene.add_device(app, "p3", "fcm", fcm_token(3))
    result = await started.handle.result()
    assert result.counts["push.token_gone"] == 3
    assert (await scene.device(raced)).state == DeviceState.VALID
    assert (await scene.device(fcm_raced)).state == DeviceState.VALID
    invalid = await scene.device(gone)
    assert invalid.state == DeviceState.INVALID
    assert invalid.state_reason == "410 Unregistered"


async def test_a_410_older_than_the_registration_keeps_the_token(scene: Scene) -> None:
    app = await scene.add_app()
    device = await scene.add_device(
        app, "p1", "apns", apns_token(1), attributes={"first_name": "A"}
    )
    an_hour_ago_ms = int((time.time() - 3600) * 1000)
    scene.sims.apns.mark_unregistered([apns_token(1)], at_ms=an_hour_ago_ms)
    run_id, _ = await scene.run_push(app, ["p1"])
    [row] = await scene.ledger(run_id)
    assert row.status == DeliveryStatus.TOKEN_GONE
    assert (await scene.device(device)).state == DeviceState.VALID
    scene.sims.apns.mark_unregistered([apns_token(1)])  # now: after the registration
    await scene.run_push(app, ["p1"])
    assert (await scene.device(device)).state == DeviceState.INVALID


async def test_a_rotated_file_reference_takes_effect_without_a_restart(
    scene: Scene, tmp_path: Path
) -> None:
    """An FCM service account held as a file: reference: ops replace the file (a new key,
    even another project) and the next push uses it, with no worker restart and no save of
    the app."""
    account_file = tmp_path / "fcm-account.json"
    first = scene.sims.fcm.create_service_account(project_id=f"rot-a-{uuid.uuid4().hex[:6]}")
    account_file.write_text(json.dumps(first))
    app = await scene.add_app(fcm={"service_account": f"file:{account_file}"})
    await scene.add_device(app, "p1", "fcm", fcm_token(1), attributes={"first_name": "A"})
    await scene.run_push(app, ["p1"])

    second = scene.sims.fcm.create_service_account(project_id=f"rot-b-{uuid.uuid4().hex[:6]}")
    account_file.write_text(json.dumps(second))
    run_id, result = await scene.run_push(app, ["p1"])

    [row] = await scene.ledger(run_id)
    assert row.status == DELIVERED
    projects = [
        (r.message_id or "").split("/")[1] for r in scene.sims.fcm.accepted(token=fcm_token(1))
    ]
    assert projects == [first["project_id"], second["project_id"]]
    assert result.counts["push.delivered"] == 1


async def test_an_outage_shorter_than_the_retry_horizon_loses_nothing(scene: Scene) -> None:
    """Both providers answer every request 503 for a while, then recover: every push is
    delivered once, after attempts the ledger counts per send (each one a request the
    provider saw), and no token is touched."""
    app = await scene.add_app()
    tokens = {apns_token(n): "apns" for n in range(6)} | {fcm_token(n): "fcm" for n in range(6)}
    for n in range(6):
        await scene.add_device(app, f"p{n}", "apns", apns_token(n), attributes={"first_name": "A"})
        await scene.add_device(app, f"p{n}", "fcm", fcm_token(n))
    outage = [MixEntry(percent=100, answer=Answer(status=503))]
    scene.sims.apns.set_scenario(Scenario(mix=outage))
    scene.sims.fcm.set_scenario(Scenario(mix=outage))
    started = await scene.start_push(app, [f"p{n}" for n in range(6)])
    for _ in range(1200):  # two attempts refused for every device
        if sum(len(s.records()) for s in (scene.sims.apns, scene.sims.fcm)) >= 2 * len(tokens):
            break
        await asyncio.sleep(0.05)
    scene.sims.apns.set_scenario(Scenario())
    scene.sims.fcm.set_scenario(Scenario())
    result = await started.handle.result()
    ledger = {row.tracking_id: row for row in await scene.ledger(started.run_id)}
    assert {r.status for r in ledger.values()} == {DELIVERED}
    for token, provider in tokens.items():
        simulator = scene.sims.apns if provider == "apns" else scene.sims.fcm
        [accepted] = simulator.accepted(token=token)
        row = ledger[accepted.tracking_id or ""]
        assert row.attempts >= 2
        assert len(simulator.records(token=token)) == row.attempts
    assert result.counts["push.delivered"] == len(tokens)
    for row in ledger.values():
        assert row.device_id is not None
        assert (await scene.device(row.device_id)).state == DeviceState.VALID


async def test_a_lost_answer_is_resent_as_the_same_push_and_counted_as_a_possible_duplicate(
    scene: Scene,
) -> None:
    """The provider accepts the push and the connection dies before its answer: the row is
    an unknown outcome, resent by the next attempt with the same apns-id and collapse id /
    notification tag, so the device shows one notification; the report counts it."""
    app = await scene.add_app()
    await scene.add_device(app, "p1", "apns", apns_token(1), attributes={"first_name": "A"})
    await scene.add_device(app, "p1", "fcm", fcm_token(1))
    lost = Scenario(
        scripted={
            apns_token(1): [Answer(action="answer_lost")],
            fcm_token(1): [Answer(action="answer_lost")],
        }
    )
    scene.sims.apns.set_scenario(lost)
    scene.sims.fcm.set_scenario(lost.model_copy(deep=True))
    run_id, result = await scene.run_push(app, ["p1"])
    ledger = await scene.ledger(run_id)
    assert {(r.status, r.attempts, r.unknown_outcomes) for r in ledger} == {(DELIVERED, 2, 1)}
    for simulator, token in ((scene.sims.apns, apns_token(1)), (scene.sims.fcm, fcm_token(1))):
        copies = simulator.accepted(token=token)
        assert len(copies) == 2  # the provider holds both
        assert len({c.display_key for c in copies}) == 1
        assert len(simulator.displayed(token)) == 1  # the device shows one
    apns_copies = scene.sims.apns.accepted(token=apns_token(1))
    assert len({c.message_id for c in apns_copies}) == 1  # the same apns-id
    assert result.counts["push.delivered"] == 2
    async with scene.db.read() as session:
        funnel = await run_funnel(session, run_id)
    assert (funnel.possible_duplicates, funnel.retried, funnel.unknown) == (2, 2, 0)
