"""Schemathesis over the OpenAPI spec: generated requests to every operation, on both stores,
never get a server error nor an answer the spec does not describe.

Bounded: a few examples per operation (the whole run takes seconds), with path parameters
pinned to an app and a profile that exist, so bodies reach the store instead of stopping at a
404.

Every check runs except ``positive_data_acceptance``: some rules cannot be said in JSON Schema
(a PEM key must parse, a time zone must exist, a token must be hex), so a schema-valid request
may rightly get the documented 422.

A compat registration without ``x-ms-track-registration: true`` answers 202 with an empty body,
as the original documents, where the spec describes the tracked answer's JSON: those answers
are checked for being empty instead of for their JSON.

The generated run keeps clear of the limit on failed authentications: schemathesis's
``ignored_auth`` check probes each operation without a key and wants 401 or 403 every time,
where the limit rightly answers 429 after 20 failures. The limits' own answers (413, 429) are
then checked against the spec on purpose, with the default limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case, CheckFunction
from schemathesis.python import asgi
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    positive_data_acceptance,
    response_schema_conformance,
)
from temporalio.client import Client

from tests.harness import ADMIN_KEY, make_settings
from tidings.api.app import create_app
from tidings.api.throttle import DEFAULT_BURST, FailedAuthentications
from tidings.store.db import Database
from tidings.store.journeys import create_run, finish_run, save_version
from tidings.store.models import App, Profile, RunStatus

EXAMPLES_PER_OPERATION = 12
REGISTRATIONS = "/compat/ci-journeys/api/v1.0/orgs/{org_id}/pushdeviceregistration/devices"
EMPTY_WHEN_UNTRACKED = {REGISTRATIONS, f"{REGISTRATIONS}/batch"}


def _untracked_registration(case: Case[Any]) -> bool:
    if case.operation.path not in EMPTY_WHEN_UNTRACKED:
        return False
    headers = {str(k).lower(): str(v) for k, v in (case.headers or {}).items()}
    return headers.get("x-ms-track-registration", "").strip().lower() != "true"


SEEDED_JOURNEY: dict[str, Any] = {
    "id": "welcome",
    "name": "Welcome",
    "app": "shop",
    "nodes": [{"id": "hello", "type": "push", "content": {"title": "Hi", "body": "Welcome"}}],
}
SEEDED_RUN = "run-welcome-20260101T000000-000000"


async def _seed(url: str) -> None:
    db = Database(url)
    try:
        async with db.write() as session:
            session.add(App(id="shop", name="Shop", credentials_version=1))
            session.add(Profile(id="ann", attributes={}))
            await save_version(session, SEEDED_JOURNEY)
            await create_run(
                session,
                run_id=SEEDED_RUN,
                definition=SEEDED_JOURNEY,
                version=1,
                entry={"audience": "app", "app": "shop"},
            )
            await finish_run(session, SEEDED_RUN, RunStatus.COMPLETED.value, {"profiles": 0})
    finally:
        await db.dispose()


def _schema(tmp_path: Path, database_url: str, auth_failures: FailedAuthentications) -> BaseSchema:
    # A thread of its own: the test session's event loop is running in this thread.
    with_loop = asyncio.new_event_loop()
    try:
        with_loop.run_until_complete(_seed(database_url))
    finally:
        with_loop.close()
    app = create_app(make_settings(tmp_path, database_url, None), auth_failures=auth_failures)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema.config.update(
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        parameters={
            "app_id": "shop",
            "profile_id": "ann",
            "org_id": "org",
            "journey_id": "welcome",
            "run_id": SEEDED_RUN,
        },
    )
    return schema


@pytest.fixture
def api_schema(
    tmp_path: Path, database_url: str, temporal_client: Client, monkeypatch: pytest.MonkeyPatch
) -> Iterator[BaseSchema]:
    # the runs' routes connect to the test session's Temporal (runs they start have no worker)
    monkeypatch.setenv("TEMPORAL_ADDRESS", temporal_client.service_client.config.target_host)
    yield _schema(tmp_path, database_url, FailedAuthentications(burst=1_000_000))
    # the app's lifespan (and its store connections) ends with the test
    asgi.shutdown_lifespans()


@pytest.fixture
def limited_schema(tmp_path: Path, database_url: str) -> Iterator[BaseSchema]:
    yield _schema(tmp_path, database_url, FailedAuthentications())
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
            excluded: list[CheckFunction] = [positive_data_acceptance]
            untracked = _untracked_registration(case)
            if untracked:
                excluded += [content_type_conformance, response_schema_conformance]
            answer = case.call()
            case.validate_response(answer, excluded_checks=excluded)
            if untracked and answer.status_code == 202:
                assert answer.content == b""

        answers_within_spec()


def test_the_limits_answer_within_the_spec(limited_schema: BaseSchema) -> None:
    def operation(method: str, path: str) -> Any:
        return limited_schema[path][method]

    checks = {"excluded_checks": [positive_data_acceptance, ignored_auth]}
    # a body over the limit: 413, as documented
    batch = operation("POST", "/v1/apps/{app_id}/devices/batch")
    big = {
        "items": [
            {"profile_id": "p", "create_profile": True, "provider": "fcm", "token": "t" * 4096}
        ]
        * 300
    }
    case = batch.Case(
        path_parameters={"app_id": "shop"},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        body=big,
        media_type="application/json",
    )
    answer = case.call()
    assert answer.status_code == 413
    case.validate_response(answer, **checks)
    report = operation("POST", "/compat/ci-journeys/api/v1.0/orgs/{org_id}/pushdatareceiver/events")
    body = {"TrackingId": "t", "DeviceToken": "d" * 200_000, "PushNotificationStatus": 1}
    case = report.Case(path_parameters={"org_id": "org"}, body=body, media_type="application/json")
    answer = case.call()
    assert answer.status_code == 413
    case.validate_response(answer, **checks)
    # failed authentications past the limit: 429, as documented
    apps = operation("GET", "/v1/apps")
    wrong = {"Authorization": "Bearer wrong"}
    for _ in range(DEFAULT_BURST):
        assert apps.Case(headers=wrong).call().status_code == 401
    case = apps.Case(headers=wrong)
    answer = case.call()
    assert answer.status_code == 429
    case.validate_response(answer, **checks)
    status = operation(
        "POST", "/compat/ci-journeys/api/v1.0/orgs/{org_id}/pushdeviceregistration/devices/status"
    )
    body = {"MobileAppId": "shop", "ApiToken": "wrong", "RegistrationRequestIds": ["r"]}
    case = status.Case(path_parameters={"org_id": "org"}, body=body, media_type="application/json")
    answer = case.call()
    assert answer.status_code == 429
    case.validate_response(answer, **checks)
