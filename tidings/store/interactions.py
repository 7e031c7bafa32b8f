"""Storing interaction reports: idempotent on the event id, matched to the ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.store.dialect import insert_for
from tidings.store.models import Delivery, Interaction, InteractionKind, InteractionStatus


@dataclass(frozen=True)
class InteractionReport:
    event_id: str
    tracking_id: str
    kind: InteractionKind
    action_id: str | None
    occurred_at: datetime
    source: str
    device_token_hint: str | None = None


async def record_interaction(
    session: AsyncSession, report: InteractionReport, now: datetime
) -> tuple[Interaction, bool]:
    """Store the report (or find the one stored under its event id). Returns the row and
    whether this call stored it. Unknown tracking ids are kept as ``unmatched``."""
    delivery = (
        await session.exec(select(Delivery).where(col(Delivery.tracking_id) == report.tracking_id))
    ).first()
    values = {
        "event_id": report.event_id,
        "tracking_id": report.tracking_id,
        "kind": report.kind.value,
        "action_id": report.action_id,
        "status": (InteractionStatus.MATCHED if delivery else InteractionStatus.UNMATCHED).value,
        "delivery_id": delivery.id if delivery else None,
        "app_id": delivery.app_id if delivery else None,
        "profile_id": delivery.profile_id if delivery else None,
        "workflow_id": delivery.workflow_id if delivery else None,
        "node_id": delivery.node_id if delivery else None,
        "source": report.source,
        "details": {"device_token": report.device_token_hint} if report.device_token_hint else {},
        "occurred_at": report.occurred_at,
        "received_at": now,
        "forward_attempts": 0,
    }
    result = await session.exec(
        insert_for(session, Interaction)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["event_id"])
    )
    created = bool(getattr(result, "rowcount", 0))
    row = (
        await session.exec(select(Interaction).where(col(Interaction.event_id) == report.event_id))
    ).one()
    return row, created
