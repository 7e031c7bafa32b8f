"""The API over ASGI on a test's store (SQLite and PostgreSQL), with helpers to act as the
admin or as one app through its own API key, and to put pushes in the send ledger."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from fastapi import FastAPI

from tests.harness import ADMIN_KEY, BUNDLE_ID, make_settings
from tidings.api.app import create_app
from tidings.settings import Settings
from tidings.sim import Simulators
from tidings.store.db import Database
from tidings.store.ledger import PlannedSend, open_sends, send_key, tracking_id_for
from tidings.store.types import utcnow

BASE_URL = "http://tidings.test"


def offline_credentials() -> dict[str, Any]:
    """Credentials of the right form for both platforms, for an API whose saves are not checked
    with the providers (no simulators): enough for the app to take tokens of both."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    account = {
        "type": "service_account",
        "project_id": "offline",
        "private_key": "never used: nothing is sent",
        "client_email": "tidings@offline.invalid",
        "token_uri": "http://127.0.0.1:9/token",
    }
    return {
        "apns": {
            "team_id": "TEAM000001",
            "key_id": "KEY0000001",
            "bundle_id": BUNDLE_ID,
            "signing_key": pem,
        },
        "fcm": {"service_account": json.dumps(account)},
    }


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

    async def create_app(self, app_id: str, *, with_credentials: bool = False) -> str:
        """A new app (holding credentials of both platforms if asked) and one API key of it;
        returns the key."""
        body = {"id": app_id, "name": app_id.title()}
        if with_credentials:
            body |= offline_credentials()
        answer = await self.admin.post("/v1/apps", json=body)
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
