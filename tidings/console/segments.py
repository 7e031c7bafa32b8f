"""The console's segments page: every saved segment with its definition, a form to save one
(YAML or JSON; a bad one is refused with its problems by field, the text kept) or to preview
it unsaved, and per segment a preview (how many profiles match now, and the first ids) and
a delete (refused while a stored journey takes it as its audience)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, quote

import yaml
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from tidings.console.mount import BASE, page, signed_in, state_of, to_login
from tidings.journeys.segments import (
    NAME_PATTERN,
    SegmentInvalid,
    SegmentProblem,
    load_segment_text,
)
from tidings.runs.segments import (
    SegmentExists,
    SegmentInUse,
    SegmentNotFound,
    SegmentPreview,
    SegmentView,
    create_segment,
    delete_segment,
    list_segments,
    preview_definition,
    preview_segment,
)
from tidings.store.db import Database

router = APIRouter(prefix=BASE, include_in_schema=False)
PAGE = f"{BASE}/segments"
# a definition's text, urlencoded, with room for the other fields
FORM_LIMIT = 3 * 64 * 1024
SAMPLE = 20
SHOWN = 500  # segments listed on the page


@router.get("/segments")
async def segments(request: Request) -> Response:
    if not signed_in(request):
        return to_login(request)
    shown: SegmentPreview | None = None
    name = request.query_params.get("preview")
    notice = request.query_params.get("notice")
    if name:
        try:
            shown = await preview_segment(state_of(request).db, name, sample=SAMPLE)
        except SegmentNotFound as error:
            notice = str(error)
    return await _page(request, preview=shown, notice=notice)


async def _page(request: Request, status: int = 200, **context: Any) -> Response:
    listed, _ = await list_segments(state_of(request).db, limit=SHOWN)
    return page(
        request,
        "segments.html",
        "Segments",
        status=status,
        section="segments",
        segments=[_shown(view) for view in listed],
        name_pattern=NAME_PATTERN,
        **context,
    )


def _shown(view: SegmentView) -> dict[str, object]:
    text = yaml.safe_dump(json.loads(json.dumps(view.definition)), sort_keys=False)
    return {"view": view, "yaml": text.rstrip()}


@router.post("/segments")
async def save_or_preview(request: Request) -> Response:
    """Save the form's segment (``action=save``) or preview its definition unsaved; problems
    are shown by field beside the text, which is kept."""
    if not signed_in(request):
        return to_login(request)
    body = await request.body()
    form = parse_qs(body[:FORM_LIMIT].decode(errors="replace"))
    name = (form.get("name") or [""])[0].strip()
    description = (form.get("description") or [""])[0].strip() or None
    text = (form.get("definition") or [""])[0]
    saving = (form.get("action") or ["save"])[0] == "save"
    kept = {"name": name, "description": description or "", "definition": text}
    db = state_of(request).db
    if len(body) > FORM_LIMIT:
        return await _refused(request, kept, [SegmentProblem("", "the form is over 192 KiB")])
    try:
        definition = load_segment_text(text)
        if not saving:
            shown = await preview_definition(db, definition, sample=SAMPLE)
            return await _page(request, preview=shown, form=kept)
        await create_segment(db, name, definition.to_data(), description)
    except SegmentInvalid as error:
        return await _refused(request, kept, error.problems)
    except SegmentExists as error:
        return await _refused(request, kept, [SegmentProblem("name", str(error))], status=409)
    return _back(f"Segment {name} saved.", preview=name)


async def _refused(
    request: Request,
    kept: dict[str, str],
    problems: list[SegmentProblem],
    status: int = 422,
) -> Response:
    return await _page(request, status=status, problems=problems, form=kept)


@router.post("/segments/{name}/delete")
async def delete(request: Request, name: str) -> Response:
    if not signed_in(request):
        return to_login(request)
    db: Database = state_of(request).db
    try:
        await delete_segment(db, name)
    except (SegmentNotFound, SegmentInUse) as error:
        return _back(f"Not deleted: {error}")
    return _back(f"Segment {name} deleted.")


def _back(notice: str, *, preview: str | None = None) -> Response:
    shown = f"&preview={quote(preview)}" if preview else ""
    return RedirectResponse(f"{PAGE}?notice={quote(notice)}{shown}", status_code=303)
