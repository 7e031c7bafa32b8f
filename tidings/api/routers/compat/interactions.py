"""The interaction endpoint apps call when a push is opened (1) or clicked (0).

The original takes these without an API key (apps call it from the device); tidings checks
instead that the ``DeviceToken`` is the one the push was sent to (while that device is still
registered), so a tracking id alone does not let anyone report for someone else's push. The
device's current token is accepted too, and so is a token it had when the push was sent and
has since been refreshed away: an app reporting an open after a refresh may send either.

A report naming no push, or a push whose device has since been deleted, is refused (400) and
only counted, never stored: anyone may call this endpoint, so storing what it is sent would
let anyone fill the store. The native API (``/v1/interactions``, with a key) keeps unmatched
reports for inspection.
"""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, Response, status
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.api.deps import ApiState, State, WriteSession
from tidings.api.errors import ApiError
from tidings.api.routers.compat.models import InteractionEvent
from tidings.api.routers.compat.route import BAD_REQUEST, CompatRoute, OrgId
from tidings.push.masking import mask_token
from tidings.store.devices import had_token_after
from tidings.store.interactions import (
    EventIdReused,
    InteractionReport,
    default_event_id,
    find_delivery,
    record_interaction,
)
from tidings.store.models import Delivery, Device
from tidings.store.types import utcnow

log = logging.getLogger(__name__)

LOG_UNMATCHED_EVERY_S = 60.0

router = APIRouter(
    prefix="/pushdatareceiver",
    tags=["compat: Customer Insights - Journeys"],
    route_class=CompatRoute,
    responses=BAD_REQUEST,
)


async def _device_gone(session: AsyncSession, delivery: Delivery) -> bool:
    return delivery.device_id is not None and await session.get(Device, delivery.device_id) is None


async def _sent_to_another_device(session: AsyncSession, delivery: Delivery, token: str) -> bool:
    if delivery.device_id is None:
        return False
    device = await session.get(Device, delivery.device_id)
    if device is None:
        return False
    return not await had_token_after(session, device, token, delivery.created_at)


def _count_unmatched(state: ApiState) -> None:
    """Count the refused report, and log the count at most once a minute."""
    state.unmatched_compat_reports += 1
    now = time.monotonic()
    last = state.unmatched_compat_logged_at
    if last is None or now - last >= LOG_UNMATCHED_EVERY_S:
        state.unmatched_compat_logged_at = now
        log.info(
            "compat interaction reports naming no push refused (not stored): %d since start",
            state.unmatched_compat_reports,
        )


@router.post(
    "/events",
    status_code=status.HTTP_202_ACCEPTED,
    response_class=Response,
    summary="Report an opened (1) or clicked (0) push",
)
async def report(
    org_id: OrgId, body: InteractionEvent, session: WriteSession, state: State
) -> Response:
    """202 once stored; 400 for an unknown tracking id (counted, not stored) or a device
    token the push was not sent to (nothing stored)."""
    now = utcnow()
    delivery = await find_delivery(session, body.TrackingId)
    if delivery is None or await _device_gone(session, delivery):
        _count_unmatched(state)
        raise ApiError(400, "unknown_tracking_id", f"no push has tracking id {body.TrackingId!r}")
    if await _sent_to_another_device(session, delivery, body.DeviceToken):
        raise ApiError(400, "device_token_mismatch", "the push was not sent to this DeviceToken")
    kind = body.kind
    event_id = default_event_id(body.TrackingId, kind, None)
    try:
        await record_interaction(
            session,
            InteractionReport(
                event_id=event_id,
                tracking_id=body.TrackingId,
                kind=kind,
                action_id=None,
                occurred_at=now,
                source="compat",
                device_token_hint=mask_token(body.DeviceToken),
            ),
            now,
            delivery=delivery,
        )
    except EventIdReused as error:
        # only if a native report chose this push's default event id for another kind
        raise ApiError(400, "event_id_reused", str(error)) from None
    await session.commit()
    return Response(status_code=status.HTTP_202_ACCEPTED)
