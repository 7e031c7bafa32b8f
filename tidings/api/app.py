"""The FastAPI application: native API under /v1, the Customer Insights - Journeys compatible
surface under /compat/ci-journeys/, tracked links under /l/, OpenAPI at /docs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

import tidings
from tidings.api.deps import ApiState
from tidings.api.errors import install_error_handlers
from tidings.api.keys import admin_key
from tidings.api.recorder import InteractionRecorder
from tidings.api.routers import (
    apps,
    compat,
    devices,
    erasures,
    events,
    interactions,
    keys,
    links,
    mappings,
    profiles,
)
from tidings.push.links import LinkSigner, link_tracking
from tidings.settings import Settings
from tidings.store.db import Database
from tidings.store.secrets import SecretBox

DESCRIPTION = """
Mobile backends register profiles, user mappings and device tokens, and report interactions;
operators manage apps, their API keys and journeys.

**Authentication.** `Authorization: Bearer <key>`. The admin key manages apps, API keys and
profiles, and may do anything. An app's API key (created under `/v1/apps/{app_id}/keys`,
shown once) may touch only that app's devices, user mappings and interactions: anything else
answers 403 and changes nothing.

**Errors** share one shape, `{"error": {"code", "message", "details"}}`; `code` is stable and
machine-readable, `details` lists field problems.

**Lists** are paginated by cursor: each answer has `items` and `next_cursor`; pass it as
`cursor` for the next page (null on the last). Items come in the order of a unique key, so
pages neither skip nor repeat items when rows are added meanwhile.
"""


def create_app(settings: Settings | None = None, db: Database | None = None) -> FastAPI:
    settings = settings or Settings()
    owned_db = db is None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = db or Database(settings.resolved_database_url)
        state = ApiState(
            settings=settings,
            db=database,
            secrets=SecretBox.from_settings(
                settings.secret_key.get_secret_value() if settings.secret_key else None,
                settings.home,
            ),
            admin_key=admin_key(settings),
        )
        app.state.tidings = state
        # journey validation checks payload sizes with the tracked links the worker writes
        tracking = (
            link_tracking(LinkSigner.of(settings, state.secrets))
            if settings.public_url
            else contextlib.nullcontext()
        )
        try:
            writer = state.sqlite_writer if database.is_sqlite else None
            with tracking:
                async with InteractionRecorder(database, writer) as recorder:
                    state.interactions = recorder
                    yield
        finally:
            if owned_db:
                await database.dispose()

    app = FastAPI(
        title="tidings",
        version=tidings.__version__,
        summary="Push-notification journeys on Temporal: registry, interactions, journeys.",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    install_error_handlers(app)

    for module in (apps, keys, profiles, erasures, mappings, devices, interactions, compat):
        app.include_router(module.router)
    app.include_router(links.router)  # tracked links: /l/{tracking_id}, no key
    app.include_router(events.router)  # custom events: triggers, goals, wait_for (issue 5)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
