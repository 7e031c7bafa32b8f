"""The funnel of a run, computed from the ledger and the interactions (the durable record).

``opened`` counts a push as opened when its device reported an open *or a click*: a click
implies an open (a user taps the notification to follow its link), which is how the journey
itself decides (a wait_for or a condition on ``opened`` is satisfied by a click too), so the
report and the branches a journey took agree. ``clicked`` counts clicks only.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.store.models import (
    Delivery,
    DeliveryStatus,
    Interaction,
    InteractionStatus,
    JourneyEvent,
)

ATTEMPTED = (
    DeliveryStatus.DELIVERED,
    DeliveryStatus.UNKNOWN,
    DeliveryStatus.TOKEN_GONE,
    DeliveryStatus.TOKEN_SUSPECT,
    DeliveryStatus.CONFIG_FAULT,
    DeliveryStatus.FAILED,
)

# rows never handed to a provider: held back (with their reason), or expired first
NOT_SENT = (DeliveryStatus.NOT_SENT.value, DeliveryStatus.EXPIRED.value)
EXPIRED_REASON = "expired before it could be sent (TTL)"

OPENED_KINDS = ("opened", "clicked")
OPENED_RULE = (
    "opened: pushes whose device reported an open or a click (a click implies an open, as "
    "in wait_for and condition nodes)"
)


def _not_sent_reason(status: str, reason: str | None) -> str:
    """A not-sent row's reason for the reports; expired rows share one (theirs name the
    moment each TTL ran out, which would give every row a line of its own)."""
    return EXPIRED_REASON if status == DeliveryStatus.EXPIRED.value else reason or "unknown"


@dataclass
class Funnel:
    profiles_targeted: int = 0
    profiles_reached: int = 0
    pushes_sent: int = 0
    delivered: int = 0
    tokens_invalidated: int = 0
    opened: int = 0  # pushes opened or clicked (OPENED_RULE)
    clicked: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    not_sent_reasons: dict[str, int] = field(default_factory=dict)
    opened_rule: str = OPENED_RULE
    # sent, and the provider's answer never came (they may have been delivered)
    unknown: int = 0
    # delivered after a request whose answer was lost: the provider may hold two copies
    # (the device shows one: the collapse id and notification tag replace)
    possible_duplicates: int = 0
    # rows that took more than one request (retried after a transient failure)
    retried: int = 0


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
    funnel.unknown = funnel.by_status.get(DeliveryStatus.UNKNOWN.value, 0)
    for retried, twice in (await _retries(session, run_id)).values():
        funnel.retried += retried
        funnel.possible_duplicates += twice
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
        select(col(Delivery.status), col(Delivery.reason), func.count())
        .where(col(Delivery.run_id) == run_id)
        .where(col(Delivery.status).in_(NOT_SENT))
        .group_by(col(Delivery.status), col(Delivery.reason))
    )
    not_sent: Counter[str] = Counter()
    for status, reason, count in reasons.all():
        not_sent[_not_sent_reason(status, reason)] += count
    funnel.not_sent_reasons = dict(not_sent)
    funnel.opened = sum((await _interacted(session, run_id, OPENED_KINDS)).values())
    funnel.clicked = sum((await _interacted(session, run_id, ("clicked",))).values())
    return funnel


async def _retries(session: AsyncSession, run_id: str) -> dict[str | None, tuple[int, int]]:
    """Per push node: rows that took more than one request, and delivered rows one of whose
    requests lost its answer (possible duplicates)."""
    rows = await session.exec(
        select(
            col(Delivery.node_id),
            func.count().filter(col(Delivery.attempts) > 1),
            func.count().filter(
                (col(Delivery.unknown_outcomes) > 0)
                & (col(Delivery.status) == DeliveryStatus.DELIVERED.value)
            ),
        )
        .where(col(Delivery.run_id) == run_id)
        .group_by(col(Delivery.node_id))
    )
    return {node_id: (int(retried), int(twice)) for node_id, retried, twice in rows.all()}


async def _interacted(
    session: AsyncSession, run_id: str, kinds: tuple[str, ...]
) -> dict[str | None, int]:
    """Per push node, the run's pushes with at least one matched interaction of ``kinds``."""
    rows = await session.exec(
        select(col(Delivery.node_id), func.count(func.distinct(col(Interaction.delivery_id))))
        .join(Delivery, col(Delivery.id) == col(Interaction.delivery_id))
        .where(col(Delivery.run_id) == run_id)
        .where(col(Interaction.status) == InteractionStatus.MATCHED.value)
        .where(col(Interaction.kind).in_(kinds))
        .group_by(col(Delivery.node_id))
    )
    return {node_id: int(count) for node_id, count in rows.all()}


@dataclass
class NodeFunnel:
    """One push node's funnel within a run."""

    node_id: str
    targeted: int = 0  # profiles that reached the node (a ledger row each, sent or not)
    sent: int = 0  # pushes handed to a provider, whatever it answered
    delivered: int = 0
    opened: int = 0  # pushes opened or clicked (OPENED_RULE)
    clicked: int = 0
    tokens_invalidated: int = 0
    failed: int = 0
    unknown: int = 0  # sent, answer never came (may have been delivered)
    retried: int = 0  # rows that took more than one request
    possible_duplicates: int = 0  # delivered after a request whose answer was lost
    postponed: int = 0  # sends held for quiet hours (a profile may be held more than once)
    not_sent: dict[str, int] = field(default_factory=dict)  # reason -> ledger rows
    opened_rule: str = OPENED_RULE


async def node_funnels(
    session: AsyncSession, run_id: str, node_order: list[str] | None = None
) -> list[NodeFunnel]:
    """The funnel of every push node of a run, from the ledger, the interactions and the
    journey events, in ``node_order`` (the journey's) when given."""
    funnels: dict[str, NodeFunnel] = {}

    def of(node_id: str | None) -> NodeFunnel:
        key = node_id or "-"
        return funnels.setdefault(key, NodeFunnel(key))

    by_status = await session.exec(
        select(col(Delivery.node_id), col(Delivery.status), func.count())
        .where(col(Delivery.run_id) == run_id)
        .group_by(col(Delivery.node_id), col(Delivery.status))
    )
    for node_id, status, count in by_status.all():
        funnel = of(node_id)
        if status in {s.value for s in ATTEMPTED}:
            funnel.sent += count
        if status == DeliveryStatus.DELIVERED.value:
            funnel.delivered += count
        elif status == DeliveryStatus.TOKEN_GONE.value:
            funnel.tokens_invalidated += count
        elif status == DeliveryStatus.FAILED.value:
            funnel.failed += count
        elif status == DeliveryStatus.UNKNOWN.value:
            funnel.unknown += count
    for push_node, (retried, twice) in (await _retries(session, run_id)).items():
        of(push_node).retried = retried
        of(push_node).possible_duplicates = twice
    targeted = await session.exec(
        select(col(Delivery.node_id), func.count(func.distinct(col(Delivery.profile_id))))
        .where(col(Delivery.run_id) == run_id)
        .group_by(col(Delivery.node_id))
    )
    for node_id, count in targeted.all():
        of(node_id).targeted = int(count)
    reasons = await session.exec(
        select(col(Delivery.node_id), col(Delivery.status), col(Delivery.reason), func.count())
        .where(col(Delivery.run_id) == run_id)
        .where(col(Delivery.status).in_(NOT_SENT))
        .group_by(col(Delivery.node_id), col(Delivery.status), col(Delivery.reason))
    )
    for node_id, status, reason, count in reasons.all():
        node_not_sent = of(node_id).not_sent
        label = _not_sent_reason(status, reason)
        node_not_sent[label] = node_not_sent.get(label, 0) + int(count)
    for node, count in (await _interacted(session, run_id, OPENED_KINDS)).items():
        of(node).opened = count
    for node, count in (await _interacted(session, run_id, ("clicked",))).items():
        of(node).clicked = count
    postponed = await session.exec(
        select(col(JourneyEvent.node_id), func.count())
        .where(col(JourneyEvent.run_id) == run_id)
        .where(col(JourneyEvent.kind) == "postponed")
        .group_by(col(JourneyEvent.node_id))
    )
    for held_at, count in postponed.all():
        of(held_at).postponed = int(count)
    order = {node: index for index, node in enumerate(node_order or [])}
    return sorted(funnels.values(), key=lambda f: (order.get(f.node_id, len(order)), f.node_id))


async def journey_event_counts(session: AsyncSession, run_id: str) -> dict[str, int]:
    """How many journey events of each kind a run recorded (goal exits, postponements...)."""
    rows = await session.exec(
        select(col(JourneyEvent.kind), func.count())
        .where(col(JourneyEvent.run_id) == run_id)
        .group_by(col(JourneyEvent.kind))
    )
    return {str(kind): int(count) for kind, count in rows.all()}


async def best_hour_choices(session: AsyncSession, run_id: str) -> dict[str, Counter[str]]:
    """Per best_hour node, how many times each choice was made (a choice as its journey
    event's detail keeps it: the hour and whose opens chose it)."""
    rows = await session.exec(
        select(col(JourneyEvent.node_id), col(JourneyEvent.detail), func.count())
        .where(col(JourneyEvent.run_id) == run_id)
        .where(col(JourneyEvent.kind) == "best_hour")
        .group_by(col(JourneyEvent.node_id), col(JourneyEvent.detail))
    )
    found: dict[str, Counter[str]] = {}
    for node_id, detail, count in rows.all():
        found.setdefault(str(node_id), Counter())[str(detail)] += int(count)
    return found
