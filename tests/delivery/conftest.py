"""The delivery tests' fixtures over the shared scene (tests.scene): the scene with fast
retries and no app, and a store shared by one module's tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from temporalio.client import Client

from tests.conftest import POSTGRES_ADMIN_URL
from tests.scene import Scene, delivery_scene
from tidings.sim import Simulators


@pytest.fixture
async def scene(
    tmp_path: Path, database_url: str, temporal_client: Client, sims: Simulators
) -> AsyncIterator[Scene]:
    async with delivery_scene(tmp_path, database_url, temporal_client, sims) as scene:
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
