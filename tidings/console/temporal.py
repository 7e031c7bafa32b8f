"""The Temporal client the console starts, cancels and follows runs with: connected once, on
first use, as every other command connects (or given by whoever builds the app)."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from temporalio.client import Client

from tidings.temporal.client import connect

_LOCK = asyncio.Lock()


def provide_client(app: FastAPI, client: Client) -> None:
    app.state.console_temporal = client


async def temporal_client(app: FastAPI) -> Client | None:
    """The client, or None when no Temporal server answers (pages then show the store's
    numbers only, and say so)."""
    client: Client | None = getattr(app.state, "console_temporal", None)
    if client is not None:
        return client
    async with _LOCK:
        client = getattr(app.state, "console_temporal", None)
        if client is None:
            try:
                client = await asyncio.wait_for(connect(), timeout=5)
            except Exception:  # no server configured or none answering: the store still is
                return None
            app.state.console_temporal = client
    return client
