"""A delivery scene: the real stack (Temporal dev server, worker, API, store on SQLite or
PostgreSQL) and the simulators, with helpers to add apps and devices and run one push node."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlmodel import col, select
from temporalio.client import Client

from activities.delivery import DeliveryActivities, DeliveryPolicy
from tests.conftest import POSTGRES_ADMIN_URL
from tests.harness import BUNDLE_ID, Stack, make_settings, real_stack, unique_ids
from tidings.journeys import parse_definition
from tidings.push.registry import AppSenders
from tidings.runs.start import StartedRun, start_run
from tidings.sim import Simulators
from tidings.store.apps import credentials_generation, open_credentials
from tidings.store.db import Database
from tidings.store.models import App, Delivery, Device
from workflows.contracts import RunResult

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
_numbers = itertools.count(1)


def apns_token(n: int) -> str:
    return f"{n:064x}"


def fcm_token(n: int) -> str:
    return f"fcm-{n}:APA91b{n:040d}"


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
    runs: list[StartedRun] = field(default_factory=list)

    @property
    def db(self) -> Database:
        return self.stack.db

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

    async def start(
        self,
        app_id: str,
        profiles: list[str],
        *,
        content: dict[str, Any] | None = None,
        ttl: str | None = None,
        journey_id: str | None = None,
    ) -> StartedRun:
        push: dict[str, Any] = {
            "id": "push",
            "type": "push",
            "content": content or {"title": "Hi {{ first_name }}", "body": "news"},
            "next": "done",
        }
        if ttl is not None:
            push["ttl"] = ttl
        definition = parse_definition(
            {
                "id": journey_id or f"j{next(_numbers)}",
                "name": "delivery test",
                "app": app_id,
                "nodes": [push, {"id": "done", "type": "exit"}],
            }
        )
        started = await start_run(
            self.client, self.db, self.stack.settings, definition, profile_ids=profiles
        )
        self.runs.append(started)
        return started

    async def run(self, app_id: str, profiles: list[str], **options: Any) -> tuple[str, RunResult]:
        started = await self.start(app_id, profiles, **options)
        return started.run_id, await started.handle.result()

    async def ledger(self, run_id: str) -> list[Delivery]:
        async with self.db.read() as session:
            rows = await session.exec(
                select(Delivery).where(col(Delivery.run_id) == run_id).order_by(col(Delivery.id))
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


@asynccontextmanager
async def scene_on(
    home: Path, database_url: str, client: Client, sims: Simulators, **settings: Any
) -> AsyncIterator[Scene]:
    options = FAST_DELIVERY | settings
    async with real_stack(make_settings(home, database_url, sims, **options), client) as stack:
        scene = Scene(stack, sims, client)
        try:
            yield scene
        finally:
            for started in scene.runs:
                await _stop(started)


@pytest.fixture
async def scene(
    tmp_path: Path, database_url: str, temporal_client: Client, sims: Simulators
) -> AsyncIterator[Scene]:
    async with scene_on(tmp_path, database_url, temporal_client, sims) as scene:
        yield scene


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def module_database_url(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    sqlite_template: Path,
) -> Iterator[str]:
    """A migrated store shared by one module's tests (the root fixture is per test)."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("module-store") / "tidings.db"
        path.write_bytes(sqlite_template.read_bytes())
        yield f"sqlite:///{path}"
        return
    template = request.getfixturevalue("postgres_template")
    name = f"tidings_m_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    yield f"{base}/{name}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _stop(started: StartedRun) -> None:
    """Leave no run behind on the shared dev server (a test may stop before its run ends)."""
    description = await started.handle.describe()
    if description.status is not None and description.status.name == "RUNNING":
        await started.handle.terminate("test finished")
