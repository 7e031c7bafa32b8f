"""A journey scene on the real stack: Temporal's dev server, a worker with the interactions
forwarder beside it (interactions and custom events), the API over ASGI, the store
on SQLite or PostgreSQL, and the simulators. Helpers add profiles with devices, start
journeys and read the ledger."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select
from temporalio.client import Client

from tests.harness import Stack, app_credentials, make_settings, real_stack, unique_ids
from tidings.inbound.forwarder import ForwarderOptions, forwarding
from tidings.inbound.triggers import EntryOptions
from tidings.journeys import parse_definition
from tidings.journeys.model import JourneyDefinition
from tidings.runs.start import AudienceChoice, StartedRun, start_run
from tidings.sim import Simulators
from tidings.store.models import Delivery, JourneyEvent
from workflows.contracts import EngineOptions, RunResult

APP = "journeys"
_tokens = itertools.count(1)
# A deadline for polling what the stack does in the background; never a timing assertion.
PATIENCE_S = 30.0
_FORWARD_POLL = timedelta(milliseconds=100)


def apns_token() -> str:
    return f"{next(_tokens) + 10_000:064x}"


def fcm_token() -> str:
    n = next(_tokens)
    return f"fcm-{n}:APA91b{n:040d}"


def journey(*nodes: dict[str, Any], **settings: Any) -> JourneyDefinition:
    """A valid journey of the scene's app (an id unique to the test unless given)."""
    data: dict[str, Any] = {
        "id": settings.pop("id", f"j-{uuid.uuid4().hex[:8]}"),
        "name": "Journey under test",
        "app": APP,
        "nodes": list(nodes),
    }
    return parse_definition(data | settings)


def push(node_id: str, body: str = "hello", **fields: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "push", "content": {"title": node_id, "body": body}, **fields}


@dataclass
class Scene:
    stack: Stack
    sims: Simulators
    client: Client

    @property
    def db(self) -> Any:
        return self.stack.db

    async def profile(
        self,
        profile_id: str,
        *,
        devices: tuple[str, ...] = ("apns",),
        attributes: dict[str, Any] | None = None,
        **fields: Any,
    ) -> list[str]:
        """A profile with one device per provider listed; returns the tokens."""
        body = {"attributes": attributes or {}} | fields
        answer = await self.stack.http.put(f"/v1/profiles/{profile_id}", json=body)
        assert answer.status_code in (200, 201), answer.text
        tokens = []
        for provider in devices:
            token = apns_token() if provider == "apns" else fcm_token()
            device = {
                "profile_id": profile_id,
                "create_profile": True,
                "provider": provider,
                "token": token,
            }
            answer = await self.stack.http.post(f"/v1/apps/{APP}/devices", json=device)
            assert answer.status_code in (200, 201), answer.text
            tokens.append(token)
        return tokens

    async def start(
        self,
        definition: JourneyDefinition,
        profiles: list[str] | None = None,
        *,
        audience: AudienceChoice | None = None,
        options: EngineOptions | None = None,
    ) -> StartedRun:
        return await start_run(
            self.client,
            self.db,
            self.stack.settings,
            definition,
            profile_ids=profiles,
            audience=audience,
            options=options,
        )

    async def finish(self, started: StartedRun) -> RunResult:
        return await asyncio.wait_for(started.handle.result(), timeout=PATIENCE_S * 2)

    async def ledger(self, run_id: str) -> list[Delivery]:
        async with self.db.read() as session:
            rows = await session.exec(
                select(Delivery).where(col(Delivery.run_id) == run_id).order_by(col(Delivery.id))
            )
            return list(rows.all())

    async def journey_events(self, run_id: str) -> list[JourneyEvent]:
        async with self.db.read() as session:
            rows = await session.exec(
                select(JourneyEvent)
                .where(col(JourneyEvent.run_id) == run_id)
                .order_by(col(JourneyEvent.id))
            )
            return list(rows.all())

    async def until(
        self, check: Callable[[], Awaitable[bool]], what: str, patience: float = PATIENCE_S
    ) -> None:
        """Poll until ``check`` holds; fail naming ``what`` when it never does."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        while not await check():
            if loop.time() > deadline:
                pytest.fail(f"never happened: {what}")
            await asyncio.sleep(0.1)

    async def delivered(
        self, run_id: str, node_id: str, profile_id: str, *, visit: int | None = None
    ) -> Delivery:
        """Wait for the profile's push of that node (of that visit of it, in a loop) to be
        delivered; return its row."""
        found: list[Delivery] = []

        async def check() -> bool:
            rows = await self.ledger(run_id)
            found[:] = [
                r
                for r in rows
                if r.node_id == node_id
                and r.profile_id == profile_id
                and r.status == "delivered"
                and (visit is None or r.visit == visit)
            ]
            return bool(found)

        nth = "" if visit is None else f" (visit {visit})"
        await self.until(check, f"{profile_id} delivered at {node_id}{nth}")
        return found[0]

    async def interact(self, row: Delivery, kind: str) -> None:
        """What a device does: report an interaction with a push through the API."""
        answer = await self.stack.http.post(
            "/v1/interactions", json={"tracking_id": row.tracking_id, "kind": kind}
        )
        assert answer.status_code == 202, answer.text

    async def event(
        self, profile_id: str, name: str, event_id: str | None = None
    ) -> dict[str, Any]:
        answer = await self.stack.http.post(
            "/v1/events",
            json={
                "profile_id": profile_id,
                "name": name,
                "event_id": event_id or uuid.uuid4().hex,
                "properties": {"source": "test"},
            },
        )
        assert answer.status_code == 202, answer.text
        return await self.forwarded(answer.json()["event_id"])

    async def forwarded(self, event_id: str) -> dict[str, Any]:
        """Wait for the forwarder to have told the journeys of a stored event; what it did
        (``started``: journey ids, ``signalled``: how many running journeys got it,
        ``skipped``, and ``forwarded`` as the API shows it)."""
        found: dict[str, Any] = {}

        async def check() -> bool:
            answer = await self.stack.http.get(f"/v1/events/{event_id}")
            assert answer.status_code == 200, answer.text
            found.update(answer.json())
            return bool(found["forwarding"] == "forwarded")

        await self.until(check, f"event {event_id} forwarded")
        outcome: dict[str, Any] = found["outcome"]
        forwarded = found["forwarding"] == "forwarded"
        return outcome | {"signalled": len(outcome["signalled"]), "forwarded": forwarded}


SceneFactory = Callable[..., AbstractAsyncContextManager[Scene]]


@pytest.fixture
def scene(
    tmp_path: Path,
    database_url: str,
    temporal_client: Client,
    sims: Simulators,
) -> SceneFactory:
    """``async with scene(**settings) as s``: the stack with its app, on this test's store."""

    @asynccontextmanager
    async def make(**overrides: Any) -> AsyncIterator[Scene]:
        settings = make_settings(tmp_path, database_url, sims, **overrides)
        team, key, project = unique_ids()
        async with (
            real_stack(settings, temporal_client) as stack,
            forwarding(
                temporal_client,
                stack.db,
                ForwarderOptions(idle_interval=_FORWARD_POLL),
                EntryOptions.of(stack.settings),
            ),
        ):
            body = {"id": APP, "name": "Journeys"} | app_credentials(
                sims, team_id=team, key_id=key, project_id=project
            )
            answer = await stack.http.post("/v1/apps", json=body)
            assert answer.status_code == 201, answer.text
            yield Scene(stack, sims, temporal_client)

    return make
