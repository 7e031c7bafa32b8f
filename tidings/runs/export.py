"""A run's pushes and interactions as NDJSON, one record a line, read page by page: however
large the run, the export holds one page at a time (each page its own short read, so no
transaction stays open while a slow client reads the stream).

The first line is the run (``"record": "run"``), then every push in ledger order
(``"record": "push"``, a :class:`~tidings.runs.pushes.PushRecord`), then every interaction
reported on the run's pushes in the order it was stored (``"record": "interaction"``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from sqlmodel import col, select

from tidings.runs.errors import RunNotFound
from tidings.runs.pushes import push_record
from tidings.store.db import Database
from tidings.store.models import Delivery, Interaction, InteractionStatus, JourneyRun

PAGE_SIZE = 1000


def _line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, default=_default, separators=(",", ":")).encode() + b"\n"


def _default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not exported")


async def check_run(db: Database, run_id: str) -> JourneyRun:
    """The run, or RunNotFound: checked before a stream starts, so a wrong id answers 404."""
    async with db.read() as session:
        run = await session.get(JourneyRun, run_id)
    if run is None:
        raise RunNotFound(f"no run {run_id!r}")
    return run


async def export_run(db: Database, run_id: str, page_size: int = PAGE_SIZE) -> AsyncIterator[bytes]:
    """The run's lines, page by page (RunNotFound before the first when there is no run)."""
    run = await check_run(db, run_id)
    yield _line(
        {
            "record": "run",
            "run_id": run.id,
            "journey_id": run.journey_id,
            "journey_version": run.journey_version,
            "status": str(run.status),
            "started_at": run.started_at,
            "finished_at": run.finished_at,
        }
    )
    after = 0
    while True:
        async with db.read() as session:
            rows = (
                await session.exec(
                    select(Delivery)
                    .where(col(Delivery.run_id) == run_id)
                    .where(col(Delivery.id) > after)
                    .order_by(col(Delivery.id))
                    .limit(page_size)
                )
            ).all()
        for row in rows:
            yield _line({"record": "push"} | push_record(row).model_dump())
        if len(rows) < page_size:
            break
        after = int(rows[-1].id or 0)
    after = 0
    while True:
        async with db.read() as session:
            found = (
                await session.exec(
                    select(Interaction, col(Delivery.node_id))
                    .join(Delivery, col(Delivery.id) == col(Interaction.delivery_id))
                    .where(col(Delivery.run_id) == run_id)
                    .where(col(Interaction.status) == InteractionStatus.MATCHED.value)
                    .where(col(Interaction.id) > after)
                    .order_by(col(Interaction.id))
                    .limit(page_size)
                )
            ).all()
        for interaction, node_id in found:
            yield _line(
                {
                    "record": "interaction",
                    "id": interaction.id,
                    "kind": str(interaction.kind),
                    "tracking_id": interaction.tracking_id,
                    "event_id": interaction.event_id,
                    "action_id": interaction.action_id,
                    "node_id": node_id,
                    "profile_id": interaction.profile_id,
                    "app_id": interaction.app_id,
                    "source": interaction.source,
                    "occurred_at": interaction.occurred_at,
                    "received_at": interaction.received_at,
                }
            )
        if len(found) < page_size:
            break
        after = int(found[-1][0].id or 0)
