"""The forwarder under rows Temporal refuses and rounds that fail: refused rows back off on
their own (newer rows still go out), are given up after the limit and kept for inspection,
and no failure ends forwarding. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text, update
from sqlmodel import col, select
from temporalio.client import Client

from tests.api.conftest import Api, api, sent_push
from tests.inbound.test_outage import eventually
from tidings.inbound.forwarder import Forwarder, ForwarderOptions, forwarding
from tidings.store.models import Interaction
from tidings.store.types import utcnow

__all__ = ["api"]  # the API fixture of tests/api, on the test's store

APP = "fwd"
# Temporal answers INVALID_ARGUMENT to a signal without a workflow id: the row's own fault,
# not an outage
REFUSED_WORKFLOW = ""


async def report(api: Api, tracking_id: str, event_id: str) -> None:
    body = {"tracking_id": tracking_id, "kind": "opened", "event_id": event_id}
    assert (await api.admin.post("/v1/interactions", json=body)).status_code == 202


async def rows(api: Api) -> dict[str, Interaction]:
    async with api.db.read() as session:
        found = (await session.exec(select(Interaction).order_by(col(Interaction.id)))).all()
    return {row.event_id: row for row in found}


async def test_refused_rows_back_off_without_starving_newer_ones_and_are_given_up(
    api: Api, temporal_client: Client
) -> None:
    await api.create_app(APP)
    refused = await sent_push(api.db, app_id=APP, profile_id="p", workflow_id=REFUSED_WORKFLOW)
    for n in range(3):
        await report(api, refused, f"bad-{n}")
    # a newer report, for a workflow that has finished: Temporal answers NOT_FOUND
    finished = await sent_push(api.db, app_id=APP, profile_id="q", workflow_id="finished-run")
    await report(api, finished, "newer")
    options = ForwarderOptions(
        interaction_batch_size=2, row_initial_backoff=timedelta(hours=1), max_failures=3
    )
    forwarder = Forwarder(temporal_client, api.db, options)

    first = await forwarder.forward_once()
    assert (first.claimed, first.failed, first.outage) == (2, 2, False)
    assert "INVALID_ARGUMENT" in first.errors[0]
    second = await forwarder.forward_once()  # the oldest rows wait: the newer one goes out
    assert (second.claimed, second.gone, second.failed) == (2, 1, 1)
    assert (await forwarder.forward_once()).claimed == 0  # everything left is backing off
    stored = await rows(api)
    assert stored["newer"].forwarded_at is not None
    for n in range(3):
        bad = stored[f"bad-{n}"]
        assert (bad.forward_failures, bad.forwarded_at, bad.forward_failed_at) == (1, None, None)
        assert bad.next_attempt_at is not None
        assert bad.next_attempt_at > utcnow() + timedelta(minutes=59)
        assert "INVALID_ARGUMENT" in (bad.last_error or "")

    async def time_passes() -> None:
        async with api.db.write() as session:
            await session.exec(
                update(Interaction)
                .where(col(Interaction.next_attempt_at).is_not(None))
                .values(next_attempt_at=utcnow() - timedelta(seconds=1))
            )

    for _ in range(2):  # refusals 2 and 3 of each row
        await time_passes()
        while (await forwarder.forward_once()).claimed:
            pass
    stored = await rows(api)
    for n in range(3):
        bad = stored[f"bad-{n}"]
        assert bad.forward_failures == 3
        assert bad.forward_failed_at is not None
        assert bad.next_attempt_at is None
        assert (bad.last_error or "").startswith("gave up: INVALID_ARGUMENT")
    await time_passes()
    assert (await forwarder.forward_once()).claimed == 0  # given up: never tried again
    # kept, and visible for inspection
    failed = (await api.admin.get("/v1/interactions", params={"forwarding": "failed"})).json()
    assert [i["event_id"] for i in failed["items"]] == ["bad-0", "bad-1", "bad-2"]
    assert all(i["forwarding"] == "failed" and i["forward_failed_at"] for i in failed["items"])
    assert all(i["forward_note"].startswith("gave up:") for i in failed["items"])
    forwarded = (await api.admin.get("/v1/interactions", params={"forwarding": "forwarded"})).json()
    assert [i["event_id"] for i in forwarded["items"]] == ["newer"]


async def _corrupt_one_row(api: Api, event_id: str) -> None:
    """A row the store can no longer read back (its time is not a time): reading the outbox
    raises an error that is no store error."""
    async with api.db.write() as session:
        if not api.db.is_sqlite:
            await (await session.connection()).execute(
                text("ALTER TABLE interaction ALTER COLUMN occurred_at TYPE text")
            )
        await (await session.connection()).execute(
            text("UPDATE interaction SET occurred_at = 'not a time' WHERE event_id = :e"),
            {"e": event_id},
        )


async def _repair(api: Api, event_id: str) -> None:
    async with api.db.write() as session:
        if api.db.is_sqlite:
            await (await session.connection()).execute(
                text(
                    "UPDATE interaction SET occurred_at = '2026-01-01 00:00:00.000000' "
                    "WHERE event_id = :e"
                ),
                {"e": event_id},
            )
            return
        await (await session.connection()).execute(
            text("UPDATE interaction SET occurred_at = '2026-01-01T00:00:00Z' WHERE event_id = :e"),
            {"e": event_id},
        )
        await (await session.connection()).execute(
            text(
                "ALTER TABLE interaction ALTER COLUMN occurred_at TYPE timestamptz "
                "USING occurred_at::timestamptz"
            )
        )


async def test_a_round_that_fails_unexpectedly_does_not_end_forwarding(
    api: Api, temporal_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    await api.create_app(APP)
    finished = await sent_push(api.db, app_id=APP, profile_id="p", workflow_id="finished-run")
    for event_id in ("e1", "e2"):
        await report(api, finished, event_id)
    await _corrupt_one_row(api, "e2")
    caplog.set_level("WARNING", logger="tidings.inbound.forwarder")
    fast = ForwarderOptions(
        idle_interval=timedelta(milliseconds=50),
        initial_backoff=timedelta(milliseconds=50),
        max_backoff=timedelta(milliseconds=200),
    )

    def failed_rounds() -> int:
        return sum("a round failed" in r.getMessage() for r in caplog.records)

    async with forwarding(temporal_client, api.db, fast):

        async def failed_twice() -> bool:
            return failed_rounds() >= 2

        # the first failure did not end the loop: it tried again, and failed again
        await eventually(failed_twice, "the forwarder to fail two rounds", 30)
        assert "Traceback" in next(
            r.getMessage() for r in caplog.records if "a round failed" in r.getMessage()
        )
        await _repair(api, "e2")

        async def drained() -> bool:
            return all(r.forwarded_at is not None for r in (await rows(api)).values())

        await eventually(drained, "the outbox to drain once the row is readable", 30)
    assert sorted(await rows(api)) == ["e1", "e2"]
