"""Planning a push batch: one ledger row per (profile visit, valid device), or one not-sent
row per profile that says why nothing goes out (no device, a template that cannot render, a
provider the app cannot reach). The frequency cap (caps.py) and the expiry (expiry.py) then
hold back what they must; :func:`hold_back` decides, per attempt, what an open row still may
do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from activities.contracts import PushBatch
from tidings.journeys.locales import choose_variant
from tidings.journeys.render import RenderError, render_message
from tidings.push import PushMessage
from tidings.push.message import size_problem
from tidings.store.apps import provider_stop
from tidings.store.ledger import Completion, LedgerRow, PlannedSend, send_key, tracking_id_for
from tidings.store.models import App, DeliveryStatus, Provider, SendCause
from tidings.store.targeting import Audience

PROVIDER_NAMES = {Provider.APNS.value: "APNs", Provider.FCM.value: "FCM"}
APP_STOPPED = "app stopped: "


@dataclass
class PlannedDelivery:
    """A planned ledger row with what its provider call needs."""

    plan: PlannedSend
    token: str | None = None
    message: PushMessage | None = None


def plan_sends(batch: PushBatch, app: App, audience: Audience) -> list[PlannedDelivery]:
    """One ledger row per (profile visit, valid device); a profile with no device, or whose
    push cannot be rendered or is too large, gets one not-sent row that says why."""
    by_profile: dict[str, list[PlannedDelivery]] = {}
    for target in audience.targets:
        by_profile.setdefault(target.profile_id, []).append(
            PlannedDelivery(
                PlannedSend("", "", target.profile_id, target.device_id, target.provider, 0),
                token=target.token,
            )
        )
    sends: list[PlannedDelivery] = []
    for visit in batch.profiles:
        profile = audience.profiles.get(visit.profile_id)
        devices = by_profile.get(visit.profile_id, [])
        message: PushMessage | None = None
        blocked: tuple[str, SendCause] | None = None
        if profile is None:
            blocked = ("no such profile", SendCause.NO_DEVICE)
        elif not devices:
            blocked = ("no valid device", SendCause.NO_DEVICE)
        else:
            message, problem = render_for(batch, profile)
            blocked = (problem, SendCause.TEMPLATE) if problem else None
        if not devices:
            devices = [PlannedDelivery(PlannedSend("", "", visit.profile_id, None, None, 0))]
        for device in devices:
            block = blocked or provider_block(app, device.plan.provider)
            key = send_key(batch.workflow_id, batch.node_id, visit.visit, device.plan.device_id)
            device.plan = PlannedSend(
                send_key=key,
                tracking_id=tracking_id_for(key),
                profile_id=visit.profile_id,
                device_id=device.plan.device_id,
                provider=device.plan.provider,
                visit=visit.visit,
                status=DeliveryStatus.NOT_SENT if block else DeliveryStatus.PENDING,
                reason=block[0] if block else None,
                cause=block[1] if block else None,
            )
            device.message = None if block else message
            sends.append(device)
    return sends


def render_for(batch: PushBatch, profile: dict[str, Any]) -> tuple[PushMessage | None, str | None]:
    """The profile's push (its locale's variant), or why it cannot be sent. A template that
    fails for this profile fails this profile's push only, never the batch."""
    locale = profile.get("locale")
    _, content = choose_variant(
        batch.content, batch.locales, locale if isinstance(locale, str) else None
    )
    try:
        message = render_message(content, batch.ttl_s, profile)
    except RenderError as error:
        return None, f"template error: {error}"
    problem = size_problem(message)
    if problem is not None:
        return None, problem
    return message, None


def provider_block(app: App, provider: str | None) -> tuple[str, SendCause] | None:
    """Why the app cannot send to ``provider`` now: its sends there are stopped, or it has
    no credentials for it."""
    if provider not in PROVIDER_NAMES:
        return None
    stop = provider_stop(app, provider)
    if stop is not None:
        return f"{APP_STOPPED}{stop.reason}", SendCause.APP_STOPPED
    if not (app.apns_secret if provider == Provider.APNS.value else app.fcm_secret):
        return f"app has no {PROVIDER_NAMES[provider]} credentials", SendCause.NO_CREDENTIALS
    return None


@dataclass(frozen=True)
class SendLimits:
    """When this attempt's open rows stop being worth sending."""

    # the pushes' TTL ran out (None: no TTL)
    expired: bool
    # transient failures have been retried for the node's whole retry horizon
    horizon_passed: bool
    horizon: str = ""


def hold_back(
    pending: list[PlannedDelivery], rows: dict[str, LedgerRow], limits: SendLimits
) -> tuple[list[PlannedDelivery], list[Completion]]:
    """Open rows that must not go out now: this attempt's plan holds them back (the app was
    stopped meanwhile, a rule applies), the push expired, or its retry horizon passed. A row
    whose last request was sent and never answered keeps the ``unknown`` status it has: it
    may have been delivered."""
    go: list[PlannedDelivery] = []
    held: list[Completion] = []
    for send in pending:
        row = rows[send.plan.send_key]
        sent = row.status is DeliveryStatus.UNKNOWN
        if send.plan.status is not DeliveryStatus.PENDING:
            status = DeliveryStatus.UNKNOWN if sent else send.plan.status
            held.append(_close(row, status, send.plan.reason, send.plan.cause))
        elif limits.expired:
            status = DeliveryStatus.UNKNOWN if sent else DeliveryStatus.EXPIRED
            held.append(_close(row, status, "expired", SendCause.EXPIRED))
        elif limits.horizon_passed:
            status = DeliveryStatus.UNKNOWN if sent else DeliveryStatus.FAILED
            reason = f"not delivered within its retry horizon ({limits.horizon})"
            if row.reason and row.attempts:
                reason = f"{reason}; last answer: {row.reason}"
            held.append(_close(row, status, reason, SendCause.RETRY_HORIZON))
        else:
            go.append(send)
    return go, held


def _close(
    row: LedgerRow, status: DeliveryStatus, reason: str | None, cause: SendCause | None
) -> Completion:
    if status is DeliveryStatus.UNKNOWN:
        reason = f"sent, answer lost; not resent: {reason}"
    return Completion(row.id, status, reason, None, cause, close=True)


def horizon_deadline(batch: PushBatch, default_horizon_s: float) -> datetime:
    """The moment the batch's transient failures stop being retried: its node's retry
    horizon after the batch was first scheduled."""
    seconds = batch.retry_horizon_s if batch.retry_horizon_s is not None else default_horizon_s
    return batch.reached_at + timedelta(seconds=seconds)
