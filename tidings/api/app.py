"""The FastAPI application: native API under /v1, OpenAPI at /docs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError

import tidings
from tidings.api.deps import ApiState
from tidings.api.errors import error_response, install_error_handlers
from tidings.api.keys import admin_key
from tidings.api.routers import apps, devices, interactions, profiles
from tidings.settings import Settings
from tidings.store.db import Database
from tidings.store.secrets import SecretBox


def create_app(settings: Settings | None = None, db: Database | None = None) -> FastAPI:
    settings = settings or Settings()
    owned_db = db is None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = db or Database(settings.resolved_database_url)
        app.state.tidings = ApiState(
            settings=settings,
            db=database,
            secrets=SecretBox.from_settings(
                settings.secret_key.get_secret_value() if settings.secret_key else None,
                settings.home,
            ),
            admin_key=admin_key(settings),
        )
        try:
            yield
        finally:
            if owned_db:
                await database.dispose()

    app = FastAPI(
        title="tidings",
        version=tidings.__version__,
        summary="Push-notification journeys on Temporal: registry, interactions, journeys.",
        lifespan=lifespan,
    )
    install_error_handlers(app)

    @app.exception_handler(IntegrityError)
    async def _conflict(_request: Request, _error: IntegrityError) -> JSONResponse:
        return error_response(409, "conflict", "the change conflicts with stored data")

    for module in (apps, profiles, devices, interactions):
        app.include_router(module.router)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
