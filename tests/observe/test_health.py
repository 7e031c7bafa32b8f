"""/healthz is liveness only; /readyz is 503 until the store answers with the code's schema
and Temporal answers: on the API, and on a worker's metrics address."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from tests.harness import make_settings
from tidings.api.app import create_app
from tidings.store.db import Database
from tidings.temporal.devserver import free_port
from tidings.worker.main import run_worker


async def probe(app: object, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        return await http.get(path)


@pytest.fixture
def no_configured_temporal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_CONFIG_FILE", "TEMPORAL_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(tmp_path / "absent.toml"))


async def test_api_is_ready_with_a_migrated_store_and_temporal(
    tmp_path: Path, database_url: str, temporal_client: Client
) -> None:
    settings = make_settings(tmp_path, database_url, None)
    db = Database(database_url)
    app = create_app(settings, db, temporal=temporal_client)
    try:
        async with app.router.lifespan_context(app):
            ready = await probe(app, "/readyz")
            live = await probe(app, "/healthz")
    finally:
        await db.dispose()
    assert live.status_code == 200
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"store": "ok", "temporal": "ok"}


@pytest.mark.usefixtures("no_configured_temporal")
async def test_api_is_not_ready_without_temporal(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url, None)
    db = Database(database_url)
    app = create_app(settings, db)
    try:
        async with app.router.lifespan_context(app):
            ready = await probe(app, "/readyz")
            live = await probe(app, "/healthz")
    finally:
        await db.dispose()
    assert live.status_code == 200  # liveness never asks the store or Temporal
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"store": "ok", "temporal": "not connected"}


async def test_api_is_not_ready_on_an_unmigrated_store(
    tmp_path: Path, temporal_client: Client
) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    settings = make_settings(tmp_path, url, None)
    db = Database(url)
    app = create_app(settings, db, temporal=temporal_client)
    try:
        async with app.router.lifespan_context(app):
            ready = await probe(app, "/readyz")
    finally:
        await db.dispose()
    assert ready.status_code == 503
    assert ready.json()["checks"]["store"].startswith("schema not migrated")
    assert ready.json()["checks"]["temporal"] == "ok"


async def test_worker_serves_health_and_metrics_on_its_address(
    tmp_path: Path,
    database_url: str,
    temporal_client: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", temporal_client.service_client.config.target_host)
    monkeypatch.setenv("TEMPORAL_NAMESPACE", temporal_client.namespace)
    port = free_port()
    settings = make_settings(
        tmp_path, database_url, None, worker_metrics_address=f"127.0.0.1:{port}"
    )
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(500):
                try:
                    ready = await http.get("/readyz")
                    break
                except httpx.ConnectError:
                    assert not worker.done(), worker
                    await asyncio.sleep(0.02)
            live = await http.get("/healthz")
            metrics = await http.get("/metrics")
    finally:
        stop.set()
        await worker
    assert live.status_code == 200
    assert ready.status_code == 200, ready.text
    assert "tidings_pushes_total" in metrics.text or "# HELP tidings_pushes" in metrics.text
    assert "tidings_ledger_open_rows" in metrics.text
