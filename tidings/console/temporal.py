"""The Temporal client the console starts, cancels and follows runs with: the API's own
(tidings.api.deps.temporal_client, connected on first use), unless whoever builds the app
hands one over (the demo, tests)."""

from __future__ import annotations

from fastapi import FastAPI
from temporalio.client import Client

from tidings.api.deps import ApiState
from tidings.api.deps import temporal_client as api_temporal_client
from tidings.api.errors import ApiError


def provide_client(app: FastAPI, client: Client) -> None:
    app.state.console_temporal = client


async def temporal_client(app: FastAPI) -> Client | None:
    """The client, or None when no Temporal server answers (pages then show the store's
    numbers only, and a start or cancel says it could not be done)."""
    client: Client | None = getattr(app.state, "console_temporal", None)
    if client is not None:
        return client
    state: ApiState = app.state.tidings
    try:
        return await api_temporal_client(state)
    except ApiError:
        return None
