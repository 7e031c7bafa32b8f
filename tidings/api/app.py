"""The FastAPI application: native API under /v1, the Customer Insights - Journeys compatible
surface under /compat/ci-journeys/, tracked links under /l/, OpenAPI at /docs, the web
console under /console."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from temporalio.client import Client

import tidings
from tidings.api.deps import ApiState, temporal_client
from tidings.api.docs import install_docs
from tidings.api.errors import ApiError, install_error_handlers
from tidings.api.gate import body_limit, install_gates, size_text
from tidings.api.keys import admin_key
from tidings.api.routers import (
    apps,
    compat,
    devices,
    erasures,
    events,
    interactions,
    journeys,
    keys,
    links,
    mappings,
    profile_import,
    profiles,
    runs,
    schedules,
    segments,
    test_sends,
    timeline,
    triggers,
    webhooks,
)
from tidings.api.throttle import FailedAuthentications
from tidings.console import install_console
from tidings.inbound.recorder import InteractionRecorder
from tidings.observe import tracing
from tidings.observe.asgi import RequestMetrics
from tidings.observe.health import readiness
from tidings.observe.server import metrics_response
from tidings.push.links import LinkSigner, link_tracking
from tidings.settings import Settings
from tidings.store.db import Database
from tidings.store.secrets import SecretBox

DESCRIPTION = """
Mobile backends register profiles, user mappings and device tokens, and report interactions;
operators manage apps, their API keys, journeys and their runs.

**Authentication.** `Authorization: Bearer <key>`. The admin key manages apps, API keys and
profiles, and may do anything. An app's API key (created under `/v1/apps/{app_id}/keys`,
shown once) may touch only that app's devices, user mappings and interactions: anything else
answers 403 and changes nothing. It posts custom events only for the profiles its app knows
(a device or a user mapping of the app names them): any other answers 404, as a profile that
does not exist. It subscribes webhook endpoints (`/v1/webhooks`) to its own app's events only.

**Limits.** A request body larger than its operation takes answers 413 naming the limit
(1 MiB; 128 KiB for a single item of the compatible surface). After 20 failed
authentications an address gets 429 with `Retry-After` for further failures (one more
allowed every 3 s); a valid key is always served.

**Errors** share one shape, `{"error": {"code", "message", "details"}}`; `code` is stable and
machine-readable, `details` lists field problems.

**Lists** are paginated by cursor: each answer has `items` and `next_cursor`; pass it as
`cursor` for the next page (null on the last). Items come in the order of a unique key, so
pages neither skip nor repeat items when rows are added meanwhile.
"""


def create_app(
    settings: Settings | None = None,
    db: Database | None = None,
    *,
    auth_failures: FailedAuthentications | None = None,
    temporal: Client | None = None,
) -> FastAPI:
    """The API on ``db`` (or the configured store). ``auth_failures``: the limit on failed
    authentications, if not the default one (tidings.api.throttle). ``temporal``: the client
    runs are moved with and /readyz asks (default: connected on first use, tidings.api.deps)."""
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
            failed_authentications=(
                FailedAuthentications() if auth_failures is None else auth_failures
            ),
            temporal=temporal,
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
        docs_url=None,  # served by install_docs, from local files
        redoc_url=None,
    )
    install_gates(app)
    install_error_handlers(app)  # after the gates: its middleware is the outermost
    app.add_middleware(RequestMetrics)  # outermost of all: refused requests count too
    tracing.instrument(app)

    for module in (
        apps,
        keys,
        profile_import,
        profiles,
        erasures,
        mappings,
        devices,
        interactions,
        compat,
    ):
        app.include_router(module.router)
    # journeys, runs, schedules, test sends and segments (tidings.runs)
    for module in (journeys, runs, schedules, timeline, triggers, test_sends, segments):
        app.include_router(module.router)
    app.include_router(links.router)  # tracked links: /l/{tracking_id}, no key
    app.include_router(events.router)  # custom events: triggers, goals, wait_for
    app.include_router(webhooks.router)  # tidings' events to HTTPS endpoints

    install_docs(app)
    install_console(app)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process serves (checks nothing else; a Kubernetes livenessProbe)."""
        return {"status": "ok"}

    # not in the OpenAPI document: its 503 is an answer, not a server error
    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request, response: Response) -> dict[str, Any]:
        """Readiness: the store answers with the code's schema and Temporal answers (a
        Kubernetes readinessProbe); 503 until then."""
        state = getattr(request.app.state, "tidings", None)
        verdict = await readiness(
            state.db if state is not None else None, await _temporal_if_up(state)
        )
        response.status_code = 200 if verdict.ready else 503
        return {"status": "ready" if verdict.ready else "not ready", "checks": verdict.checks}

    app.add_route("/metrics", metrics_response, include_in_schema=False)

    _document_body_limits(app)
    return app


async def _temporal_if_up(state: ApiState | None) -> Client | None:
    """Temporal for readiness: the API's one client (tidings.api.deps), or None while no
    server answers (asked again by the next probe)."""
    if state is None:
        return None
    try:
        return await temporal_client(state)
    except ApiError:
        return None


def _document_body_limits(app: FastAPI) -> None:
    """Every operation that takes a body documents its 413, with the limit of its path."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = app.openapi_schema
        if schema is None:
            schema = generate()
            for path, operations in schema.get("paths", {}).items():
                for operation in operations.values():
                    if "requestBody" not in operation:
                        continue
                    operation["responses"].setdefault(
                        "413",
                        {
                            "description": "The request body is larger than "
                            f"{size_text(body_limit(path))}",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/ErrorResponse"}
                                }
                            },
                        },
                    )
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
