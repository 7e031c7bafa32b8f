"""The one scene of the tests on the real stack: Temporal's dev server, a worker on a task
queue of its own, the API over ASGI, the store on SQLite or PostgreSQL and the simulators;
with the interactions forwarder beside the worker, and the webhook dispatcher, when a test
asks for them.

A test builds it with ``scene_on(...)`` (or a directory's fixture that does), and then:

- sets up: ``credentials``, ``add_app``, ``add_device``, ``profile``;
- runs: ``start_push``/``run_push`` (a one-push journey of any app, for the delivery
  tests), ``start_journey``/``finish`` (any journey); ``start_ahead`` and
  ``start_in_window`` for a journey that depends on the wall clock (its window computed
  when the run starts and checked once it has started, see ``in_a_fresh_window``);
- looks: ``ledger``, ``journey_events``, ``device``, ``app``, ``senders``, ``delivered``,
  ``until``, ``forwarded``; acts as a device or a client: ``interact``, ``event``;
- webhooks: ``subscribe``, ``waiting``, and ``dispatcher``.

Every run the scene starts is terminated when the scene closes, if it still runs, so no
run outlives its test on the shared dev server.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

import pytest
from sqlmodel import col, select
from temporalio.client import Client

from activities.delivery import DeliveryActivities, DeliveryPolicy
from tests.harness import BUNDLE_ID, Stack, make_settings, real_stack, unique_ids
from tidings.egress import EgressPolicy
from tidings.inbound.forwarder import ForwarderOptions, forwarding
from tidings.inbound.triggers import EntryOptions
from tidings.journeys import parse_definition
from tidings.journeys.model import JourneyDefinition
from tidings.push.registry import AppSenders
from tidings.runs.start import AudienceChoice, StartedRun, start_run
from tidings.sim import Simulators
from tidings.store.apps import credentials_generation, open_credentials
from tidings.store.db import Database
from tidings.store.models import App, Delivery, Device, JourneyEvent
from tidings.webhooks.dispatcher import Dispatcher, DispatcherOptions, dispatching
from workflows.contracts import EngineOptions, RunResult

# The app every journey of ``journey()`` belongs to (``scene_on(journeys_app=True)`` adds it).
APP = "journeys"
# A deadline for polling what the stack does in the background; never a timing assertion.
PATIENCE_S = 30.0
_FORWARD_POLL = timedelta(milliseconds=100)
# Short backoffs keep retries quick; a short retry horizon keeps a misbehaving row from
# hanging (a test of the horizon itself sets a shorter one).
FAST_DELIVERY: dict[str, Any] = {
    "delivery_initial_backoff_s": 0.05,
    "delivery_max_backoff_s": 1.0,
    "delivery_retry_horizon_s": 60.0,
    "delivery_heartbeat_timeout_s": 5.0,
    # long enough for a loaded shared machine (the in-process simulators share the test's
    # event loop); the tables' timeout row waits it out
    "send_timeout_s": 10.0,
}
# the webhook dispatcher's retries come back at once: a test waits on what happens, never
# on the clock
FAST_WEBHOOKS = DispatcherOptions(
    idle_interval=timedelta(milliseconds=50),
    initial_backoff=timedelta(milliseconds=20),
    max_backoff=timedelta(milliseconds=100),
    max_failures=10_000,
)
Dispatching = Literal["background", "by hand"]
_numbers = itertools.count(1)
_tokens = itertools.count(1)
Window = TypeVar("Window")
Started = TypeVar("Started")
# how often a start whose wall-clock window passed meanwhile is tried again
ATTEMPTS = 3


def apns_token(n: int) -> str:
    """The APNs token numbered ``n`` (the same ``n``, the same token)."""
    return f"{n:064x}"


def fcm_token(n: int) -> str:
    """The FCM token numbered ``n`` (the same ``n``, the same token)."""
    return f"fcm-{n}:APA91b{n:040d}"


def fresh_apns_token() -> str:
    """An APNs token no other call returns (numbered apart from ``apns_token``'s)."""
    return apns_token(next(_tokens) + 10_000)


def fresh_fcm_token() -> str:
    """An FCM token no other call returns."""
    return fcm_token(next(_tokens))


def journey(*nodes: dict[str, Any], **settings: Any) -> JourneyDefinition:
    """A valid journey of ``APP`` (an id unique to the test unless given)."""
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
class Credentials:
    team_id: str
    key_id: str
    project_id: str
    body: dict[str, Any]


@dataclass
class Scene:
    stack: Stack
    sims: Simulators
    client: Client
    dispatcher: Dispatcher | None = None
    runs: list[StartedRun] = field(default_factory=list)

    @property
    def db(self) -> Database:
        return self.stack.db

    # -- setting up -------------------------------------------------------------------

    def credentials(
        self, *, topics: list[str] | None = None, account: dict[str, str] | None = None
    ) -> Credentials:
        """A fresh APNs key (and team) and, unless one is given, a fresh FCM service account,
        as the API takes them."""
        team, key, project = unique_ids()
        signing_key = self.sims.apns.create_signing_key(
            team_id=team, key_id=key, topics=topics or [BUNDLE_ID]
        )
        if account is None:
            account = self.sims.fcm.create_service_account(project_id=project)
        project = account["project_id"]
        body = {
            "apns": {
                "auth": "token",
                "team_id": team,
                "key_id": key,
                "bundle_id": BUNDLE_ID,
                "environment": "production",
                "signing_key": signing_key,
            },
            "fcm": {"service_account": json.dumps(account)},
        }
        return Credentials(team, key, project, body)

    async def add_app(
        self, app_id: str | None = None, credentials: Credentials | None = None, **extra: Any
    ) -> str:
        app_id = app_id or f"app-{next(_numbers)}"
        body = {"id": app_id, "name": app_id} | (credentials or self.credentials()).body | extra
        answer = await self.stack.http.post("/v1/apps", json=body)
        assert answer.status_code == 201, answer.text
        return app_id

    async def add_device(
        self,
        app_id: str,
        profile_id: str,
        provider: str,
        token: str,
        *,
        environment: str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> int:
        if attributes is not None:
            put = await self.stack.http.put(
                f"/v1/profiles/{profile_id}", json={"attributes": attributes}
            )
            assert put.status_code == 200, put.text
        body: dict[str, Any] = {
            "profile_id": profile_id,
            "create_profile": True,
            "provider": provider,
            "token": token,
        }
        if environment:
            body["environment"] = environment
        answer = await self.stack.http.post(f"/v1/apps/{app_id}/devices", json=body)
        assert answer.status_code == 200, answer.text
        return int(answer.json()["id"])

    async def profile(
        self,
        profile_id: str,
        *,
        devices: tuple[str, ...] = ("apns",),
        attributes: dict[str, Any] | None = None,
        app_id: str = APP,
        **fields: Any,
    ) -> list[str]:
        """A profile with one fresh device of ``app_id`` per provider listed; returns the
        tokens."""
        body = {"attributes": attributes or {}} | fields
        answer = await self.stack.http.put(f"/v1/profiles/{profile_id}", json=body)
        assert answer.status_code in (200, 201), answer.text
        tokens = []
        for provider in devices:
            token = fresh_apns_token() if provider == "apns" else fresh_fcm_token()
            device = {
                "profile_id": profile_id,
                "create_profile": True,
                "provider": provider,
                "token": token,
            }
            answer = await self.stack.http.post(f"/v1/apps/{app_id}/devices", json=device)
            assert answer.status_code in (200, 201), answer.text
            tokens.append(token)
        return tokens

    # -- running ----------------------------------------------------------------------

    async def start_push(
        self,
        app_id: str,
        profiles: list[str],
        *,
        content: dict[str, Any] | None = None,
        ttl: str | None = None,
        journey_id: str | None = None,
    ) -> StartedRun:
        """Start a journey of ``app_id`` that is one push node and an exit."""
        push_node: dict[str, Any] = {
            "id": "push",
            "type": "push",
            "content": content or {"title": "Hi {{ first_name }}", "body": "news"},
            "next": "done",
        }
        if ttl is not None:
            push_node["ttl"] = ttl
        definition = parse_definition(
            {
                "id": journey_id or f"j{next(_numbers)}",
                "name": "delivery test",
                "app": app_id,
                "nodes": [push_node, {"id": "done", "type": "exit"}],
            }
        )
        return await self.start_journey(definition, profiles)

    async def run_push(
        self, app_id: str, profiles: list[str], **options: Any
    ) -> tuple[str, RunResult]:
        """``start_push`` and wait for the run's result; returns its run id and result."""
        started = await self.start_push(app_id, profiles, **options)
        return started.run_id, await started.handle.result()

    async def start_journey(
        self,
        definition: JourneyDefinition,
        profiles: list[str] | None = None,
        *,
        audience: AudienceChoice | None = None,
        options: EngineOptions | None = None,
    ) -> StartedRun:
        started = await start_run(
            self.client,
            self.db,
            self.stack.settings,
            definition,
            profile_ids=profiles,
            audience=audience,
            options=options,
        )
        self.runs.append(started)
        return started

    async def finish(self, started: StartedRun) -> RunResult:
        """Wait for a started run's result (failing after twice the scene's patience)."""
        return await asyncio.wait_for(started.handle.result(), timeout=PATIENCE_S * 2)

    async def start_in_window(
        self,
        window: Callable[[datetime], Window],
        start: Callable[[Window], Awaitable[StartedRun]],
        *,
        still_holds: Callable[[Window, datetime], bool],
    ) -> tuple[StartedRun, Window]:
        """Start a run whose journey depends on the wall clock, its window computed when
        the run starts and checked again once it has started (``in_a_fresh_window``). A
        run whose window passed meanwhile is terminated, the simulators forget what it
        sent (and any scenario: a test sets its scenarios inside ``start``), and the run is
        started anew."""
        return await in_a_fresh_window(window, start, still_holds=still_holds, undo=self._undo)

    async def _undo(self, started: StartedRun) -> None:
        await _stop(started)
        self.sims.reset()

    async def start_ahead(
        self, lead: timedelta, start: Callable[[datetime], Awaitable[StartedRun]]
    ) -> tuple[StartedRun, datetime]:
        """Start a run whose journey names a wall-clock instant ``lead`` ahead (the end of
        its quiet hours, a wait's time of day): ``start(at)`` builds the journey with ``at``
        and starts it; when less than half of ``lead`` is left once it has started (a slow
        machine), the run is terminated and started again with twice the lead, so no
        profile is ever moved to the same time tomorrow."""
        leads = iter([lead * 2**n for n in range(ATTEMPTS)])
        return await self.start_in_window(
            lambda now: now + next(leads),
            start,
            still_holds=lambda at, now: now <= at - lead / 2,
        )

    # -- looking ----------------------------------------------------------------------

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

    async def device(self, device_id: int) -> Device:
        async with self.db.read() as session:
            device = await session.get(Device, device_id)
            assert device is not None
            return device

    async def app(self, app_id: str) -> App:
        async with self.db.read() as session:
            app = await session.get(App, app_id)
            assert app is not None
            return app

    async def senders(self, app_id: str) -> AppSenders:
        """The worker's own senders for the app (built on first use, as an activity would)."""
        app = await self.app(app_id)
        secrets = self.stack.resources.secrets

        async def load() -> Any:
            return open_credentials(app, secrets)

        generation = credentials_generation(app, secrets)
        return await self.stack.resources.senders.get(app.id, generation, load)

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

    # -- acting as a device or a client -----------------------------------------------

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

    # -- webhooks ---------------------------------------------------------------------

    async def subscribe(self, url: str, *types: str, **fields: Any) -> dict[str, Any]:
        answer = await self.stack.http.post(
            "/v1/webhooks", json={"url": url, "event_types": list(types)} | fields
        )
        assert answer.status_code == 201, answer.text
        created: dict[str, Any] = answer.json()
        return created

    async def waiting(self, endpoint_id: str) -> dict[str, int]:
        answer = await self.stack.http.get(f"/v1/webhooks/{endpoint_id}")
        assert answer.status_code == 200, answer.text
        counts: dict[str, int] = answer.json()["deliveries"]
        return counts


def now_utc() -> datetime:
    return datetime.now(UTC)


async def in_a_fresh_window(
    window: Callable[[datetime], Window],
    start: Callable[[Window], Awaitable[Started]],
    *,
    still_holds: Callable[[Window, datetime], bool],
    undo: Callable[[Started], Awaitable[None]],
    attempts: int = ATTEMPTS,
) -> tuple[Started, Window]:
    """Start something that depends on the wall clock (a run, a schedule) with its window
    computed when it starts, never earlier, and checked again once it has started: a slow
    machine cannot move a profile to another hour, or to tomorrow, between the two.

    ``window(now)`` computes what the test needs of the clock (an instant ahead, an hour
    in a zone); ``start(w)`` sets up what depends on it and starts (it may run again, so
    what does not depend on the clock is set up before); ``still_holds(w, now)``, with the
    clock read after the start, says whether it still falls in that window. When it does
    not, ``undo`` takes the start back and the whole is done again with a fresh window."""
    for _ in range(attempts):
        fresh = window(now_utc())
        started = await start(fresh)
        if still_holds(fresh, now_utc()):
            return started, fresh
        await undo(started)
    pytest.fail(f"the clock moved past every window in {attempts} attempts")


@asynccontextmanager
async def scene_on(
    home: Path,
    database_url: str,
    client: Client,
    sims: Simulators,
    *,
    forwarder: bool = False,
    journeys_app: bool = False,
    webhooks: Dispatching | None = None,
    webhook_options: DispatcherOptions = FAST_WEBHOOKS,
    **settings: Any,
) -> AsyncIterator[Scene]:
    """The scene on a store, a Temporal client and the simulators, with ``settings`` over
    the tests' defaults (tests.harness.make_settings).

    ``forwarder``: the interactions forwarder runs beside the worker (polling often).
    ``journeys_app``: the app ``APP`` exists, with fresh credentials.
    ``webhooks``: the webhook dispatcher runs in the ``"background"``, or is only built
    (``"by hand"``: the test calls ``scene.dispatcher.dispatch_once()``); loopback is then
    an allowed callback unless ``settings`` say otherwise."""
    if webhooks is not None:
        settings.setdefault("callback_allowed", ["127.0.0.1"])
    options = make_settings(home, database_url, sims, **settings)
    async with contextlib.AsyncExitStack() as resources:
        stack = await resources.enter_async_context(real_stack(options, client))
        if forwarder:
            await resources.enter_async_context(
                forwarding(
                    client,
                    stack.db,
                    ForwarderOptions(idle_interval=_FORWARD_POLL),
                    EntryOptions.of(stack.settings),
                )
            )
        dispatcher: Dispatcher | None = None
        policy = EgressPolicy.from_settings(options)
        if webhooks == "background":
            dispatcher = await resources.enter_async_context(
                dispatching(stack.db, stack.resources.secrets, policy, webhook_options)
            )
        elif webhooks == "by hand":
            dispatcher = Dispatcher(stack.db, stack.resources.secrets, policy, webhook_options)
            resources.push_async_callback(dispatcher.close)
        scene = Scene(stack, sims, client, dispatcher)
        if journeys_app:
            await scene.add_app(APP, name="Journeys")
        try:
            yield scene
        finally:
            for started in scene.runs:
                await _stop(started)


SceneFactory = Callable[..., contextlib.AbstractAsyncContextManager[Scene]]


def delivery_scene(
    home: Path, database_url: str, client: Client, sims: Simulators, **settings: Any
) -> contextlib.AbstractAsyncContextManager[Scene]:
    """The scene of the delivery tests: fast retries (``FAST_DELIVERY``), no forwarder,
    no app until the test adds its own."""
    return scene_on(home, database_url, client, sims, **(FAST_DELIVERY | settings))


def journey_scene(
    home: Path, database_url: str, client: Client, sims: Simulators, **settings: Any
) -> contextlib.AbstractAsyncContextManager[Scene]:
    """The scene of the journey tests: the forwarder beside the worker, and ``APP``."""
    return scene_on(home, database_url, client, sims, forwarder=True, journeys_app=True, **settings)


def direct_delivery(scene: Scene) -> DeliveryActivities:
    """The worker's delivery activities over the scene's resources, with short backoffs, for
    a test that runs an attempt itself (ActivityEnvironment) rather than through a run."""
    resources = scene.stack.resources
    return DeliveryActivities(
        resources.db,
        resources.senders,
        resources.secrets,
        DeliveryPolicy(
            stale_after_days=scene.stack.settings.stale_after_days,
            initial_backoff=timedelta(seconds=0.05),
            max_backoff=timedelta(seconds=1),
            heartbeat_every=timedelta(seconds=1),
        ),
    )


async def _stop(started: StartedRun) -> None:
    """Leave no run behind on the shared dev server (a test may stop before its run ends)."""
    description = await started.handle.describe()
    if description.status is not None and description.status.name == "RUNNING":
        await started.handle.terminate("test finished")
