"""The console's pages: journeys, a journey version's graph, a run, a profile, an app."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from sqlmodel import col, select
from temporalio.client import Client

from tidings.api.errors import ApiError
from tidings.api.routers.apps import check_app
from tidings.console.graph import DrawnGraph, draw
from tidings.console.mount import BASE, page, signed_in, state_of, to_login
from tidings.console.queries import (
    activity_over_time,
    devices_of_profile,
    journeys_with_runs,
    runs_of,
    token_health,
    versions_of,
)
from tidings.console.temporal import temporal_client
from tidings.journeys.files import MAX_JOURNEY_FILE_BYTES
from tidings.journeys.model import JourneyDefinition
from tidings.journeys.predicates import parse_where
from tidings.runs.cancel import cancel_run
from tidings.runs.errors import RunNotFound, StartError
from tidings.runs.experiments import PromotionRefused, promote_winner
from tidings.runs.export import check_run, export_run
from tidings.runs.journeys import (
    JourneyProblem,
    JourneyProblems,
    definition_from_text,
    save_definition,
)
from tidings.runs.pushes import ProfileNotFound, profile_timeline, run_pushes
from tidings.runs.report import run_report
from tidings.runs.segments import list_segments
from tidings.runs.start import AudienceChoice, start_run
from tidings.runs.test_sends import (
    TestSendAsk,
    TestSendProblem,
    prepare,
    record_and_start,
    split_devices,
    view_of,
    wait_for_outcome,
)
from tidings.runs.view import run_view
from tidings.store.apps import provider_stop
from tidings.store.models import App, JourneyRun, JourneyVersion, Profile, TestSend
from tidings.store.reports import node_funnels, run_funnel
from tidings.store.test_sends import list_test_sends

router = APIRouter(prefix=BASE, include_in_schema=False)
FORM_LIMIT = 8 << 10
# how long a test send's form waits for the worker before showing it as it stands
CONSOLE_WAIT_S = 10.0


@router.get("/")
async def journeys(request: Request) -> Response:
    if not signed_in(request):
        return to_login(request)
    async with state_of(request).db.read() as session:
        listed = await journeys_with_runs(session)
    return page(request, "journeys.html", "Journeys", section="journeys", journeys=listed)


# a journey's text, urlencoded (at most three bytes a character), with room for the field name
JOURNEY_FORM_LIMIT = 3 * MAX_JOURNEY_FILE_BYTES + 1024


@router.post("/journeys")
async def save_journey(request: Request) -> Response:
    """Save the form's journey (YAML or JSON) as its newest version; problems are shown by
    node and field beside the text, which is kept, and nothing is stored."""
    if not signed_in(request):
        return to_login(request)
    body = await request.body()
    state = state_of(request)
    text = (
        ""
        if len(body) > JOURNEY_FORM_LIMIT
        else (parse_qs(body.decode(errors="replace")).get("definition") or [""])[0]
    )
    problems: list[JourneyProblem]
    if len(body) > JOURNEY_FORM_LIMIT:
        problems = [_too_large()]
    elif not text.strip():
        problems = [JourneyProblem(node=None, field="body", message="the journey is empty")]
    else:
        try:
            definition = definition_from_text(text, "json" if text.lstrip()[:1] == "{" else "yaml")
        except JourneyProblems as error:
            problems = error.problems
        else:
            saved = await save_definition(state.db, definition)
            notice = (
                f"Saved as version {saved.version}."
                if saved.created
                else f"Unchanged: version {saved.version} is the same journey."
            )
            return _back(f"{BASE}/journeys/{quote(saved.id)}", notice)
    async with state.db.read() as session:
        listed = await journeys_with_runs(session)
    return page(
        request,
        "journeys.html",
        "Journeys",
        status=422,
        section="journeys",
        journeys=listed,
        problems=problems,
        definition=text,
    )


def _too_large() -> JourneyProblem:
    limit = MAX_JOURNEY_FILE_BYTES // 1024
    return JourneyProblem(node=None, field="body", message=f"the journey is over {limit} KiB")


@router.get("/journeys/{journey_id}")
async def journey(request: Request, journey_id: str) -> Response:
    if not signed_in(request):
        return to_login(request)
    async with state_of(request).db.read() as session:
        versions = await versions_of(session, journey_id)
        runs = await runs_of(session, journey_id)
        tried = await list_test_sends(session, journey_id=journey_id, limit=5, before=None)
        shown = await session.get(TestSend, request.query_params.get("test_send") or "")
    if not versions and not runs:
        return page(request, "missing.html", "No such journey", status=404, what=journey_id)
    segments, _ = await list_segments(state_of(request).db, limit=500)
    return page(
        request,
        "journey.html",
        f"Journey {journey_id}",
        section="journeys",
        journey_id=journey_id,
        versions=versions,
        runs=runs,
        push_nodes=_push_nodes(versions[0].definition) if versions else [],
        test_sends=[view_of(row) for row in tried],
        shown_test_send=view_of(shown) if shown and shown.journey_id == journey_id else None,
        segment_names=[segment.name for segment in segments],
        notice=request.query_params.get("notice"),
    )


def _push_nodes(definition: dict[str, Any]) -> list[str]:
    return [str(n.get("id")) for n in definition.get("nodes", []) if n.get("type") == "push"]


@router.post("/journeys/{journey_id}/test-sends")
async def try_push(request: Request, journey_id: str) -> Response:
    """Send one push node of the journey's latest version, rendered for the form's profile,
    to its devices (or the ones listed), without a run; the outcome shows on the journey's
    page."""
    if not signed_in(request):
        return to_login(request)
    form = parse_qs((await request.body())[:FORM_LIMIT].decode(errors="replace"))
    state = state_of(request)
    back = f"{BASE}/journeys/{quote(journey_id)}"
    listed = [
        item.strip()
        for item in re.split(r"[\s,]+", (form.get("devices") or [""])[0])
        if item.strip()
    ]
    ids, tokens = split_devices(listed)
    ask = TestSendAsk(
        journey_id=journey_id,
        node_id=(form.get("node") or [""])[0].strip(),
        profile_id=(form.get("profile") or [""])[0].strip(),
        device_ids=ids,
        tokens=tokens,
        requested_by="console",
    )
    try:
        row = await prepare(state.db, state.settings, ask)
    except TestSendProblem as problem:
        return _back(back, f"Nothing was sent: {problem.field}: {problem.message}")
    client = await temporal_client(request.app)
    if client is None:
        return _back(back, "Temporal does not answer: nothing was sent.")
    started = await record_and_start(client, state.db, state.settings, row)
    await wait_for_outcome(client, state.db, started.id, CONSOLE_WAIT_S)
    return RedirectResponse(f"{back}?test_send={quote(started.id)}", status_code=303)


@router.get("/journeys/{journey_id}/versions/{version}")
async def journey_version(request: Request, journey_id: str, version: int) -> Response:
    if not signed_in(request):
        return to_login(request)
    async with state_of(request).db.read() as session:
        stored = await session.get(JourneyVersion, (journey_id, version))
    if stored is None:
        return page(request, "missing.html", "No such version", status=404, what=journey_id)
    definition = JourneyDefinition.model_validate(stored.definition)
    return page(
        request,
        "version.html",
        f"Journey {journey_id}, version {version}",
        section="journeys",
        journey_id=journey_id,
        version=version,
        graph=draw(definition),
        counts_url=None,
    )


@router.post("/journeys/{journey_id}/versions/{version}/start")
async def start(request: Request, journey_id: str, version: int) -> Response:
    """Start the version for the listed profiles, or every profile with a valid device in its
    app (the journey's audience when it names one), narrowed by the form's attribute filters
    (one per line); or for the profiles of the segment the form names."""
    if not signed_in(request):
        return to_login(request)
    form = parse_qs((await request.body())[:FORM_LIMIT].decode(errors="replace"))
    state = state_of(request)
    back = f"{BASE}/journeys/{quote(journey_id)}"
    client = await temporal_client(request.app)
    if client is None:
        return _back(back, "Temporal does not answer: the run was not started.")
    async with state.db.read() as session:
        stored = await session.get(JourneyVersion, (journey_id, version))
    if stored is None:
        return page(request, "missing.html", "No such version", status=404, what=journey_id)
    lines = (form.get("where") or [""])[0].splitlines()
    listed = [
        item.strip()
        for item in re.split(r"[\s,]+", (form.get("profiles") or [""])[0])
        if item.strip()
    ]
    segment = (form.get("segment") or [""])[0].strip() or None
    try:
        where = [parse_where(line.strip()) for line in lines if line.strip()]
        started = await start_run(
            client,
            state.db,
            state.settings,
            JourneyDefinition.model_validate(stored.definition),
            audience=AudienceChoice(profile_ids=listed, where=where, segment=segment),
        )
    except (StartError, ValueError) as error:
        return _back(back, f"The run was not started: {error}")
    return RedirectResponse(f"{BASE}/runs/{quote(started.run_id)}", status_code=303)


def _back(target: str, notice: str) -> Response:
    return RedirectResponse(f"{target}?notice={quote(notice)}", status_code=303)


@router.get("/runs/{run_id}")
async def run(request: Request, run_id: str) -> Response:
    if not signed_in(request):
        return to_login(request)
    state = state_of(request)
    async with state.db.read() as session:
        stored = await session.get(JourneyRun, run_id)
        if stored is None:
            return page(request, "missing.html", "No such run", status=404, what=run_id)
        definition = JourneyDefinition.model_validate(stored.definition)
        funnel = await run_funnel(session, run_id)
        over_time = await activity_over_time(session, run_id)
    report = await run_report(state.db, run_id)
    counts = await _node_counts(request, stored, definition)
    graph = _with_counts(draw(definition), counts["nodes"])
    return page(
        request,
        "run.html",
        f"Run {run_id}",
        section="journeys",
        run=stored,
        live=counts,
        journey_id=stored.journey_id,
        graph=graph,
        counts_url=f"{BASE}/runs/{quote(run_id)}/counts.json",
        funnel=funnel,
        report=report,
        over_time=over_time,
        peak=max([max(b.sent, b.interactions) for b in over_time] or [1]) or 1,
        notice=request.query_params.get("notice"),
    )


PUSHES_PAGE = 50


@router.get("/runs/{run_id}/pushes")
async def pushes(
    request: Request, run_id: str, after: int | None = None, outcome: str = ""
) -> Response:
    """The run's pushes, a page at a time: profile, device, tracking id, outcome."""
    if not signed_in(request):
        return to_login(request)
    try:
        rows = await run_pushes(
            state_of(request).db,
            run_id,
            after=after,
            limit=PUSHES_PAGE + 1,
            outcome=outcome or None,
        )
    except RunNotFound:
        return page(request, "missing.html", "No such run", status=404, what=run_id)
    more = len(rows) > PUSHES_PAGE
    rows = rows[:PUSHES_PAGE]
    return page(
        request,
        "pushes.html",
        f"Pushes of run {run_id}",
        section="journeys",
        run_id=run_id,
        pushes=rows,
        outcome=outcome,
        next_after=rows[-1].id if more and rows else None,
    )


@router.get("/runs/{run_id}/export.ndjson")
async def export(request: Request, run_id: str) -> Response:
    """The run's pushes and interactions as NDJSON, what the API's export streams, for a
    signed-in browser to download."""
    if not signed_in(request):
        return to_login(request)
    db = state_of(request).db
    try:
        await check_run(db, run_id)
    except RunNotFound:
        return page(request, "missing.html", "No such run", status=404, what=run_id)
    return StreamingResponse(
        export_run(db, run_id),
        media_type="application/x-ndjson",
        headers={"content-disposition": f'attachment; filename="{run_id}.ndjson"'},
    )


@router.get("/runs/{run_id}/counts.json")
async def run_counts(request: Request, run_id: str) -> Response:
    """Each node's counts now, for the graph to refresh itself while the run moves."""
    if not signed_in(request):
        return JSONResponse({"error": "log in again"}, status_code=401)
    async with state_of(request).db.read() as session:
        stored = await session.get(JourneyRun, run_id)
    if stored is None:
        return JSONResponse({"error": f"no run {run_id!r}"}, status_code=404)
    definition = JourneyDefinition.model_validate(stored.definition)
    return JSONResponse(await _node_counts(request, stored, definition))


async def _node_counts(
    request: Request, stored: JourneyRun, definition: JourneyDefinition
) -> dict[str, Any]:
    """Per node: profiles standing there now (from the running workflows, when Temporal
    answers) and, on push nodes, the ledger's targeted, sent, delivered and opened."""
    state = state_of(request)
    order = [node.id for node in definition.nodes]
    async with state.db.read() as session:
        per_node = {f.node_id: f for f in await node_funnels(session, stored.id, order)}
        fresh = await session.get(JourneyRun, stored.id)
    status = str((fresh or stored).status)
    positions: dict[str, int] = {}
    client: Client | None = await temporal_client(request.app) if status == "running" else None
    if client is not None:
        try:
            view = await run_view(client, state.db, stored.id)
            positions = dict(view.positions)
            status = view.status
        except RunNotFound:
            pass
    nodes: dict[str, dict[str, int]] = {}
    for node_id in order:
        counts: dict[str, int] = {}
        if node_id in positions:
            counts["here"] = positions[node_id]
        funnel = per_node.get(node_id)
        if funnel is not None:
            counts.update(
                targeted=funnel.targeted,
                sent=funnel.sent,
                delivered=funnel.delivered,
                opened=funnel.opened,
            )
        nodes[node_id] = counts
    return {"status": status, "nodes": nodes}


def _with_counts(graph: DrawnGraph, counts: dict[str, dict[str, int]]) -> DrawnGraph:
    for node in graph.nodes:
        node.counts = counts.get(node.id, {})
    return graph


@router.post("/runs/{run_id}/cancel")
async def cancel(request: Request, run_id: str) -> Response:
    if not signed_in(request):
        return to_login(request)
    target = f"{BASE}/runs/{quote(run_id)}"
    client = await temporal_client(request.app)
    if client is None:
        return _back(target, "Temporal does not answer: the run was not cancelled.")
    try:
        await cancel_run(client, state_of(request).db, run_id)
    except RunNotFound as error:
        return _back(target, str(error))
    return _back(target, "Cancelled: the run stops its profiles where they stand.")


@router.post("/runs/{run_id}/promote")
async def promote(request: Request, run_id: str) -> Response:
    """An experiment split's clear winner taken by every profile that reaches it from now."""
    if not signed_in(request):
        return to_login(request)
    target = f"{BASE}/runs/{quote(run_id)}"
    form = parse_qs((await request.body())[:FORM_LIMIT].decode(errors="replace"))
    node_id = (form.get("node_id") or [""])[0]
    client = await temporal_client(request.app)
    if client is None:
        return _back(target, "Temporal does not answer: nothing was promoted.")
    try:
        outcome = await promote_winner(client, state_of(request).db, run_id, node_id, by="console")
    except (RunNotFound, PromotionRefused) as error:
        return _back(target, f"Not promoted: {error}")
    return _back(
        target,
        f"Promoted branch {outcome.branch} of {node_id}: profiles reaching it now take it.",
    )


@router.get("/profiles")
async def find_profile(request: Request, id: str = "") -> Response:
    if not signed_in(request):
        return to_login(request)
    return RedirectResponse(f"{BASE}/profiles/{quote(id.strip(), safe='')}", status_code=303)


@router.get("/profiles/{profile_id}")
async def profile(request: Request, profile_id: str) -> Response:
    if not signed_in(request):
        return to_login(request)
    db = state_of(request).db
    try:
        timeline = list(reversed(await profile_timeline(db, profile_id)))
    except ProfileNotFound:
        return page(request, "missing.html", "No such profile", status=404, what=profile_id)
    async with db.read() as session:
        found = await session.get(Profile, profile_id)
        devices = await devices_of_profile(session, profile_id)
    return page(
        request,
        "profile.html",
        f"Profile {profile_id}",
        profile=found,
        devices=devices,
        timeline=timeline,
    )


@router.get("/apps")
async def apps(request: Request) -> Response:
    if not signed_in(request):
        return to_login(request)
    async with state_of(request).db.read() as session:
        listed = (await session.exec(select(App).order_by(col(App.id)))).all()
    return page(request, "apps.html", "Apps", section="apps", apps=listed)


@router.get("/apps/{app_id}")
async def app(request: Request, app_id: str) -> Response:
    if not signed_in(request):
        return to_login(request)
    async with state_of(request).db.read() as session:
        found = await session.get(App, app_id)
        health = await token_health(session, app_id) if found else None
    if found is None:
        return page(request, "missing.html", "No such app", status=404, what=app_id)
    return page(
        request,
        "app.html",
        f"App {app_id}",
        section="apps",
        app=found,
        providers=_providers(found),
        health=health,
        check=None,
    )


@router.post("/apps/{app_id}/check")
async def check(request: Request, app_id: str) -> Response:
    """Check the stored credentials with the providers now, as POST /v1/apps/{app}/check."""
    if not signed_in(request):
        return to_login(request)
    state = state_of(request)
    async with state.db.read() as session:
        found = await session.get(App, app_id)
        health = await token_health(session, app_id) if found else None
    if found is None:
        return page(request, "missing.html", "No such app", status=404, what=app_id)
    try:
        result: Any = await check_app(app_id, state)
        checked = [
            {
                "provider": p.provider,
                "result": p.result,
                "problems": [f"{x.field}: {x.message}" for x in p.problems],
            }
            for p in result.providers
        ]
    except ApiError as error:
        checked = [{"provider": "-", "result": error.code, "problems": [error.message]}]
    return page(
        request,
        "app.html",
        f"App {app_id}",
        section="apps",
        app=found,
        providers=_providers(found),
        health=health,
        check=checked,
    )


def _providers(app: App) -> list[dict[str, Any]]:
    rows = []
    for provider, name, configured in (
        ("apns", "APNs", bool(app.apns_secret)),
        ("fcm", "FCM", bool(app.fcm_secret)),
    ):
        stop = provider_stop(app, provider)
        rows.append(
            {
                "name": name,
                "configured": configured,
                "stopped": stop is not None,
                "reason": getattr(stop, "reason", None),
                "since": getattr(stop, "since", None),
            }
        )
    return rows
