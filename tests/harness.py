"""Building a real tidings worker and API against a test's store, Temporal and simulators."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from tidings.api.app import create_app
from tidings.api.keys import admin_key
from tidings.settings import Settings
from tidings.sim import Simulators
from tidings.stack import running
from tidings.store.db import Database
from tidings.worker.resources import WorkerResources, build_worker, worker_resources

ADMIN_KEY = "test-admin-key"
BUNDLE_ID = "com.example.tidings.test"


def make_settings(
    home: Path, database_url: str, sims: Simulators | None, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "home": home,
        "database_url": database_url,
        "admin_key": ADMIN_KEY,
        "task_queue": f"tidings-test-{uuid.uuid4().hex[:8]}",
        "delivery_initial_backoff_s": 0.2,
        "delivery_max_backoff_s": 2.0,
        "delivery_heartbeat_timeout_s": 10.0,
        "send_timeout_s": 5.0,
        "worker_shutdown_grace_s": 2.0,
    }
    if sims is not None:
        values.update(
            apns_endpoint=sims.apns_endpoint,
            fcm_endpoint=sims.fcm_endpoint,
            provider_ca_file=sims.ca_file,
        )
    else:
        # no simulators to check credentials against: a test must never reach Apple or Google
        values["check_credentials_on_save"] = False
    values.update(overrides)
    return Settings(**values)


@dataclass
class Stack:
    settings: Settings
    client: Client
    resources: WorkerResources
    http: httpx.AsyncClient

    @property
    def db(self) -> Database:
        return self.resources.db


@asynccontextmanager
async def real_stack(settings: Settings, client: Client) -> AsyncIterator[Stack]:
    """A worker on its own task queue, and the API served in-process over ASGI."""
    async with worker_resources(settings) as resources:
        worker = build_worker(client, settings, resources)
        app = create_app(settings, resources.db, temporal=client)
        transport = httpx.ASGITransport(app=app)
        async with (
            running(worker),
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=transport,
                base_url="http://tidings.test",
                headers={"Authorization": f"Bearer {admin_key(settings)}"},
            ) as http,
        ):
            yield Stack(settings, client, resources, http)


def app_credentials(
    sims: Simulators, *, team_id: str, key_id: str, project_id: str
) -> dict[str, Any]:
    """Fresh provider credentials the simulators accept, as the API takes them."""
    signing_key = sims.apns.create_signing_key(team_id=team_id, key_id=key_id, topics=[BUNDLE_ID])
    account = sims.fcm.create_service_account(project_id=project_id)
    return {
        "apns": {
            "auth": "token",
            "team_id": team_id,
            "key_id": key_id,
            "bundle_id": BUNDLE_ID,
            "environment": "production",
            "signing_key": signing_key,
        },
        "fcm": {"service_account": json.dumps(account)},
    }


def unique_ids() -> tuple[str, str, str]:
    """A team id, key id and project id no other test uses (the APNs simulator enforces
    Apple's token-refresh limit per team)."""
    tail = uuid.uuid4().hex[:8].upper()
    return f"T{tail}X", f"K{tail}Y", f"proj-{tail.lower()}"
