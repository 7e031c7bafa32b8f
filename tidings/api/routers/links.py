"""Tracked links: following a push's ``link`` records the click, then redirects.

No API key: the device's browser (or the app) follows the link. The signature, which only
tidings can compute (tidings.push.links), stands in for one: a link tidings did not put in a
push is refused, so this is no open redirect and nobody can count clicks for pushes that were
never sent. The click is recorded like any report (committed before the answer, idempotent:
following the link twice, or following it and reporting the click through the API, counts one
click); a store that fails costs the click, never the user's way to the link.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from tidings.api.deps import State
from tidings.api.errors import ApiError, responses
from tidings.api.types import LABEL
from tidings.push.links import LINK_PREFIX, LinkSigner, location
from tidings.store.interactions import InteractionReport, Submitted, default_event_id
from tidings.store.models import InteractionKind
from tidings.store.types import utcnow
from tidings.tracebacks import describe

log = logging.getLogger(__name__)

router = APIRouter(prefix=LINK_PREFIX, tags=["links"])


@router.get(
    "/{tracking_id}",
    status_code=status.HTTP_302_FOUND,
    response_class=Response,
    responses={
        302: {"description": "The click is recorded; Location is the push's link"},
        **responses(400),
    },
    summary="Follow a push's tracked link",
)
async def follow(
    tracking_id: Annotated[
        str, Path(min_length=1, max_length=64, pattern=LABEL, description="the push's")
    ],
    u: Annotated[str, Query(min_length=1, max_length=4096, description="the link")],
    s: Annotated[str, Query(min_length=1, max_length=64, description="tidings' signature")],
    state: State,
) -> Response:
    signer = LinkSigner.of(state.settings, state.secrets)
    if not signer.verify(tracking_id, u, s):
        raise ApiError(
            400,
            "bad_link_signature",
            "this link was not issued by tidings for this push, or was altered",
        )
    report = InteractionReport(
        event_id=default_event_id(tracking_id, InteractionKind.CLICKED, None),
        tracking_id=tracking_id,
        kind=InteractionKind.CLICKED,
        action_id=None,
        occurred_at=utcnow(),
        source="link",
    )
    try:
        await state.recorder.record(Submitted(report, None))
    except Exception as error:
        log.warning("a tracked link's click could not be stored: %s", describe(error))
    return Response(
        status_code=status.HTTP_302_FOUND,
        headers={
            "Location": location(u),
            "Cache-Control": "no-store",  # every follow reaches tidings
            "Referrer-Policy": "no-referrer",  # the tracked URL stays out of the link's logs
        },
    )
