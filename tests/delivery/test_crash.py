"""A worker killed mid-batch: a worker process (``python worker.py``) is sending a batch while
the simulators hold its requests; it is killed with SIGKILL; a second worker process finishes
the batch. Every valid device shows the push exactly once and none is skipped.

The crash window is real: requests the providers received but whose answers the dead worker
never recorded are sent again by the second worker. Each carries its ledger row's tracking id
as collapse id, so the device keeps one notification; the test counts those raw duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from temporalio.client import Client

from tests.scene import Scene, apns_token, delivery_scene, fcm_token
from tidings.journeys import parse_definition
from tidings.runs.start import start_run
from tidings.settings import Settings
from tidings.sim import FixedLatency, Scenario, Simulators
from tidings.store.models import DeliveryStatus

REPO = Path(__file__).resolve().parents[2]
DEVICES = 40
IN_FLIGHT = 6  # per provider and worker


def worker_env(settings: Settings, client: Client) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIDINGS_", "TEMPORAL_"))}
    values: dict[str, Any] = {
        "home": settings.home,
        "database_url": settings.database_url,
        "apns_endpoint": settings.apns_endpoint,
        "fcm_endpoint": settings.fcm_endpoint,
        "provider_ca_file": settings.provider_ca_file,
        "task_queue": settings.task_queue,
        "send_concurrency": settings.send_concurrency,
        "send_timeout_s": settings.send_timeout_s,
        "delivery_heartbeat_timeout_s": settings.delivery_heartbeat_timeout_s,
        "delivery_initial_backoff_s": settings.delivery_initial_backoff_s,
        "delivery_max_backoff_s": settings.delivery_max_backoff_s,
        "log_level": "WARNING",
    }
    env.update({f"TIDINGS_{k.upper()}": str(v) for k, v in values.items()})
    env["TEMPORAL_ADDRESS"] = client.service_client.config.target_host
    # PostgreSQL beside the test's own dev server on purpose: not the production topology
    env["TIDINGS_ENV"] = "development"
    return env


@contextlib.contextmanager
def worker_process(env: dict[str, str], log: Path) -> Any:
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "worker.py")],
            cwd=REPO,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def test_a_worker_killed_mid_batch_loses_no_push_and_shows_none_twice(
    tmp_path: Path, database_url: str, temporal_client: Client, sims: Simulators
) -> None:
    async with delivery_scene(
        tmp_path,
        database_url,
        temporal_client,
        sims,
        send_concurrency=IN_FLIGHT,
        delivery_heartbeat_timeout_s=2.0,
        send_timeout_s=10.0,
        cohort_size=DEVICES,
    ) as scene:
        await run_the_crash(scene, temporal_client, tmp_path)


async def run_the_crash(scene: Scene, client: Client, home: Path) -> None:
    app = await scene.add_app()
    tokens: dict[str, str] = {}
    for n in range(DEVICES):
        provider, token = ("apns", apns_token(n)) if n % 2 else ("fcm", fcm_token(n))
        await scene.add_device(app, f"p{n:02d}", provider, token, attributes={"first_name": "A"})
        tokens[token] = provider
    # the in-process worker of the scene serves another task queue; these workers serve this
    queue = f"{scene.stack.settings.task_queue}-crash"
    settings = scene.stack.settings.model_copy(update={"task_queue": queue})
    env = worker_env(settings, client)
    # every answer is held 3 s: the first worker dies with its requests in flight
    scene.sims.apns.set_scenario(Scenario(latency=FixedLatency(ms=3000)))
    scene.sims.fcm.set_scenario(Scenario(latency=FixedLatency(ms=3000)))

    definition = parse_definition(
        {
            "id": "crash",
            "name": "crash",
            "app": app,
            "nodes": [
                {"id": "push", "type": "push", "content": {"title": "Hi"}, "next": "done"},
                {"id": "done", "type": "exit"},
            ],
        }
    )
    with worker_process(env, home / "worker-1.log") as first:
        profiles = [f"p{n:02d}" for n in range(DEVICES)]
        started = await start_run(client, scene.db, settings, definition, profile_ids=profiles)
        scene.runs.append(started)
        for _ in range(600):  # both providers hold a full window of requests
            if (
                len(scene.sims.apns.records()) >= IN_FLIGHT
                and len(scene.sims.fcm.records()) >= IN_FLIGHT
            ):
                break
            await asyncio.sleep(0.05)
        in_flight = len(scene.sims.apns.records()) + len(scene.sims.fcm.records())
        assert in_flight >= 2 * IN_FLIGHT, (home / "worker-1.log").read_text()[-2000:]
        first.send_signal(signal.SIGKILL)
        first.wait()
    scene.sims.apns.set_scenario(Scenario())
    scene.sims.fcm.set_scenario(Scenario())

    with worker_process(env, home / "worker-2.log"):
        result = await asyncio.wait_for(started.handle.result(), 120)

    ledger = await scene.ledger(started.run_id)
    assert len(ledger) == DEVICES
    assert {r.status for r in ledger} == {DeliveryStatus.DELIVERED}
    accepted = 0
    for token, provider in tokens.items():
        simulator = scene.sims.apns if provider == "apns" else scene.sims.fcm
        assert len(simulator.displayed(token)) == 1, token  # once on the device, none skipped
        accepted += len(simulator.accepted(token=token))
    duplicates = accepted - DEVICES
    # the raw duplicates are at most the requests in flight when the worker died (how many
    # there are depends on whether the dead worker had committed the answers it last got)
    assert duplicates <= in_flight
    assert result.counts["push.delivered"] == DEVICES
    print(f"crash window: {in_flight} requests in flight, {duplicates} raw duplicates")


async def test_a_worker_told_to_stop_lets_its_sends_in_flight_finish(
    tmp_path: Path, database_url: str, temporal_client: Client, sims: Simulators
) -> None:
    """SIGTERM (a deploy, a scale-down) is not a crash: the worker finishes the batch in
    hand before it exits, so the next worker has nothing to send again."""
    async with delivery_scene(
        tmp_path,
        database_url,
        temporal_client,
        sims,
        send_concurrency=IN_FLIGHT,
        delivery_heartbeat_timeout_s=2.0,
        send_timeout_s=10.0,
        cohort_size=2 * IN_FLIGHT,
    ) as scene:
        app = await scene.add_app()
        tokens: dict[str, str] = {}
        for n in range(2 * IN_FLIGHT):
            provider, token = ("apns", apns_token(n)) if n % 2 else ("fcm", fcm_token(n))
            await scene.add_device(app, f"p{n:02d}", provider, token)
            tokens[token] = provider
        queue = f"{scene.stack.settings.task_queue}-stop"
        settings = scene.stack.settings.model_copy(update={"task_queue": queue})
        env = worker_env(settings, temporal_client) | {"TIDINGS_WORKER_SHUTDOWN_GRACE_S": "15"}
        scene.sims.apns.set_scenario(Scenario(latency=FixedLatency(ms=2000)))
        scene.sims.fcm.set_scenario(Scenario(latency=FixedLatency(ms=2000)))
        definition = parse_definition(
            {
                "id": "stop",
                "name": "stop",
                "app": app,
                "nodes": [{"id": "push", "type": "push", "content": {"title": "Hi"}}],
            }
        )
        with worker_process(env, tmp_path / "worker-1.log") as first:
            profiles = [f"p{n:02d}" for n in range(2 * IN_FLIGHT)]
            started = await start_run(
                temporal_client, scene.db, settings, definition, profile_ids=profiles
            )
            scene.runs.append(started)

            def held() -> int:
                records = [*scene.sims.apns.records(), *scene.sims.fcm.records()]
                return sum(1 for r in records if r.token in tokens)

            for _ in range(600):  # every send of the batch is held by the providers
                if held() >= len(tokens):
                    break
                await asyncio.sleep(0.05)
            assert held() == len(tokens)
            first.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(first.wait, 30) == 0

        # the sends were finished and recorded before the worker exited
        ledger = await scene.ledger(started.run_id)
        assert {(r.status, r.attempts) for r in ledger} == {(DeliveryStatus.DELIVERED, 1)}
        with worker_process(env, tmp_path / "worker-2.log"):
            result = await asyncio.wait_for(started.handle.result(), 60)
        assert result.counts["push.delivered"] == len(tokens)
        for token, provider in tokens.items():
            simulator = scene.sims.apns if provider == "apns" else scene.sims.fcm
            assert len(simulator.records(token=token)) == 1, token  # never sent again


async def test_a_worker_killed_mid_batch_resends_only_what_it_had_not_recorded(
    tmp_path: Path, database_url: str, temporal_client: Client, sims: Simulators
) -> None:
    """Outcomes are committed while the batch sends: a worker killed after answering most of
    a batch has recorded them, so the next worker resends at most the requests it had in
    flight (and a group of answers not yet committed), never the batch."""
    devices = 60
    async with delivery_scene(
        tmp_path,
        database_url,
        temporal_client,
        sims,
        send_concurrency=IN_FLIGHT,
        delivery_heartbeat_timeout_s=2.0,
        cohort_size=devices,
    ) as scene:
        app = await scene.add_app()
        tokens: dict[str, str] = {}
        for n in range(devices):
            provider, token = ("apns", apns_token(n)) if n % 2 else ("fcm", fcm_token(n))
            await scene.add_device(app, f"p{n:02d}", provider, token)
            tokens[token] = provider
        queue = f"{scene.stack.settings.task_queue}-groups"
        settings = scene.stack.settings.model_copy(update={"task_queue": queue})
        env = worker_env(settings, temporal_client)
        # waves of IN_FLIGHT requests per provider, each answered after 300 ms
        scene.sims.apns.set_scenario(Scenario(latency=FixedLatency(ms=300)))
        scene.sims.fcm.set_scenario(Scenario(latency=FixedLatency(ms=300)))
        definition = parse_definition(
            {
                "id": "groups",
                "name": "groups",
                "app": app,
                "nodes": [{"id": "push", "type": "push", "content": {"title": "Hi"}}],
            }
        )

        def accepted() -> int:
            return len(scene.sims.apns.accepted()) + len(scene.sims.fcm.accepted())

        with worker_process(env, tmp_path / "worker-1.log") as first:
            profiles = [f"p{n:02d}" for n in range(devices)]
            started = await start_run(
                temporal_client, scene.db, settings, definition, profile_ids=profiles
            )
            scene.runs.append(started)
            for _ in range(1200):  # most of the batch answered, the rest still to go
                if accepted() >= devices // 2:
                    break
                await asyncio.sleep(0.02)
            answered = accepted()
            assert devices // 2 <= answered < devices, (tmp_path / "worker-1.log").read_text()
            first.send_signal(signal.SIGKILL)
            first.wait()
        scene.sims.apns.set_scenario(Scenario())
        scene.sims.fcm.set_scenario(Scenario())
        with worker_process(env, tmp_path / "worker-2.log"):
            result = await asyncio.wait_for(started.handle.result(), 120)
    assert result.counts["push.delivered"] == devices
    resent = accepted() - devices
    # in flight: IN_FLIGHT per provider; uncommitted: at most one group (50 ms of answers,
    # here less than one wave). The batch's answered half is never sent again.
    assert resent <= 2 * IN_FLIGHT < answered
    for token, provider in tokens.items():
        simulator = scene.sims.apns if provider == "apns" else scene.sims.fcm
        assert len(simulator.displayed(token)) == 1, token
