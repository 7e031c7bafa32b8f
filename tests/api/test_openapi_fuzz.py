"""Schemathesis over the OpenAPI spec: generated requests to every operation, on both stores,
never get a server error nor an answer the spec does not describe.

Bounded: a few examples per operation (the whole run takes seconds), with path parameters
pinned to an app and a profile that exist, so bodies reach the store instead of stopping at a
404.

Every check runs except ``positive_data_acceptance``: some rules cannot be said in JSON Schema
(a PEM key must parse, a time zone must exist, a token must be hex), so a schema-valid request
may rightly get the documented 422.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case
from schemathesis.python import asgi
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.harness import ADMIN_KEY, make_settings
from tidings.api.app import create_app
from tidings.store.db import Database
from tidings.store.models import App, Profile

EXAMPLES_PER_OPERATION = 12


async def _seed(url: str) -> None:
    db = Database(url)
    try:
        async with db.write() as session:
            session.add(App(id="shop", name="Shop", credentials_version=1))
            session.add(Profile(id="ann", attributes={}))
    finally:
        await db.dispose()


@pytest.fixture
def api_schema(tmp_path: Path, database_url: str) -> Iterator[BaseSchema]:
    # A thread of its own: the test session's event loop is running in this thread.
    with_loop = asyncio.new_event_loop()
    try:
        with_loop.run_until_complete(_seed(database_url))
    finally:
        with_loop.close()
    app = create_app(make_settings(tmp_path, database_url, None))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema.config.update(
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        parameters={"app_id": "shop", "profile_id": "ann", "org_id": "org"},
    )
    yield schema
    # the app's lifespan (and its store connections) ends with the test
    asgi.shutdown_lifespans()


def test_every_operation_answers_within_its_spec(api_schema: BaseSchema) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) > 30
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def answers_within_spec(case: Case[Any]) -> None:
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        answers_within_spec()
