"""The console's webhooks page: every endpoint with its events by where they stand, a form
to subscribe one (its signing secret shown on the page that answers the form, this once:
never in a URL, a redirect or a later page), and buttons to requeue and delete."""

from __future__ import annotations

from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from tidings.console.mount import BASE, page, signed_in, state_of, to_login
from tidings.egress import EgressPolicy
from tidings.store.webhooks import WebhookEventType
from tidings.webhooks.service import (
    EndpointCreated,
    EndpointNotFound,
    EndpointRequest,
    WebhookProblem,
    create_endpoint,
    delete_endpoint,
    list_endpoints,
    requeue,
)

router = APIRouter(prefix=BASE, include_in_schema=False)
PAGE = f"{BASE}/webhooks"
FORM_LIMIT = 8 << 10
SHOWN = 500  # endpoints on the page; the API and the CLI page through any number


async def _render(
    request: Request,
    *,
    notice: str | None = None,
    created: EndpointCreated | None = None,
    form: dict[str, list[str]] | None = None,
    status: int = 200,
) -> Response:
    endpoints, _ = await list_endpoints(state_of(request).db, caller_app=None, limit=SHOWN)
    return page(
        request,
        "webhooks.html",
        "Webhooks",
        status=status,
        section="webhooks",
        endpoints=endpoints,
        event_types=[t.value for t in WebhookEventType],
        created=created,
        form=form or {},
        notice=notice,
    )


@router.get("/webhooks")
async def webhooks(request: Request) -> Response:
    if not signed_in(request):
        return to_login(request)
    return await _render(request, notice=request.query_params.get("notice"))


@router.post("/webhooks")
async def subscribe(request: Request) -> Response:
    if not signed_in(request):
        return to_login(request)
    form = parse_qs((await request.body())[:FORM_LIMIT].decode(errors="replace"))
    state = state_of(request)
    chosen = form.get("event_types") or []
    unknown = [t for t in chosen if t not in {e.value for e in WebhookEventType}]
    if unknown or not chosen:
        why = f"unknown event type {unknown[0]!r}" if unknown else "choose at least one event"
        return await _render(request, notice=f"Nothing was created: {why}.", form=form, status=422)
    app_id = (form.get("app_id") or [""])[0].strip() or None
    description = (form.get("description") or [""])[0].strip()[:200] or None
    ask = EndpointRequest(
        url=(form.get("url") or [""])[0].strip(),
        event_types=[WebhookEventType(t) for t in chosen],
        app_id=app_id,
        description=description,
    )
    try:
        created = await create_endpoint(
            state.db,
            state.secrets,
            EgressPolicy.from_settings(state.settings),
            ask,
            caller_app=None,
        )
    except WebhookProblem as problem:
        notice = f"Nothing was created: {problem.field}: {problem.message}"
        return await _render(request, notice=notice, form=form, status=422)
    return await _render(request, notice=f"Endpoint {created.id} created.", created=created)


@router.post("/webhooks/{endpoint_id}/delete")
async def delete(request: Request, endpoint_id: str) -> Response:
    if not signed_in(request):
        return to_login(request)
    try:
        await delete_endpoint(state_of(request).db, endpoint_id, caller_app=None)
    except EndpointNotFound as error:
        return _back(str(error))
    return _back(f"Endpoint {endpoint_id} deleted.")


@router.post("/webhooks/{endpoint_id}/requeue")
async def requeue_failed(request: Request, endpoint_id: str) -> Response:
    if not signed_in(request):
        return to_login(request)
    try:
        count = await requeue(state_of(request).db, endpoint_id, caller_app=None)
    except EndpointNotFound as error:
        return _back(str(error))
    return _back(f"Endpoint {endpoint_id}: {count} set-aside events requeued.")


def _back(notice: str) -> Response:
    return RedirectResponse(f"{PAGE}?notice={quote(notice)}", status_code=303)
