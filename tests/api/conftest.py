"""The API over ASGI on a test's store (SQLite and PostgreSQL), with helpers to act as the
admin or as one app through its own API key, and to put pushes in the send ledger."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.harness import ADMIN_KEY, make_settings
from tidings.api.app import create_app
from tidings.settings import Settings
from tidings.sim import Simulators
from tidings.store.db import Database
from tidings.store.ledger import PlannedSend, open_sends, send_key, tracking_id_for
from tidings.store.types import utcnow

BASE_URL = "http://tidings.test"


@dataclass
class Api:
    """The admin's client, and a way to get a client holding one app's key."""

    app: FastAPI
    admin: httpx.AsyncClient
    settings: Settings
    db: Database

    def client(self, key: str | None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url=BASE_URL, headers=headers
        )

    async def create_app(self, app_id: str) -> str:
        """A new app and one API key of it; returns the key."""
        answer = await self.admin.post("/v1/apps", json={"id": app_id, "name": app_id.title()})
        assert answer.status_code == 201, answer.text
        key = await self.admin.post(f"/v1/apps/{app_id}/keys", json={"name": "backend"})
        assert key.status_code == 201, key.text
        return str(key.json()["key"])


@asynccontextmanager
async def serving(
    home: Path, db: Database, sims: Simulators | None = None, **overrides: Any
) -> AsyncIterator[Api]:
    """The API on ``db`` with these settings (pointed at ``sims`` when given), its lifespan
    running, and the admin's client."""
    settings = make_settings(home, db.url, sims, stale_after_days=30, **overrides)
    app = create_app(settings, db)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url=BASE_URL,
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        ) as admin,
    ):
        yield Api(app, admin, settings, db)


@pytest.fixture
async def api(tmp_path: Path, db: Database) -> AsyncIterator[Api]:
    async with serving(tmp_path, db) as served:
        yield served


async def sent_push(
    db: Database,
    *,
    app_id: str,
    profile_id: str,
    device_id: int | None = None,
    workflow_id: str = "run-test/cohort-000001",
    node_id: str = "hello",
) -> str:
    """A delivered push in the ledger, as the delivery activity writes it; its tracking id."""
    key = send_key(workflow_id, node_id, 0, device_id)
    async with db.write() as session:
        rows = await open_sends(
            session,
            run_id="run-test",
            workflow_id=workflow_id,
            journey_id="test",
            node_id=node_id,
            app_id=app_id,
            expires_at=None,
            planned=[
                PlannedSend(
                    send_key=key,
                    tracking_id=tracking_id_for(key),
                    profile_id=profile_id,
                    device_id=device_id,
                    provider="apns",
                    visit=0,
                )
            ],
            now=utcnow(),
        )
    assert key in rows
    return tracking_id_for(key)
