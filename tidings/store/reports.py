"""The funnel of a run, computed from the ledger and the interactions (the durable record)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.store.models import Delivery, DeliveryStatus, Interaction, InteractionStatus

ATTEMPTED = (
    DeliveryStatus.DELIVERED,
    DeliveryStatus.TOKEN_GONE,
    DeliveryStatus.TOKEN_SUSPECT,
    DeliveryStatus.CONFIG_FAULT,
    DeliveryStatus.FAILED,
)


@dataclass
class Funnel:
    profiles_targeted: int = 0
    profiles_reached: int = 0
    pushes_sent: int = 0
    delivered: int = 0
    tokens_invalidated: int = 0
    opened: int = 0
    clicked: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    not_sent_reasons: dict[str, int] = field(default_factory=dict)


async def run_funnel(session: AsyncSession, run_id: str) -> Funnel:
    """``pushes_sent`` counts pushes handed to a provider (whatever it answered); rows held
    back (no device, expired, app stopped, template error) are ``not_sent``."""
    funnel = Funnel()
    statuses = await session.exec(
        select(col(Delivery.status), func.count())
        .where(col(Delivery.run_id) == run_id)
        .group_by(col(Delivery.status))
    )
    funnel.by_status = {status: count for status, count in statuses.all()}
    funnel.pushes_sent = sum(funnel.by_status.get(s.value, 0) for s in ATTEMPTED)
    funnel.delivered = funnel.by_status.get(DeliveryStatus.DELIVERED.value, 0)
    funnel.tokens_invalidated = funnel.by_status.get(DeliveryStatus.TOKEN_GONE.value, 0)
    funnel.profiles_targeted = (
        await session.exec(
            select(func.count(func.distinct(col(Delivery.profile_id)))).where(
                col(Delivery.run_id) == run_id
            )
        )
    ).one()
    funnel.profiles_reached = (
        await session.exec(
            select(func.count(func.distinct(col(Delivery.profile_id))))
            .where(col(Delivery.run_id) == run_id)
            .where(col(Delivery.status) == DeliveryStatus.DELIVERED.value)
        )
    ).one()
    reasons = await session.exec(
        select(col(Delivery.reason), func.count())
        .where(col(Delivery.run_id) == run_id)
        .where(col(Delivery.status) == DeliveryStatus.NOT_SENT.value)
        .group_by(col(Delivery.reason))
    )
    funnel.not_sent_reasons = {str(reason): count for reason, count in reasons.all()}
    kinds = await session.exec(
        select(col(Interaction.kind), func.count(func.distinct(col(Interaction.delivery_id))))
        .join(Delivery, col(Delivery.id) == col(Interaction.delivery_id))
        .where(col(Delivery.run_id) == run_id)
        .where(col(Interaction.status) == InteractionStatus.MATCHED.value)
        .group_by(col(Interaction.kind))
    )
    per_kind = {str(kind): int(count) for kind, count in kinds.all()}
    funnel.opened = per_kind.get("opened", 0)
    funnel.clicked = per_kind.get("clicked", 0)
    return funnel
