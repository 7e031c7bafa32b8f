"""The console's schedules page: every schedule with its cadence, audience, next firing
times (in its own time zone) and latest firing, and buttons to pause and resume it."""

from __future__ import annotations

from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from tidings.console.mount import BASE, page, signed_in, state_of, to_login
from tidings.console.temporal import temporal_client
from tidings.runs.schedules import (
    ScheduleNotFound,
    ScheduleView,
    list_schedules,
    pause_schedule,
    resume_schedule,
)

router = APIRouter(prefix=BASE, include_in_schema=False)
PAGE = f"{BASE}/schedules"


@router.get("/schedules")
async def schedules(request: Request) -> Response:
    if not signed_in(request):
        return to_login(request)
    client = await temporal_client(request.app)
    notice = request.query_params.get("notice")
    listed: list[ScheduleView] = []
    if client is None:
        notice = "Temporal does not answer: schedules cannot be shown."
    else:
        listed = await list_schedules(client, state_of(request).db)
    return page(
        request,
        "schedules.html",
        "Schedules",
        section="schedules",
        schedules=[_shown(view) for view in listed],
        notice=notice,
    )


def _shown(view: ScheduleView) -> dict[str, object]:
    zone = ZoneInfo(view.time_zone)
    audience = view.audience
    parts = []
    if audience.get("segment"):
        parts.append(f"segment {audience['segment']}")
    if audience.get("app"):
        parts.append(f"app {audience['app']}")
    if audience.get("where"):
        parts.append(
            ", ".join(f"{w['attribute']} {w['op']} {w.get('value')!r}" for w in audience["where"])
        )
    listed = len(audience.get("profile_ids", [])) + len(audience.get("emails", []))
    if listed:
        parts.append(f"{listed} listed profile{'s' if listed != 1 else ''}")
    return {
        "view": view,
        "state": "missing" if view.missing else "paused" if view.paused else "active",
        "audience": "; ".join(parts) or "the journey's own",
        "next_times": [f"{t.astimezone(zone):%Y-%m-%d %H:%M:%S %Z}" for t in view.next_times],
    }


@router.post("/schedules/{schedule_id}/pause")
async def pause(request: Request, schedule_id: str) -> Response:
    return await _change(request, schedule_id, pausing=True)


@router.post("/schedules/{schedule_id}/resume")
async def resume(request: Request, schedule_id: str) -> Response:
    return await _change(request, schedule_id, pausing=False)


async def _change(request: Request, schedule_id: str, *, pausing: bool) -> Response:
    if not signed_in(request):
        return to_login(request)
    client = await temporal_client(request.app)
    if client is None:
        return _back("Temporal does not answer: nothing changed.")
    db = state_of(request).db
    try:
        if pausing:
            await pause_schedule(client, db, schedule_id, "paused from the console")
        else:
            await resume_schedule(client, db, schedule_id)
    except ScheduleNotFound as error:
        return _back(str(error))
    return _back(f"Schedule {schedule_id} {'paused' if pausing else 'resumed'}.")


def _back(notice: str) -> Response:
    return RedirectResponse(f"{PAGE}?notice={quote(notice)}", status_code=303)
