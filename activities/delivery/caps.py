"""The frequency cap, part of planning a push batch.

``DeliveryActivities.deliver`` asks :func:`capped_in_batch` once per batch (one ledger query
per 900 profiles) and hands the answer to :func:`hold_capped`, which turns the capped
profiles' planned sends into not-sent rows naming the cap, through the activity's existing
not-sent path. A capped profile still moves on down the journey.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import datetime

from activities.contracts import PushBatch
from activities.delivery.plan import PlannedDelivery
from tidings.store.caps import capped_profiles
from tidings.store.db import Database
from tidings.store.models import DeliveryStatus, SendCause


async def capped_in_batch(db: Database, batch: PushBatch, now: datetime) -> dict[str, str]:
    """Profile id -> why the cap holds its push back; empty when the batch has no cap."""
    if batch.frequency_cap is None:
        return {}
    async with db.read() as session:
        return await capped_profiles(
            session,
            batch.frequency_cap,
            {visit.profile_id: visit.visit for visit in batch.profiles},
            workflow_id=batch.workflow_id,
            node_id=batch.node_id,
            now=now,
        )


def hold_capped(sends: Iterable[PlannedDelivery], capped: Mapping[str, str]) -> None:
    """Mark the capped profiles' sends not sent (sends another rule already holds keep
    their own reason)."""
    if not capped:
        return
    for send in sends:
        reason = capped.get(send.plan.profile_id)
        if reason is not None and send.plan.status is DeliveryStatus.PENDING:
            send.plan = dataclasses.replace(
                send.plan,
                status=DeliveryStatus.NOT_SENT,
                reason=reason,
                cause=SendCause.FREQUENCY_CAP,
            )
            send.message = None
