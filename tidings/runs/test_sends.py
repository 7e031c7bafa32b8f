"""Test sends: "try a push on my own device". One push node of a stored journey, rendered
for one profile as a run would render it, sent to chosen devices (or the profile's own)
without starting a run.

The caller's process (the API, the console, the CLI) checks the request, renders the push
and records it (tidings.store.models.TestSend); a small workflow then has a worker send it
on the delivery task queue (workflows/test_send.py, activities/test_send.py), so the API
never loads the senders or the provider SDKs. Problems with the request are told before
anything is stored, each naming its field.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy

from tidings.journeys.locales import choose_variant
from tidings.journeys.model import JourneyDefinition, PushNode
from tidings.journeys.render import RenderError, render_message
from tidings.journeys.validation import JourneyInvalid, parse_definition
from tidings.push.masking import mask_token
from tidings.push.message import size_problem
from tidings.runs.options import engine_options
from tidings.settings import Settings
from tidings.store.db import Database
from tidings.store.journeys import stored_definition
from tidings.store.ledger import tracking_id_for
from tidings.store.models import Device, DeviceState, TestSend, TestSendStatus
from tidings.store.targeting import resolve_targets, stale_cutoff
from tidings.store.test_sends import OPEN, complete
from tidings.store.types import utcnow
from workflows.test_send import (
    TEST_SEND_WORKFLOW,
    TestSendInput,
    test_send_workflow_id,
)

# devices one test send may name: it is a try on a few phones, not a run
MAX_DEVICES = 20
# how long a caller may wait for the outcome before being told where to look for it
MAX_WAIT_S = 30.0


class TestSendProblem(ValueError):
    """The request cannot be sent as asked; nothing was stored. ``status`` 404 for a journey
    or version that is not stored, 422 otherwise; ``field`` names the request's field."""

    __test__ = False  # not a pytest class

    def __init__(self, status: int, code: str, field: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.field = field
        self.message = message


@dataclass(frozen=True)
class TestSendAsk:
    """What to send, for whom, to which devices (none named: the profile's own valid
    devices in the journey's app)."""

    __test__ = False  # not a pytest class

    journey_id: str
    node_id: str
    profile_id: str
    version: int | None = None
    device_ids: Sequence[int] = ()
    tokens: Sequence[str] = ()
    requested_by: str = "api"


class TestSendDevice(BaseModel):
    device_id: int
    provider: str
    # masked: the whole token is never shown
    token: str
    profile_id: str
    tracking_id: str
    # pending, sent, failed, token_gone, token_suspect, unknown (sent, answer lost), not_sent
    status: str
    # the provider's answer (or why nothing was sent)
    reason: str | None = None
    message_id: str | None = None


class TestSendView(BaseModel):
    __test__ = False  # not a pytest class

    id: str
    requested_by: str
    journey_id: str
    journey_version: int
    node_id: str
    app_id: str
    profile_id: str
    # pending (the worker has not finished), done, failed (could not be sent: see error)
    status: TestSendStatus
    # the push as rendered for the profile
    message: dict[str, Any]
    devices: list[TestSendDevice]
    error: str | None
    created_at: datetime
    completed_at: datetime | None


def view_of(row: TestSend) -> TestSendView:
    return TestSendView(
        id=row.id,
        requested_by=row.requested_by,
        journey_id=row.journey_id,
        journey_version=row.journey_version,
        node_id=row.node_id,
        app_id=row.app_id,
        profile_id=row.profile_id,
        status=row.status,
        message=row.message,
        devices=[TestSendDevice.model_validate(d) for d in row.devices],
        error=row.error,
        created_at=row.created_at,
        completed_at=row.completed_at,
    )


def split_devices(listed: Sequence[str]) -> tuple[list[int], list[str]]:
    """Device ids and tokens from what a person typed: a short run of digits is a device
    id, anything else a token."""
    ids = [int(d) for d in listed if d.isdigit() and len(d) < 19]
    return ids, [d for d in listed if not (d.isdigit() and len(d) < 19)]


def new_test_send_id() -> str:
    return f"ts-{secrets.token_hex(8)}"


async def prepare(db: Database, settings: Settings, ask: TestSendAsk) -> TestSend:
    """The test send as it will be recorded: journey, node, profile and devices checked, the
    push rendered for the profile. Raises TestSendProblem naming what is wrong."""
    async with db.read() as session:
        found = await stored_definition(session, ask.journey_id, ask.version)
        if found is None:
            which = f"version {ask.version} of journey" if ask.version else "journey"
            raise TestSendProblem(
                404, "journey_not_found", "journey_id", f"{which} {ask.journey_id!r} is not stored"
            )
        definition, version = found
        journey = _parse(definition, ask.journey_id)
        node = _push_node(journey, ask.node_id)
        app_id = journey.app_of(node)
        now = utcnow()
        audience = await resolve_targets(
            session,
            app_id,
            [ask.profile_id],
            fresh_since=stale_cutoff(now, settings.stale_after_days),
        )
        profile = audience.profiles.get(ask.profile_id)
        if profile is None:
            raise TestSendProblem(
                422, "unknown_profile", "profile_id", f"no profile with id {ask.profile_id!r}"
            )
        if ask.device_ids or ask.tokens:
            devices = await _named_devices(session, app_id, ask)
        else:
            devices = await _profile_devices(session, app_id, ask.profile_id, now, settings)
    message = _render(node, profile)
    test_send_id = new_test_send_id()
    return TestSend(
        id=test_send_id,
        requested_by=ask.requested_by,
        journey_id=journey.id,
        journey_version=version,
        node_id=node.id,
        app_id=app_id,
        profile_id=ask.profile_id,
        message=message,
        devices=[
            {
                "device_id": int(d.id or 0),
                "provider": d.provider,
                "token": mask_token(d.token),
                "profile_id": d.profile_id,
                "tracking_id": tracking_id_for(f"test-send:{test_send_id}:{d.id}"),
                "status": OPEN,
                "reason": None,
                "message_id": None,
            }
            for d in devices
        ],
        created_at=now,
    )


def _parse(definition: dict[str, Any], journey_id: str) -> JourneyDefinition:
    try:
        return parse_definition(definition)
    except JourneyInvalid as error:
        raise TestSendProblem(
            422,
            "invalid_journey",
            "journey_id",
            f"stored journey {journey_id!r} is no longer valid: {error}",
        ) from None


def _push_node(journey: JourneyDefinition, node_id: str) -> PushNode:
    for node in journey.nodes:
        if node.id != node_id:
            continue
        if not isinstance(node, PushNode):
            raise TestSendProblem(
                422,
                "not_a_push",
                "node_id",
                f"node {node_id!r} of journey {journey.id!r} is a {node.type} node, not a push",
            )
        return node
    pushes = ", ".join(n.id for n in journey.nodes if isinstance(n, PushNode)) or "none"
    raise TestSendProblem(
        422,
        "unknown_node",
        "node_id",
        f"journey {journey.id!r} has no node {node_id!r} (its push nodes: {pushes})",
    )


async def _named_devices(session: AsyncSession, app_id: str, ask: TestSendAsk) -> list[Device]:
    """The devices the request names, each of the journey's app and valid."""
    ids = list(dict.fromkeys(ask.device_ids))
    tokens = list(dict.fromkeys(ask.tokens))
    if len(ids) + len(tokens) > MAX_DEVICES:
        raise TestSendProblem(
            422,
            "too_many_devices",
            "device_ids",
            f"a test send names at most {MAX_DEVICES} devices",
        )
    devices: dict[int, Device] = {}
    if ids:
        rows = (await session.exec(select(Device).where(col(Device.id).in_(ids)))).all()
        by_id = {int(d.id or 0): d for d in rows}
        for device_id in ids:
            device = by_id.get(device_id)
            if device is None:
                raise TestSendProblem(
                    422, "unknown_device", "device_ids", f"no device with id {device_id}"
                )
            devices[device_id] = device
    for token in tokens:
        rows = (await session.exec(select(Device).where(col(Device.token) == token))).all()
        mine = [d for d in rows if d.app_id == app_id]
        if not rows:
            raise TestSendProblem(
                422, "unknown_device", "tokens", f"no device has the token {mask_token(token)}"
            )
        if not mine:
            raise TestSendProblem(
                422,
                "device_of_another_app",
                "tokens",
                f"the token {mask_token(token)} is registered in app {rows[0].app_id!r}, not "
                f"in the journey's app {app_id!r}",
            )
        devices[int(mine[0].id or 0)] = mine[0]
    for device_id, device in devices.items():
        field = "tokens" if device_id not in ids else "device_ids"
        if device.app_id != app_id:
            raise TestSendProblem(
                422,
                "device_of_another_app",
                field,
                f"device {device_id} belongs to app {device.app_id!r}, not to the journey's "
                f"app {app_id!r}",
            )
        if device.state != DeviceState.VALID.value:
            raise TestSendProblem(
                422,
                "device_not_valid",
                field,
                f"device {device_id} is {device.state} "
                f"({device.state_reason or 'no reason given'}): nothing can be sent to it",
            )
    return list(devices.values())


async def _profile_devices(
    session: AsyncSession, app_id: str, profile_id: str, now: datetime, settings: Settings
) -> list[Device]:
    rows = await session.exec(
        select(Device)
        .where(col(Device.app_id) == app_id)
        .where(col(Device.profile_id) == profile_id)
        .where(col(Device.state) == DeviceState.VALID.value)
        .where(col(Device.registered_at) >= stale_cutoff(now, settings.stale_after_days))
        .order_by(col(Device.id))
        .limit(MAX_DEVICES)
    )
    devices = list(rows.all())
    if not devices:
        raise TestSendProblem(
            422,
            "no_device",
            "profile_id",
            f"profile {profile_id!r} has no valid device in app {app_id!r}: name devices "
            "with device_ids or tokens",
        )
    return devices


def _render(node: PushNode, profile: dict[str, Any]) -> dict[str, Any]:
    """The push for the profile, as a run renders it (its locale's variant, its TTL)."""
    locale = profile.get("locale")
    _, content = choose_variant(
        node.content, node.locales, locale if isinstance(locale, str) else None
    )
    ttl_s = int(node.ttl.total_seconds()) if node.ttl is not None else None
    try:
        message = render_message(content, ttl_s, profile)
    except RenderError as error:
        raise TestSendProblem(
            422,
            "template_error",
            "profile_id",
            f"the push cannot be rendered for profile {profile['id']!r}: {error}",
        ) from None
    problem = size_problem(message)
    if problem is not None:
        raise TestSendProblem(422, "too_large", "node_id", problem)
    return message.model_dump(mode="json")


async def start_test_send(
    client: Client, db: Database, settings: Settings, ask: TestSendAsk
) -> TestSendView:
    """Check and record the test send, then start its sending on the workers; the view as
    recorded (its devices ``pending``). Raises TestSendProblem before anything is stored."""
    return await record_and_start(client, db, settings, await prepare(db, settings, ask))


async def record_and_start(
    client: Client, db: Database, settings: Settings, row: TestSend
) -> TestSendView:
    """Record a prepared test send, then start the workflow that has a worker send it. If
    Temporal refuses the start, the record says so (failed) and the error is raised."""
    async with db.write() as session:
        session.add(row)
        await session.flush()
        view = view_of(row)
    try:
        await client.start_workflow(
            TEST_SEND_WORKFLOW,
            TestSendInput(row.id, engine_options(settings).delivery_task_queue),
            id=test_send_workflow_id(row.id),
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except Exception as error:
        reason = f"the workers could not be asked to send it: {error}"
        async with db.write() as session:
            await complete(session, row.id, _all_failed(row, reason), error=reason)
        raise
    return view


def _all_failed(row: TestSend, reason: str) -> dict[int, tuple[str, str | None, str | None]]:
    return {int(d["device_id"]): ("failed", f"not sent: {reason}", None) for d in row.devices}


async def wait_for_outcome(
    client: Client, db: Database, test_send_id: str, wait_s: float
) -> TestSendView | None:
    """The test send once its worker finished it, or as it stands after ``wait_s``."""
    if wait_s > 0:
        handle = client.get_workflow_handle(test_send_workflow_id(test_send_id))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(handle.result(), timeout=min(wait_s, MAX_WAIT_S))
    return await get_test_send(db, test_send_id)


async def get_test_send(db: Database, test_send_id: str) -> TestSendView | None:
    async with db.read() as session:
        row = await session.get(TestSend, test_send_id)
        return view_of(row) if row is not None else None
