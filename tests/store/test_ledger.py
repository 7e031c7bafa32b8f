"""The send ledger's queries and the group commits of outcomes, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

from sqlmodel import col, select

from activities.delivery.commits import OutcomeWriter
from activities.delivery.verdicts import judge
from tidings.push import Outcome, SendResult
from tidings.store.db import Database
from tidings.store.ledger import (
    Completion,
    LedgerRow,
    PlannedSend,
    complete_sends,
    open_sends,
    read_outcomes,
    send_key,
    settle_orphans,
    tracking_id_for,
)
from tidings.store.models import App, Delivery, DeliveryStatus, SendCause
from tidings.store.types import utcnow


def _planned(n: int, workflow_id: str = "wf") -> list[PlannedSend]:
    keys = [send_key(workflow_id, "push", 0, device) for device in range(n)]
    return [
        PlannedSend(key, tracking_id_for(key), f"p{i}", i, "fcm", 0) for i, key in enumerate(keys)
    ]


async def _open(db: Database, planned: list[PlannedSend]) -> dict[str, int]:
    return {key: row.id for key, row in (await _open_rows(db, planned)).items()}


async def _open_rows(db: Database, planned: list[PlannedSend]) -> dict[str, LedgerRow]:
    async with db.write() as session:
        return await open_sends(
            session,
            run_id="run",
            workflow_id="wf",
            journey_id="j",
            node_id="push",
            app_id="app",
            expires_at=None,
            planned=planned,
            now=utcnow(),
        )


async def _rows(db: Database) -> dict[int, Delivery]:
    async with db.read() as session:
        return {r.id or 0: r for r in (await session.exec(select(Delivery))).all()}


async def test_a_closed_row_is_never_reopened_or_overwritten(db: Database) -> None:
    ids = await _open(db, _planned(2))
    first, second = ids.values()
    now = utcnow()
    async with db.write() as session:
        await complete_sends(
            session, [Completion(first, DeliveryStatus.DELIVERED, None, "m1")], now
        )
        # a late or repeated attempt says otherwise: the delivered row stays delivered
        await complete_sends(
            session,
            [
                Completion(first, DeliveryStatus.PENDING, "503", None),
                Completion(second, DeliveryStatus.UNKNOWN, "timeout", None, answer_lost=True),
            ],
            now,
        )
        await complete_sends(
            session,
            [Completion(second, DeliveryStatus.UNKNOWN, "reset", None, answer_lost=True)],
            now,
        )
    rows = await _rows(db)
    assert (rows[first].status, rows[first].provider_message_id) == (DeliveryStatus.DELIVERED, "m1")
    assert rows[first].completed_at is not None
    # two lost answers counted; the row is still open, to be resent
    assert (rows[second].status, rows[second].unknown_outcomes) == (DeliveryStatus.UNKNOWN, 2)
    assert rows[second].completed_at is None
    # opening the same sends again keeps what the ledger knows
    again = await _open_rows(db, _planned(2))
    by_id = {row.id: row for row in again.values()}
    assert not by_id[first].open
    assert by_id[second].open
    assert by_id[second].status == DeliveryStatus.UNKNOWN
    assert by_id[second].reason == "reset"


async def test_an_orphan_that_was_sent_stays_unknown_when_closed(db: Database) -> None:
    planned = _planned(3)
    ids = list((await _open(db, planned)).values())
    now = utcnow()
    async with db.write() as session:
        await complete_sends(
            session,
            [Completion(ids[1], DeliveryStatus.UNKNOWN, "reset", None, answer_lost=True)],
            now,
        )
        closed = await settle_orphans(
            session,
            workflow_id="wf",
            node_id="push",
            visits={"p1": 0, "p2": 0},
            planned_keys={planned[0].send_key},
            now=now,
        )
    assert closed == 2
    rows = await _rows(db)
    assert rows[ids[1]].status == DeliveryStatus.UNKNOWN
    assert rows[ids[2]].status == DeliveryStatus.NOT_SENT
    assert {rows[i].cause for i in ids[1:]} == {SendCause.UNTARGETED}
    assert all(rows[i].completed_at is not None for i in ids[1:])
    async with db.read() as session:
        outcomes = await read_outcomes(session, [p.send_key for p in planned])
    assert outcomes[planned[1].send_key].unknown_outcomes == 1


async def _statuses(db: Database, ids: list[int]) -> list[DeliveryStatus]:
    async with db.read() as session:
        rows = await session.exec(select(Delivery).where(col(Delivery.id).in_(ids)))
        by_id = {r.id: r.status for r in rows.all()}
    return [by_id[i] for i in ids]


async def test_outcomes_are_committed_in_groups_while_the_batch_is_still_sending(
    db: Database,
) -> None:
    """A full group is committed at once and a partial one after the group delay, both
    before the writer is closed: a worker killed mid-batch has already recorded them."""
    ids = list((await _open(db, _planned(130))).values())
    now = utcnow()
    delivered = SendResult(Outcome.DELIVERED, 200, message_id="m")
    async with OutcomeWriter(db, App(id="app", name="app"), max_rows=100, max_delay_s=0.05) as w:
        for row_id in ids[:100]:
            w.add(judge(row_id, None, "fcm", delivered, now))
        for _ in range(200):
            if set(await _statuses(db, ids[:100])) == {DeliveryStatus.DELIVERED}:
                break
            await asyncio.sleep(0.05)
        assert set(await _statuses(db, ids[:100])) == {DeliveryStatus.DELIVERED}
        for row_id in ids[100:110]:
            w.add(judge(row_id, None, "fcm", delivered, now))
        for _ in range(200):
            if set(await _statuses(db, ids[100:110])) == {DeliveryStatus.DELIVERED}:
                break
            await asyncio.sleep(0.05)
        assert set(await _statuses(db, ids[100:110])) == {DeliveryStatus.DELIVERED}
        assert set(await _statuses(db, ids[110:])) == {DeliveryStatus.PENDING}
        lost = SendResult(Outcome.ANSWER_LOST, reason="x")
        committed = [w.add(judge(row_id, None, "fcm", lost, now)) for row_id in ids[110:]]
        # a sender waits on these before it frees its request's slot
        await asyncio.gather(*committed)
        assert set(await _statuses(db, ids[110:])) == {DeliveryStatus.UNKNOWN}
    assert w.commits >= 3
    assert set(await _statuses(db, ids[110:])) == {DeliveryStatus.UNKNOWN}
    assert set(w.learnt.open_rows) == set(ids[110:])
