"""Every row of both reference tables (../shared/reference/push-providers.md), and the unknown
answers, through the real aioapns and firebase-admin clients to the simulators.

Each row gets its own app (credentials, JWT, connections, fault state), profile and token, and
is played twice: first one send through the worker's own sender, for the outcome class; then
a one-profile journey through the delivery activity on the real stack, for the ledger row
(final status and attempts), the device's state, the requests the simulator saw, and whether
the app's sends were stopped and the run says why. The rows of one store (SQLite, then
PostgreSQL) are played concurrently by a module fixture, so the table costs a few seconds per
store; the parametrized test then holds each row to its expectations.

Rows that are retried answer once with the error and then normally, so they end delivered on
the second attempt. The QUOTA_EXCEEDED row waits at least 60 s before its retry, and the
TooManyProviderTokenUpdates row at least 20 minutes (without minting a JWT): the test reads
that from Temporal's record of the pending activity instead of waiting.

Configuration faults never touch a token and are not retried. A fault of the credentials or
the app's setup (key, certificate, team, topic, project) stops the app's sends to that
provider; a fault of the push itself (payload, headers) fails that push and stops nothing.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import pytest
from temporalio.client import Client

from tests.scene import Scene, apns_token, delivery_scene, fcm_token
from tidings.push import Outcome, PushMessage, SendResult, outcome
from tidings.push.sender import SendItem
from tidings.sim import Answer, Scenario, Simulators
from tidings.store.apps import provider_stop
from tidings.store.models import Delivery, DeliveryStatus, Device, DeviceState, Provider
from workflows.contracts import RunResult

DELIVERED = DeliveryStatus.DELIVERED
VALID, INVALID, QUARANTINED = DeviceState.VALID, DeviceState.INVALID, DeviceState.QUARANTINED
HTML_502 = "<html><head><title>502 Bad Gateway</title></head><body>Bad Gateway</body></html>"
MALFORMED_FCM_TOKEN = "not a registration token"
WARM_UP_TOKEN = {"apns": apns_token(0xCAFE), "fcm": fcm_token(0xCAFE)}
ROWS_AT_ONCE = 8
NOW_MS = -1  # stands for "the 410 timestamp is the moment the scenario is set"
ProviderName = Literal["apns", "fcm"]


@dataclass(frozen=True)
class Row:
    provider: ProviderName
    answers: tuple[Answer, ...]
    outcome: Outcome
    final: DeliveryStatus
    device: DeviceState
    attempts: int
    requests: int
    stops_app: bool = False
    # a configuration fault of the push itself: it fails, the app goes on
    refuses_push: bool = False
    # the token belongs to the sandbox / another bundle id / another Firebase project
    environment: str | None = None
    token_topic: str | None = None
    token_project: str | None = None
    malformed_token: bool = False
    jwt_mints: int = 0
    fcm_project: Literal["shared", "own", "other", "unknown"] = "shared"
    expire_access_token: bool = False
    first_retry_at_least_s: float | None = None


def retried(provider: ProviderName, answer: Answer, **extra: object) -> Row:
    """Answered once with ``answer``, then normally: delivered on the second attempt."""
    kind = extra.pop("outcome", Outcome.RETRY_LATER)
    assert isinstance(kind, Outcome)
    return Row(provider, (answer,), kind, DELIVERED, VALID, 2, 2, **extra)  # type: ignore[arg-type]


def config_fault(provider: ProviderName, answer: Answer | None = None, **extra: object) -> Row:
    """A fault of the credentials or the app's setup: the app's sends to the provider stop."""
    answers = (answer,) if answer else ()
    return Row(
        provider,
        answers,
        Outcome.CONFIG_FAULT,
        DeliveryStatus.CONFIG_FAULT,
        VALID,
        1,
        1,
        True,
        **extra,  # type: ignore[arg-type]
    )


def push_fault(provider: ProviderName, answer: Answer) -> Row:
    """A fault of the push itself: it fails, not retried; the app is not stopped."""
    return Row(
        provider,
        (answer,),
        Outcome.CONFIG_FAULT,
        DeliveryStatus.CONFIG_FAULT,
        VALID,
        1,
        1,
        refuses_push=True,
    )


def once(
    provider: ProviderName,
    kind: Outcome,
    status: DeliveryStatus,
    device: DeviceState,
    **extra: object,
) -> Row:
    """One attempt, one request, a final status."""
    answer = extra.pop("answer", None)
    answers = (answer,) if isinstance(answer, Answer) else ()
    return Row(provider, answers, kind, status, device, 1, 1, **extra)  # type: ignore[arg-type]


# faults of the credentials or the app's setup: the app's APNs sends stop
APNS_APP_FAULTS = (
    "BadTopic",
    "MissingTopic",
    "TopicDisallowed",
    "BadCertificate",
    "BadCertificateEnvironment",
    "Forbidden",
    "InvalidProviderToken",
    "MissingProviderToken",
    "BadEnvironmentKeyInToken",
)
# faults of one push: it fails, the app goes on
APNS_PUSH_FAULTS = (
    "BadCollapseId",
    "BadExpirationDate",
    "BadMessageId",
    "BadPriority",
    "DuplicateHeaders",
    "InvalidPushType",
    "MissingDeviceToken",
    "PayloadEmpty",
    "BadPath",
    "MethodNotAllowed",
    "PayloadTooLarge",
)
GONE = (Outcome.TOKEN_GONE, DeliveryStatus.TOKEN_GONE, INVALID)
SUSPECT = (Outcome.TOKEN_SUSPECT, DeliveryStatus.TOKEN_SUSPECT, QUARANTINED)

APNS_ROWS: dict[str, Row] = {
    "200": once("apns", Outcome.DELIVERED, DELIVERED, VALID),
    "429 TooManyRequests": retried("apns", Answer(reason="TooManyRequests")),
    "500 InternalServerError": retried("apns", Answer(reason="InternalServerError")),
    "503 ServiceUnavailable": retried("apns", Answer(reason="ServiceUnavailable")),
    "503 Shutdown": retried("apns", Answer(reason="Shutdown")),
    "400 IdleTimeout": retried("apns", Answer(reason="IdleTimeout")),
    # sent, and the answer lost: the push may have been delivered (an unknown outcome),
    # resent by the next attempt with the same apns-id and collapse id
    "connection reset": retried("apns", Answer(action="reset"), outcome=Outcome.ANSWER_LOST),
    # above the GOAWAY's last-stream-id: never processed, resent at once on a new
    # connection within the same attempt
    "GOAWAY": Row(
        "apns",
        (Answer(action="goaway", reason="Shutdown"),),
        Outcome.DELIVERED,
        DELIVERED,
        VALID,
        attempts=1,
        requests=2,
    ),
    "REFUSED_STREAM": Row(
        "apns", (Answer(action="refuse"),), Outcome.DELIVERED, DELIVERED, VALID, 1, 2
    ),
    "timeout": retried("apns", Answer(action="hang"), outcome=Outcome.ANSWER_LOST),
    "403 ExpiredProviderToken": retried(
        "apns",
        Answer(reason="ExpiredProviderToken"),
        outcome=Outcome.REFRESH_CREDENTIALS,
        jwt_mints=1,
    ),
    # Apple allows a team one token update per 20 minutes: wait that long, mint nothing
    "429 TooManyProviderTokenUpdates": once(
        "apns",
        Outcome.REFRESH_CREDENTIALS,
        DeliveryStatus.PENDING,
        VALID,
        answer=Answer(reason="TooManyProviderTokenUpdates"),
        first_retry_at_least_s=20 * 60,
    ),
    "410 Unregistered": once(
        "apns", *GONE, answer=Answer(reason="Unregistered", timestamp_ms=NOW_MS)
    ),
    "410 ExpiredToken": once(
        "apns", *GONE, answer=Answer(reason="ExpiredToken", timestamp_ms=NOW_MS)
    ),
    "400 BadDeviceToken (sandbox token on production)": once(
        "apns", *SUSPECT, environment="sandbox"
    ),
    "400 DeviceTokenNotForTopic": once("apns", *SUSPECT, token_topic="com.example.another"),
    **{reason: config_fault("apns", Answer(reason=reason)) for reason in APNS_APP_FAULTS},
    **{reason: push_fault("apns", Answer(reason=reason)) for reason in APNS_PUSH_FAULTS},
    # answers outside the table: a safe class, never a token change
    "unknown reason": retried("apns", Answer(status=400, reason="SomethingAppleAddedLater")),
    "403 UnrelatedKeyIdInToken": retried("apns", Answer(reason="UnrelatedKeyIdInToken")),
    "HTML 502": retried(
        "apns", Answer(status=502, raw_body=HTML_502, content_type="text/html; charset=UTF-8")
    ),
    "empty 500": retried("apns", Answer(status=500, raw_body="")),
    "410 without timestamp": once("apns", *SUSPECT, answer=Answer(reason="Unregistered")),
}

FCM_ROWS: dict[str, Row] = {
    "200": once("fcm", Outcome.DELIVERED, DELIVERED, VALID),
    "UNAVAILABLE 503": retried("fcm", Answer(error_code="UNAVAILABLE")),
    "INTERNAL 500": retried("fcm", Answer(error_code="INTERNAL")),
    "QUOTA_EXCEEDED 429": once(
        "fcm",
        Outcome.RETRY_LATER,
        DeliveryStatus.PENDING,
        VALID,
        answer=Answer(error_code="QUOTA_EXCEEDED", retry_after_s=1),
        first_retry_at_least_s=60,
    ),
    "UNREGISTERED 404": once("fcm", *GONE, answer=Answer(error_code="UNREGISTERED")),
    "INVALID_ARGUMENT naming message.token": once("fcm", *GONE, malformed_token=True),
    "SENDER_ID_MISMATCH 403": once("fcm", *SUSPECT, token_project="someone-elses-project"),
    "INVALID_ARGUMENT about the payload": push_fault("fcm", Answer(error_code="INVALID_ARGUMENT")),
    "THIRD_PARTY_AUTH_ERROR 401": config_fault("fcm", Answer(error_code="THIRD_PARTY_AUTH_ERROR")),
    "APNS_AUTH_ERROR 401 (former name)": config_fault("fcm", Answer(error_code="APNS_AUTH_ERROR")),
    "PERMISSION_DENIED 403": config_fault("fcm", fcm_project="other"),
    "NOT_FOUND without UNREGISTERED (wrong project)": config_fault("fcm", fcm_project="unknown"),
    "401 expired access token (refreshed once)": Row(
        "fcm",
        (),
        Outcome.DELIVERED,
        DELIVERED,
        VALID,
        1,
        2,
        fcm_project="own",
        expire_access_token=True,
    ),
    # answers outside the table
    "unknown errorCode": retried("fcm", Answer(error_code="SOMETHING_GOOGLE_ADDED_LATER")),
    "HTML 502": retried("fcm", Answer(status=502, raw_body=HTML_502)),
    "empty 500": retried("fcm", Answer(status=500, raw_body="")),
}

ROWS = {f"apns {k}": v for k, v in APNS_ROWS.items()} | {f"fcm {k}": v for k, v in FCM_ROWS.items()}


@dataclass
class Played:
    """What one row did."""

    app_id: str
    token: str
    device_id: int = 0
    outcome: Outcome | None = None
    ledger: Delivery | None = None
    requests: int = 0
    device: Device | None = None
    fault: str | None = None
    fault_since: datetime | None = None
    run: RunResult | None = None
    jwt_mints: int = 0
    displayed: int = 0
    retry_asked: timedelta | None = None
    retry_scheduled: timedelta | None = None
    problems: list[str] = field(default_factory=list)


def _token(index: int, row: Row) -> str:
    if row.malformed_token:
        return MALFORMED_FCM_TOKEN
    return (
        apns_token(0x7AB1E000 + index) if row.provider == "apns" else fcm_token(0x7AB1E000 + index)
    )


def _scenario(rows: dict[str, Row], played: dict[str, Played]) -> Scenario:
    """One scenario for every row (each row has its own token)."""
    now_ms = int(time.time() * 1000)
    scripted: dict[str, list[Answer]] = {}
    environments: dict[str, str] = {}
    topics: dict[str, str] = {}
    projects: dict[str, str] = {}
    for name, row in rows.items():
        token = played[name].token
        if row.answers:
            scripted[token] = [
                a.model_copy(update={"timestamp_ms": now_ms}) if a.timestamp_ms == NOW_MS else a
                for a in row.answers
            ]
        if row.environment:
            environments[token] = row.environment
        if row.token_topic:
            topics[token] = row.token_topic
        if row.token_project:
            projects[token] = row.token_project
    return Scenario.model_validate(
        {
            "scripted": scripted,
            "environments": environments,
            "token_topics": topics,
            "token_projects": projects,
            # the ExpiredProviderToken row's answer is scripted for a young JWT: the simulator
            # must take the JWT minted in answer at once (each row has its own team)
            "token_update_min_interval_s": 0,
        }
    )


def _set_scenarios(scene: Scene, played: dict[str, Played]) -> None:
    for provider, simulator in (("apns", scene.sims.apns), ("fcm", scene.sims.fcm)):
        rows = {n: r for n, r in ROWS.items() if r.provider == provider}
        simulator.set_scenario(_scenario(rows, played))
    for name, row in ROWS.items():
        if row.expire_access_token:
            scene.sims.fcm.expire_access_tokens(played[name].app_id)


async def _add_app(scene: Scene, name: str, row: Row, shared: dict[str, str]) -> str:
    app_id = f"t{list(ROWS).index(name):03d}"
    account = dict(shared)
    if row.fcm_project == "own":
        account = scene.sims.fcm.create_service_account(project_id=app_id)
    elif row.fcm_project == "other":
        # one project's account sending for another project the simulator knows
        account["project_id"] = scene.sims.fcm.create_service_account(f"{app_id}-b")["project_id"]
    elif row.fcm_project == "unknown":
        account["project_id"] = f"{app_id}-nowhere"
    credentials = scene.credentials(account=account)
    # only the row's provider: an app builds a client per provider it has credentials for
    credentials.body.pop("fcm" if row.provider == "apns" else "apns")
    return await scene.add_app(app_id, credentials)


async def _add_device(scene: Scene, played: Played, row: Row) -> int:
    profile = f"p-{played.app_id}"
    if not row.malformed_token:
        return await scene.add_device(
            played.app_id, profile, row.provider, played.token, attributes={"first_name": "Ada"}
        )
    # the API refuses a malformed token; one stored before that check existed gets here
    put = await scene.stack.http.put(
        f"/v1/profiles/{profile}", json={"attributes": {"first_name": "Ada"}}
    )
    assert put.status_code == 200, put.text
    async with scene.db.write() as session:
        device = Device(
            app_id=played.app_id, profile_id=profile, provider=Provider.FCM, token=played.token
        )
        session.add(device)
        await session.flush()
        assert device.id is not None
        return device.id


def _requests(scene: Scene, row: Row, token: str) -> int:
    simulator = scene.sims.apns if row.provider == "apns" else scene.sims.fcm
    return len(simulator.records(token=token))


async def _class_of(scene: Scene, row: Row, played: Played, token: str | None = None) -> Outcome:
    senders = await scene.senders(played.app_id)
    sender = senders.apns if row.provider == "apns" else senders.fcm
    assert sender is not None
    item = SendItem(token or played.token, "class-check", PushMessage(title="t"))
    return (await sender.send(item)).outcome


def _generation(scene: Scene, played: Played) -> int:
    senders = scene.stack.resources.senders._senders.get(played.app_id)
    auth = senders.apns.auth if senders and senders.apns else None
    # renewals only: a regular refresh at the 40-minute grid may fall inside a test
    return auth.renewals if auth else 0


async def _play(scene: Scene, row: Row, played: Played) -> None:
    """The journey through the delivery activity, and what it left behind."""
    profile = f"p-{played.app_id}"
    generation = _generation(scene, played)
    if row.first_retry_at_least_s is not None:
        await _first_retry(scene, played, profile)
    else:
        run_id, played.run = await scene.run_push(played.app_id, [profile])
        rows = [r for r in await scene.ledger(run_id) if r.device_id == played.device_id]
        assert len(rows) == 1
        played.ledger = rows[0]
    played.jwt_mints = _generation(scene, played) - generation
    played.requests = _requests(scene, row, played.token)
    played.device = await scene.device(played.device_id)
    stop = provider_stop(await scene.app(played.app_id), row.provider)
    played.fault = stop.reason if stop is not None else None
    played.fault_since = stop.since if stop is not None else None
    simulator = scene.sims.apns if row.provider == "apns" else scene.sims.fcm
    played.displayed = len(simulator.displayed(played.token))


async def _first_retry(scene: Scene, played: Played, profile: str) -> None:
    """Start the journey, wait for the activity's first failure, read when Temporal will try
    again, and stop there."""
    started = await scene.start_push(played.app_id, [profile])
    cohort = scene.client.get_workflow_handle(f"{started.run_id}/cohort-000001")
    for _ in range(400):
        await asyncio.sleep(0.05)
        try:
            description = await cohort.describe()
        except Exception:  # not started yet
            continue
        pending = description.raw_description.pending_activities
        if pending and pending[0].HasField("last_failure"):
            failure = pending[0].last_failure.application_failure_info
            played.retry_asked = failure.next_retry_delay.ToTimedelta()
            played.retry_scheduled = (
                pending[0].next_attempt_schedule_time.ToDatetime()
                - pending[0].last_attempt_complete_time.ToDatetime()
            )
            break
    played.ledger = (await scene.ledger(started.run_id))[0]
    await started.handle.terminate("the retry schedule is what this row tests")


@pytest.fixture(scope="module")
async def played(
    module_database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    temporal_client: Client,
    simulators: Simulators,
) -> AsyncIterator[dict[str, Played]]:
    home: Path = tmp_path_factory.mktemp("tables")
    # some rows need an app whose credentials the providers refuse (another project, one
    # that does not exist): the API's save-time check would rightly refuse to store them
    # rows whose first retry waits minutes (QUOTA_EXCEEDED, TooManyProviderTokenUpdates) are
    # stopped at that retry: the horizon must outlast it
    async with delivery_scene(
        home,
        module_database_url,
        temporal_client,
        simulators,
        check_credentials_on_save=False,
        delivery_retry_horizon_s=3600,
    ) as scene:
        simulators.reset()
        shared = simulators.fcm.create_service_account(project_id="tables-shared")
        played: dict[str, Played] = {}
        for index, (name, row) in enumerate(ROWS.items()):
            app_id = await _add_app(scene, name, row, shared)
            played[name] = Played(app_id, _token(index, row))
            played[name].device_id = await _add_device(scene, played[name], row)
        # open every row's connections (and mint its JWT, fetch its access token) one row at
        # a time: sixty TLS handshakes at once on a small machine would outlast the timeout
        for name, row in ROWS.items():
            await _class_of(scene, row, played[name], token=WARM_UP_TOKEN[row.provider])

        # 1. the class of each answer, from one send through the worker's sender
        _set_scenarios(scene, played)
        classes = await asyncio.gather(
            *(_class_of(scene, row, played[name]) for name, row in ROWS.items())
        )
        for name, kind in zip(ROWS, classes, strict=True):
            played[name].outcome = kind

        # 2. the journeys, a few at a time (SQLite serialises every write: sixty journeys at
        # once would queue each one behind all the others)
        simulators.reset()
        _set_scenarios(scene, played)
        slots = asyncio.Semaphore(ROWS_AT_ONCE)

        async def play(name: str, row: Row) -> None:
            async with slots:
                await _play(scene, row, played[name])

        await asyncio.gather(*(play(name, row) for name, row in ROWS.items()))
        yield played


@pytest.mark.parametrize("name", list(ROWS))
async def test_every_provider_answer_lands_in_its_class(
    played: dict[str, Played], name: str
) -> None:
    row, result = ROWS[name], played[name]
    assert result.outcome is row.outcome
    ledger, device = result.ledger, result.device
    assert ledger is not None
    assert device is not None
    assert (ledger.status, ledger.attempts) == (row.final, row.attempts), ledger.reason
    assert result.requests == row.requests
    assert device.state == row.device, device.state_reason
    if row.stops_app:
        # the app's sends stop (since a known time), the token is untouched, the run says why
        assert result.fault
        assert result.fault_since is not None
        assert ledger.reason
        assert result.fault in ledger.reason
        assert result.run
        assert result.run.stopped
        assert result.fault in result.run.stopped
    elif row.refuses_push:
        # the push fails, the app is not stopped, and the run says why
        assert result.fault is None
        assert ledger.reason
        assert ledger.reason.startswith("push refused: ")
        assert result.run
        assert result.run.stopped == f"{row.provider}: {ledger.reason}"
    else:
        assert result.fault is None
        assert result.run is None or result.run.stopped is None
    if row.provider == "apns":
        assert result.jwt_mints == row.jwt_mints
    if row.final is DELIVERED:
        assert result.displayed == 1
    if row.first_retry_at_least_s is not None:
        floor = timedelta(seconds=row.first_retry_at_least_s)
        assert result.retry_asked is not None
        assert result.retry_asked >= floor
        assert result.retry_scheduled is not None
        assert result.retry_scheduled >= floor - timedelta(seconds=1)


def test_every_answer_tidings_classifies_has_a_row() -> None:
    """The classification tables and this test's rows cannot drift apart."""
    apns = {
        (status, reason)
        for table in (
            outcome.APNS_RETRY_LATER,
            outcome.APNS_REFRESH_CREDENTIALS,
            outcome.APNS_TOKEN_GONE,
            outcome.APNS_TOKEN_SUSPECT,
            outcome.APNS_CONFIG_FAULT,
        )
        for status, reason in table
    }
    covered = {
        (status, reason)
        for status, reason in apns
        if any(f"{status} {reason}" in name or reason == name for name in APNS_ROWS)
    }
    assert covered == apns
    fcm = {name.split(" ")[0] for name in FCM_ROWS}
    assert fcm >= outcome.FCM_KNOWN_CODES
    # every APNs configuration fault is either the app's or one push's, and the rows agree
    config = {reason for _, reason in outcome.APNS_CONFIG_FAULT}
    assert set(APNS_APP_FAULTS) | set(APNS_PUSH_FAULTS) == config
    for reason in config:
        scope = outcome.fault_scope("apns", SendResult(Outcome.CONFIG_FAULT, reason=reason))
        assert (scope is outcome.FaultScope.MESSAGE) == (reason in APNS_PUSH_FAULTS), reason


REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "push-providers.md"


def _reference_rows(heading: str) -> list[str]:
    """The class table rows under ``heading`` in the reference page: '| class | answers |'."""
    section = REFERENCE.read_text().split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    return [
        line
        for line in section.splitlines()
        if line.startswith("| ") and not line.startswith(("| class", "|---"))
    ]


@pytest.mark.skipif(
    not REFERENCE.exists() and os.environ.get("CI", "").lower() != "true",
    reason="the project's shared reference pages are not beside this checkout",
)
def test_every_answer_of_the_reference_page_has_a_row() -> None:
    """Each APNs reason and FCM errorCode the reference tables name (../shared/reference/
    push-providers.md) is played by a row above, so the page and the suite cannot drift."""
    apns_reasons = {
        reason
        for line in _reference_rows("APNs (HTTP/2 provider API)")
        for reason in re.findall(r"\b[A-Z][A-Za-z]+\b", line.split("|")[2])
    } - {"JWT"}  # "mint one new JWT" is advice, not an answer
    fcm_codes = {
        code
        for line in _reference_rows("FCM (HTTP v1)")
        for code in re.findall(r"\b[A-Z]{2,}(?:_[A-Z]+)*\b", line.split("|")[2])
    } - {"FCM"}  # "not a valid FCM registration token": prose, not a code
    assert len(apns_reasons) >= 30, apns_reasons  # the page was read, not misparsed
    assert {"UNREGISTERED", "QUOTA_EXCEEDED", "SENDER_ID_MISMATCH"} <= fcm_codes
    apns_played = " ".join(APNS_ROWS)
    fcm_played = " ".join(FCM_ROWS)
    assert sorted(r for r in apns_reasons if r not in apns_played) == []
    assert sorted(c for c in fcm_codes if c not in fcm_played) == []
