"""The embedded stack as separate processes (`tidings api`, `python worker.py`) around one
Temporal dev server started by tidings' own code: they share it; a worker killed outright
and started again rejoins it at the same address, and journeys still run to the end; a custom
event posted to the API that kept running still starts its triggered journey (the API stores
it, the restarted worker's forwarder starts the journey); the API serves throughout."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.cli.processes import (
    REPO,
    TIDINGS,
    clean_env,
    dev_servers_of,
    start,
    stop,
    wait_for_exit,
    wait_for_line,
)
from tests.harness import ADMIN_KEY, app_credentials, unique_ids
from tidings.inbound.triggers import entry_workflow_id
from tidings.journeys.validation import parse_definition
from tidings.runs.start import activate_trigger, start_run
from tidings.settings import Settings
from tidings.sim import Simulators
from tidings.store.db import Database
from tidings.store.reports import run_funnel
from tidings.temporal.client import connect
from tidings.temporal.devserver import free_port, start_dev_server

APP = "shared-stack"
WORKER_SAYS = r"worker on task queues? 'tidings'[^(]* \(Temporal (\S+), store"


def journey(run: int) -> dict[str, object]:
    return {
        "id": f"shared-stack-{run}",
        "name": "One push",
        "app": APP,
        "nodes": [{"id": "hello", "type": "push", "content": {"title": "hi", "body": "there"}}],
    }


async def test_a_worker_killed_and_restarted_rejoins_the_shared_server(
    tmp_path: Path, database_url: str, sims: Simulators
) -> None:
    home = tmp_path / "home"
    server = await asyncio.to_thread(start_dev_server, home)
    record = json.loads((home / "temporal.json").read_text())
    api_port = free_port()
    env = clean_env(
        TIDINGS_HOME=str(home),
        TIDINGS_DATABASE_URL=database_url,
        TIDINGS_ENV="development",  # PostgreSQL beside the embedded server, on purpose
        TIDINGS_ADMIN_KEY=ADMIN_KEY,
        TIDINGS_API_PORT=str(api_port),
        TIDINGS_APNS_ENDPOINT=sims.apns_endpoint,
        TIDINGS_FCM_ENDPOINT=sims.fcm_endpoint,
        TIDINGS_PROVIDER_CA_FILE=str(sims.ca_file),
        TIDINGS_LOG_LEVEL="INFO",
    )
    api_log, worker_log = tmp_path / "api.log", tmp_path / "worker.log"
    api = start([str(TIDINGS), "api"], env, api_log)
    worker = start([sys.executable, str(REPO / "worker.py")], env, worker_log)
    restarted = None
    settings = Settings(_env_file=None, home=home, database_url=database_url, admin_key=ADMIN_KEY)
    db = Database(database_url)
    try:
        first = await wait_for_line(worker, worker_log, WORKER_SAYS)
        assert first.group(1) == server.address
        base = f"http://127.0.0.1:{api_port}"
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
            await _until_healthy(http, api)
            token = await _seed(http, sims)
            client = await connect(server.address)

            async def run_to_the_end(number: int) -> None:
                definition = parse_definition(journey(number))
                started = await start_run(client, db, settings, definition)
                await asyncio.wait_for(started.handle.result(), 120)
                async with db.read() as session:
                    funnel = await run_funnel(session, started.run_id)
                assert funnel.delivered == 1, funnel
                [pushed] = [r for r in sims.apns.accepted(token=token) if r.tracking_id]
                sims.reset()
                assert pushed.token == token

            await run_to_the_end(1)

            worker.send_signal(signal.SIGKILL)
            assert await wait_for_exit(worker) == -signal.SIGKILL
            restarted = start([sys.executable, str(REPO / "worker.py")], env, worker_log)
            again = await wait_for_line(restarted, worker_log, WORKER_SAYS, after=first.end() + 1)
            assert again.group(1) == server.address
            # the same server: not moved, not restarted, and the only one of its home
            assert json.loads((home / "temporal.json").read_text()) == record
            assert [p.pid for p in dev_servers_of(home)] == [server.pid]

            await run_to_the_end(2)

            # a custom event posted to the API that kept running starts its triggered journey
            # through the restarted worker's forwarder
            trigger = parse_definition(journey(3) | {"trigger": {"event": "signed_up"}})
            await activate_trigger(db, trigger)
            body = {"profile_id": "ada", "name": "signed_up", "event_id": "after-restart"}
            posted = await http.post("/v1/events", json=body)
            assert posted.status_code == 202, posted.text
            entry = client.get_workflow_handle(entry_workflow_id(trigger.id, "ada"))
            outcome = await _forwarded(http, "after-restart")
            assert outcome["started"] == [trigger.id]
            await asyncio.wait_for(entry.result(), 120)
            [pushed] = [r for r in sims.apns.accepted(token=token) if r.tracking_id]
            assert pushed.token == token

            # the API kept serving through it all
            assert api.poll() is None
            answer = await http.get(f"/v1/apps/{APP}")
            assert answer.status_code == 200, answer.text
        assert "using the embedded Temporal dev server running at" in worker_log.read_text()
    finally:
        await db.dispose()
        for process in (api, worker, restarted):
            if process is not None:
                await asyncio.to_thread(stop, process)
        await asyncio.to_thread(server.stop)


async def _forwarded(http: httpx.AsyncClient, event_id: str) -> dict[str, object]:
    """What the forwarder did with a stored event, once it has."""
    for _ in range(600):
        answer = (await http.get(f"/v1/events/{event_id}")).json()
        if answer["forwarding"] == "forwarded":
            outcome: dict[str, object] = answer["outcome"]
            return outcome
        await asyncio.sleep(0.1)
    raise AssertionError(f"event {event_id} never forwarded")


async def _until_healthy(http: httpx.AsyncClient, api: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        assert api.poll() is None, "`tidings api` exited"
        try:
            if (await http.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("`tidings api` never answered /healthz")


async def _seed(http: httpx.AsyncClient, sims: Simulators) -> str:
    """An app the simulators accept, and one profile with one iOS device: its token."""
    team, key, project = unique_ids()
    credentials = app_credentials(sims, team_id=team, key_id=key, project_id=project)
    created = await http.post("/v1/apps", json={"id": APP, "name": "Shared"} | credentials)
    assert created.status_code == 201, created.text
    assert (await http.put("/v1/profiles/ada", json={"attributes": {}})).status_code in (200, 201)
    token = "ab" * 32
    device = {"profile_id": "ada", "create_profile": True, "provider": "apns", "token": token}
    answer = await http.post(f"/v1/apps/{APP}/devices", json=device)
    assert answer.status_code in (200, 201), answer.text
    return token


async def test_a_worker_that_started_the_server_leaves_it_running_when_it_stops(
    tmp_path: Path, database_url: str
) -> None:
    """No server yet: the worker starts one, and a graceful stop of the worker (SIGTERM, as
    a supervisor restarting it sends) leaves it serving, for the next worker at the same
    address, until `tidings down`."""
    home = tmp_path / "home"
    env = clean_env(
        TIDINGS_HOME=str(home),
        TIDINGS_DATABASE_URL=database_url,
        TIDINGS_ENV="development",
        TIDINGS_LOG_LEVEL="INFO",
    )
    log = tmp_path / "worker.log"
    worker = start([sys.executable, str(REPO / "worker.py")], env, log)
    try:
        first = await wait_for_line(worker, log, WORKER_SAYS)
        record = json.loads((home / "temporal.json").read_text())
        assert record["address"] == first.group(1)
        os.killpg(worker.pid, signal.SIGTERM)
        assert await wait_for_exit(worker) == 0
        assert [p.pid for p in dev_servers_of(home)] == [record["pid"]]

        worker = start([sys.executable, str(REPO / "worker.py")], env, log)
        again = await wait_for_line(worker, log, WORKER_SAYS, after=first.end() + 1)
        assert again.group(1) == record["address"]
        assert json.loads((home / "temporal.json").read_text()) == record
    finally:
        await asyncio.to_thread(stop, worker)
        down = await asyncio.to_thread(
            subprocess.run, [str(TIDINGS), "down"], env=env, capture_output=True, text=True
        )
    assert down.returncode == 0, down.stderr
    assert f"stopped Temporal's dev server at {record['address']}" in down.stdout
    assert dev_servers_of(home) == []
